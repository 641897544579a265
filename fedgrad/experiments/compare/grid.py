"""The comparison grid: which variants (privacy setting x client count x Paillier key size) ``fedgrad compare`` runs.

Every variant is the user's scenario and ``--set`` values plus only the keys that define the variant, so all
share corpus, split, partition, model initialisation and seed; each is validated before anything runs.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedgrad.errors import ConfigError
from fedgrad.experiments.compare.robustness import CLEAN, AttackSetting, StrategySetting, strategy_fit
from fedgrad.modes.registry import MODE_NAMES
from fedgrad.modes.resolve import mode_class, privacy_mode
from fedgrad.scenario import Scenario, load_scenario

#: ``--privacy`` default: the baseline, both secure-aggregation schemes, and DP from strong to weak.
DEFAULT_PRIVACY = "none,paillier-naive,paillier-trusted,dp:1,dp:4,dp:8"
BASELINE_MODE = "none"
DP_PLACEMENTS = ("central", "distributed")
#: A slow mode (``Profile.slow``: ``paillier-naive`` encrypts every value separately, about 10 ms each with a
#: 2048-bit key, so minutes per client per round for the book model) by default runs this many rounds, which is
#: enough to measure its cost per round; its accuracy is then compared with ``none`` after the same round.
NAIVE_ROUNDS = 1
#: Round deadline given to a slow mode: the scenario's (about a minute) would drop every update.
NAIVE_ROUND_TIMEOUT_S = 3600.0


def named_modes() -> tuple[str, ...]:
    """The modes ``--privacy`` takes by name alone (a mode set by a target ε takes ``NAME:EPSILON``)."""
    return tuple(name for name in MODE_NAMES if not _takes_epsilon(name))


def _takes_epsilon(name: str) -> bool:
    return name in MODE_NAMES and mode_class(name).takes_epsilon


@dataclass(frozen=True)
class PrivacySetting:
    """One entry of ``--privacy``: a ``privacy.mode``; for ``dp`` the target epsilon and optionally where the
    noise is added (``dp:EPS`` keeps the scenario's ``privacy.dp_placement``, ``dp:EPS:distributed`` sets it).
    ``paillier+dp:EPS`` is ``dp:EPS:distributed``: clients add noise shares and the sum is taken under
    encryption, so its name is ``paillier+dp-eps<EPS>``."""

    mode: str
    epsilon: float | None = None
    placement: str | None = None
    secure: str | None = None  # distributed DP: the threshold mode underneath (``privacy.dp_secure``)

    @classmethod
    def parse(cls, text: str) -> PrivacySetting:
        name, *values = text.strip().split(":")
        secure, plus, base = name.rpartition("+")  # distributed DP under a secure mode: paillier+dp:4
        if plus and _takes_epsilon(base) and secure in mode_class(base).underneath() and len(values) == 1:
            return cls(base, _epsilon(text, values[0]), "distributed", secure)
        if _takes_epsilon(name) and len(values) in (1, 2):
            epsilon = _epsilon(text, values[0])
            placement = values[1] if len(values) == 2 else None
            if placement not in (None, *DP_PLACEMENTS):
                raise ConfigError(f"--privacy: {text!r}: the noise placement is one of {', '.join(DP_PLACEMENTS)}")
            return cls(name, epsilon, placement)
        if name in MODE_NAMES and not _takes_epsilon(name) and not values:
            return cls(name)
        with_epsilon = [name for name in MODE_NAMES if _takes_epsilon(name)]
        raise ConfigError(f"--privacy: unknown setting {text!r} (use {', '.join(named_modes())}, "
                          + ", ".join(f"{name}:EPSILON, {name}:EPSILON:PLACEMENT" for name in with_epsilon)
                          + "".join(f" or {'|'.join(mode_class(name).underneath())}+{name}:EPSILON"
                                    for name in with_epsilon) + ")")

    @property
    def label(self) -> str:
        if self.epsilon is None:
            return self.mode
        if self.placement == "distributed":
            return f"{self.secure or mode_class(self.mode).underneath()[0]}+{self.mode}-eps{self.epsilon:g}"
        return f"{self.mode}-eps{self.epsilon:g}" + (f"-{self.placement}" if self.placement else "")

    def overrides(self) -> list[str]:
        values = [f"privacy.mode={json.dumps(self.mode)}"]
        if self.epsilon is not None:
            values.append(f"privacy.epsilon={self.epsilon!r}")
        if self.placement is not None:
            values.append(f"privacy.dp_placement={json.dumps(self.placement)}")
        if self.secure is not None:
            values.append(f"privacy.dp_secure={json.dumps(self.secure)}")
        return values


def _epsilon(text: str, value: str) -> float:
    try:
        epsilon = float(value)
    except ValueError:
        raise ConfigError(f"--privacy: {text!r}: dp needs a target epsilon, e.g. dp:4") from None
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"--privacy: {text!r}: epsilon must be a positive number")
    return epsilon


def parse_privacy_list(text: str) -> list[PrivacySetting]:
    """``"none,paillier,dp:1"`` as settings, in order, duplicates dropped."""
    settings = [PrivacySetting.parse(item) for item in text.split(",") if item.strip()]
    if not settings:
        raise ConfigError("--privacy: name at least one setting")
    return list(dict.fromkeys(settings))


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"3,10,100"`` as positive integers, in order, duplicates dropped."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag}: expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def parse_seeds(text: str, base: int) -> list[int]:
    """``--seeds``: ``"3"`` is three seeds counted from ``base`` (the scenario's seed: base, base+1, base+2);
    ``"0,7,42"`` (a comma-separated list) names the seeds themselves."""
    if "," not in text:
        [count] = parse_int_list(text, "--seeds")
        return list(range(base, base + count))
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected a count or comma-separated seeds, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds: seeds are non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


@dataclass(frozen=True)
class Variant:
    """One run of the comparison: the scenario with ``overrides`` applied after the user's ``--set`` values."""

    name: str
    privacy: PrivacySetting
    scenario: Scenario             # resolved and validated, as the child will run it
    overrides: tuple[str, ...]
    baseline: str                  # the ``none`` variant with the same number of clients and the same seed
    notes: tuple[str, ...] = ()    # what differs from the user's scenario beyond the privacy setting, and why
    group: str = ""                # the name without the seed suffix: the runs a frontier row summarises
    strategy: StrategySetting | None = None  # ``--strategies``: the variant's aggregation strategy
    attack: AttackSetting = CLEAN            # ``--attack``: the variant's attack (none: a clean run)
    clean: str = ""                # ``--attack``: the clean variant of the same setting, strategy and seed

    @property
    def seed(self) -> int:
        return self.scenario.seed

    @property
    def rounds(self) -> int:
        return self.scenario.federation.rounds


def plan_variants(
    scenario_path: Path,
    user_overrides: Sequence[str],
    privacy: Sequence[PrivacySetting],
    *,
    clients: Sequence[int] | None = None,
    key_bits: Sequence[int] | None = None,
    rounds: int | None = None,
    naive_rounds: int = NAIVE_ROUNDS,
    seeds: Sequence[int] | None = None,
    strategies: Sequence[StrategySetting] | None = None,
    attacks: Sequence[AttackSetting] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Variant]:
    """Every variant of the grid, each validated up front (a bad combination fails before anything runs).

    ``none`` is always part of the grid: it is what every other variant is measured against. With
    ``clients``, each count keeps the scenario's participation rate (``clients_per_round / clients``) so
    that DP's sampling rate, and the share of data a round sees, stay the same. ``key_bits`` applies to the
    Paillier modes only. Names get ``-c<clients>`` / ``-k<bits>`` suffixes when those flags are given.

    With ``seeds``, every variant runs once per seed, which replaces the scenario's top-level ``seed``: the
    train/test split, the partition among clients, the model's initialisation, the clients sampled each round
    and each client's local shuffling (DP noise and Paillier randomness come from the OS either way). Names
    get a ``-s<seed>`` suffix, seeds vary slowest, and each run is measured against ``none`` on its own seed.

    ``strategies`` and ``attacks`` (``robustness``) add their labels to the names; ``none`` is then the baseline of
    each strategy and attack. A combination that cannot run is left out and appended to ``skipped`` as
    ``(name, reason)``.
    """
    base = load_scenario(scenario_path, list(user_overrides))
    fed = base.federation
    settings = list(dict.fromkeys([PrivacySetting(BASELINE_MODE), *privacy]))
    variants = []
    seed_choices: Sequence[int | None] = seeds or [None]
    bit_choices: Sequence[int | None] = key_bits or [None]
    for seed in seed_choices:
        for n_clients in clients or [fed.clients]:
            common = [f"federation.rounds={rounds}"] if rounds else []
            suffix = ""
            if clients:
                per_round = max(1, round(n_clients * fed.clients_per_round / fed.clients))
                common += [f"federation.clients={n_clients}", f"federation.clients_per_round={per_round}",
                           f"federation.min_clients={min(fed.min_clients, per_round)}"]
                suffix = f"-c{n_clients}"
            seed_suffix = ""
            if seed is not None:
                common.append(f"seed={seed}")
                seed_suffix = f"-s{seed}"
            strategy_choices: Sequence[StrategySetting | None] = strategies or [None]
            for strategy in strategy_choices:
                for attack in attacks or [CLEAN]:
                    robust = "".join(f"-{label}" for label, given in (
                        (strategy.label if strategy else "", strategies), (attack.label, attacks)) if given)
                    robust_overrides = [*(strategy.overrides() if strategy else []), *attack.overrides()]
                    clean_robust = robust.removesuffix(f"-{attack.label}") + "-clean" if attacks else robust
                    baseline = f"{BASELINE_MODE}{robust}{suffix}{seed_suffix}"
                    for setting in settings:
                        profile = privacy_mode(_validated(scenario_path, user_overrides,
                                                          [*common, *setting.overrides()],
                                                          setting.label + suffix + seed_suffix)).profile()
                        for bits in bit_choices if profile.key_sizes else [None]:
                            overrides = [*common, *setting.overrides(), *robust_overrides]
                            group = setting.label + robust + suffix
                            bits_suffix = ""
                            if bits is not None:
                                overrides.append(f"privacy.key_bits={bits}")
                                bits_suffix = f"-k{bits}"
                            group += bits_suffix
                            notes: list[str] = []
                            if profile.slow:
                                overrides, notes = _reduce_slow(base, overrides, rounds or fed.rounds, naive_rounds,
                                                                profile.slow)
                            name = group + seed_suffix
                            scenario = _validated(scenario_path, user_overrides, overrides, name)
                            if strategies:
                                fit, fit_notes, reason = strategy_fit(scenario)
                                if reason:
                                    if skipped is not None:
                                        skipped.append((name, reason))
                                    continue
                                if fit:
                                    overrides, notes = [*overrides, *fit], [*notes, *fit_notes]
                                    scenario = _validated(scenario_path, user_overrides, overrides, name)
                            clean = f"{setting.label}{clean_robust}{suffix}{bits_suffix}{seed_suffix}"
                            variants.append(Variant(name, setting, scenario, tuple(overrides), baseline,
                                                    tuple(notes), group, strategy, attack,
                                                    clean if attacks else ""))
    return variants


def _reduce_slow(base: Scenario, overrides: list[str], planned_rounds: int, naive_rounds: int,
                 slow: str) -> tuple[list[str], list[str]]:
    """A slow mode (``slow`` says why) on fewer rounds and with a long round deadline; the notes say so in the
    report."""
    notes = []
    overrides = list(overrides)
    if naive_rounds < planned_rounds:
        overrides.append(f"federation.rounds={naive_rounds}")
        notes.append(f"run for {naive_rounds} round(s) instead of {planned_rounds}: {slow}; time and bytes are per "
                     f"round and compare directly, accuracy is compared with {BASELINE_MODE} after the same round")
    if base.federation.round_timeout_s < NAIVE_ROUND_TIMEOUT_S:
        overrides.append(f"federation.round_timeout_s={NAIVE_ROUND_TIMEOUT_S}")
        notes.append(f"round deadline raised to {NAIVE_ROUND_TIMEOUT_S:g} s (the scenario's "
                     f"{base.federation.round_timeout_s:g} s would drop every encrypted update)")
    return overrides, notes


def _validated(path: Path, user_overrides: Sequence[str], overrides: Sequence[str], name: str) -> Scenario:
    """The variant's scenario, checked by its privacy mode too."""
    try:
        scenario = load_scenario(path, [*user_overrides, *overrides])
        privacy_mode(scenario)
        return scenario
    except ConfigError as exc:
        raise ConfigError(f"variant {name}: {exc}") from None
