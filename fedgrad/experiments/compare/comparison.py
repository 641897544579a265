"""A whole comparison in one call: plan the grid, run every variant, measure the canary, write and render.

``run_comparison`` is what ``fedgrad compare`` runs and what ``fedgrad.compare`` exposes to Python.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgrad.errors import ConfigError
from fedgrad.experiments.compare.canary import CANARY_WORDS, measure_canaries
from fedgrad.experiments.compare.frontier import frontier_rows
from fedgrad.experiments.compare.grid import (
    DEFAULT_PRIVACY,
    NAIVE_ROUNDS,
    PrivacySetting,
    Variant,
    parse_int_list,
    parse_privacy_list,
    parse_seeds,
    plan_variants,
)
from fedgrad.experiments.compare.processes import Outcome, new_comparison_dir, run_variants, sigterm_as_interrupt
from fedgrad.experiments.compare.report import render_comparison
from fedgrad.experiments.compare.results import collect, comparison_meta, write_results
from fedgrad.experiments.compare.robustness import parse_attack_list, parse_strategy_list
from fedgrad.scenario import load_scenario


@dataclass(frozen=True)
class Comparison:
    """What ``run_comparison`` produced: the comparison directory and its ``report.md``, one row per run
    (variant x seed; the rows of ``results.json``), one frontier row per privacy setting (mean and spread over
    the seeds), and how each run ended."""

    directory: Path
    report: Path
    rows: list[dict[str, Any]]
    frontier: list[dict[str, Any]]
    outcomes: list[Outcome]

    @property
    def statuses(self) -> dict[str, str]:
        """``ok``, ``failed``, ``interrupted`` or ``not run``, by run name."""
        return {outcome.variant.name: outcome.status for outcome in self.outcomes}

    @property
    def interrupted(self) -> bool:
        return any(outcome.status == "interrupted" for outcome in self.outcomes)

    @property
    def ok(self) -> bool:
        return all(outcome.status == "ok" for outcome in self.outcomes)


def run_comparison(
    scenario: str | Path,
    *,
    privacy: str | Sequence[str] = DEFAULT_PRIVACY,
    seeds: int | str | Sequence[int] | None = None,
    clients: Sequence[int] | None = None,
    key_bits: Sequence[int] | None = None,
    rounds: int | None = None,
    naive_rounds: int = NAIVE_ROUNDS,
    overrides: Sequence[str] = (),
    canary: bool = True,
    strategies: str | Sequence[str] | None = None,
    attacks: str | Sequence[str] | None = None,
) -> Comparison:
    """Run ``scenario`` (a TOML path) under several privacy settings and compare them.

    - ``privacy``: the settings, as ``fedgrad compare --privacy`` takes them: ``"none,paillier,dp:1,dp:4,
      paillier+dp:4"`` or a list of such items (``none``, ``paillier``, ``paillier-trusted``, ``paillier-naive``,
      ``dp:EPS``, ``dp:EPS:central|distributed``, ``paillier+dp:EPS``). ``none`` always runs, as the baseline.
    - ``seeds``: a count N (seeds s, s+1, ..., s+N-1 from the scenario's seed s), the seeds themselves, or
      ``--seeds``' text (``"3"`` or ``"0,7,42"``); every setting runs once per seed, which replaces the
      scenario's ``seed``, and the frontier gives mean and spread. None: the scenario's seed, once.
    - ``clients``, ``key_bits``: grids of client counts and Paillier key sizes; ``rounds``: rounds for every
      variant; ``naive_rounds``: rounds for ``paillier-naive`` at most; ``overrides``: ``section.key=value``
      settings applied first, like ``--set``.
    - ``canary``: replay round 1 with the leakage audit's canary planted and attack each variant's released
      aggregate (``fedgrad.experiments.compare.canary``).
    - ``strategies``: aggregation strategies, as ``--strategies`` takes them (``"fedavg,fedmedian,krum:f=3"``);
      ``attacks``: attacks as ``--attack`` takes them (``"label_flip:0.1,backdoor:0.3"``), each setting then also
      running clean (``fedgrad.experiments.compare.robustness``). Combinations that cannot run are left out and
      listed in the report.

    Every variant runs as a ``fedgrad simulate`` child, one after another, with a progress bar on stderr; one
    that fails is reported and the others still run; Ctrl-C stops the running one and keeps what finished
    (then ``interrupted`` is true). Writes ``<output.dir>/compare-<timestamp>/`` (``results.json``,
    ``results.csv``, ``report.md``, the plots) and returns a ``Comparison``. Bad options raise ``ConfigError``
    before anything runs.
    """
    path = Path(scenario)
    privacy_text = privacy if isinstance(privacy, str) else ",".join(privacy)
    settings: list[PrivacySetting] = parse_privacy_list(privacy_text)
    for flag, value in (("rounds", rounds), ("naive_rounds", naive_rounds)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1 (got {value})")
    strategy_text = strategies if strategies is None or isinstance(strategies, str) else ",".join(strategies)
    attack_text = attacks if attacks is None or isinstance(attacks, str) else ",".join(attacks)
    base = load_scenario(path, list(overrides))
    seed_list = _seed_list(seeds, base.seed)
    skipped: list[tuple[str, str]] = []
    variants = plan_variants(path, overrides, settings, clients=_positive(clients, "clients"),
                             key_bits=_positive(key_bits, "key_bits"), rounds=rounds, naive_rounds=naive_rounds,
                             seeds=seed_list,
                             strategies=parse_strategy_list(strategy_text) if strategy_text is not None else None,
                             attacks=parse_attack_list(attack_text) if attack_text is not None else None,
                             skipped=skipped)
    if not variants:
        raise ConfigError(f"no variant can run: {'; '.join(f'{name}: {reason}' for name, reason in skipped)}")
    compare_dir = new_comparison_dir(base)
    print(f"comparing {len(variants)} runs of {base.name}: {', '.join(v.name for v in variants)}\n"
          f"results: {compare_dir}", file=sys.stderr)
    for name, reason in skipped:
        print(f"not run: {name}: {reason}", file=sys.stderr)
    outcomes = run_variants(path, overrides, variants, compare_dir)
    interrupted = any(outcome.status == "interrupted" for outcome in outcomes)
    canaries = _canaries(variants) if canary and not interrupted else None
    rows = collect(outcomes, compare_dir, canaries)
    command = _command_line(path, privacy_text, seed_list if seeds is not None else None, clients, key_bits, rounds,
                            naive_rounds, overrides, canary, strategy_text, attack_text)
    meta = comparison_meta(path, overrides, base, command, seed_list)
    write_results(compare_dir, {**meta, "skipped": [{"variant": name, "reason": reason} for name, reason in skipped]},
                  rows)
    report = render_comparison(compare_dir)
    return Comparison(compare_dir, report, rows, frontier_rows(rows), outcomes)


def _canaries(variants: Sequence[Variant]) -> dict[str, dict[str, Any]] | None:
    """The canary results, or None when Ctrl-C (or SIGTERM) stops the replay: the runs are still written."""
    try:
        with sigterm_as_interrupt():
            return measure_canaries(variants, n_words=CANARY_WORDS)
    except KeyboardInterrupt:
        print("fedgrad: canary attack stopped; the table has no canary column", file=sys.stderr)
        return None


def _seed_list(seeds: int | str | Sequence[int] | None, base: int) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, (int, str)):
        return parse_seeds(str(seeds), base)
    return parse_seeds(_seeds_text(seeds), base)


def _seeds_text(seeds: Sequence[int]) -> str:
    """Seeds as ``--seeds`` reads them back: a list always has a comma (a lone number is a count)."""
    return ",".join(map(str, seeds)) + ("," if len(seeds) == 1 else "")


def _positive(values: Sequence[int] | None, name: str) -> list[int] | None:
    return parse_int_list(",".join(map(str, values)), name) if values else None


def _command_line(path: Path, privacy: str, seeds: Sequence[int] | None, clients: Sequence[int] | None,
                  key_bits: Sequence[int] | None, rounds: int | None, naive_rounds: int, overrides: Sequence[str],
                  canary: bool, strategies: str | None = None, attacks: str | None = None) -> list[str]:
    """The ``fedgrad`` command that runs the same comparison (recorded in ``results.json`` and the report)."""
    words = ["compare", str(path), "--privacy", privacy]
    if seeds:
        words += ["--seeds", _seeds_text(seeds)]
    for flag, values in (("--clients", clients), ("--key-bits", key_bits)):
        if values:
            words += [flag, ",".join(map(str, values))]
    if rounds is not None:
        words += ["--rounds", str(rounds)]
    if naive_rounds != NAIVE_ROUNDS:
        words += ["--naive-rounds", str(naive_rounds)]
    for flag, text in (("--strategies", strategies), ("--attack", attacks)):
        if text is not None:
            words += [flag, text]
    if not canary:
        words.append("--no-canary")
    for override in overrides:
        words += ["--set", override]
    return words
