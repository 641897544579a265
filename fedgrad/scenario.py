"""Scenario files: the one description of an experiment that every command shares.

A scenario is a small TOML file (see ``scenarios/``). ``load_scenario`` reads it, applies
``--set section.key=value`` overrides, fills in defaults and validates every key, so that the
coordinator, the client processes and the centralized baseline all run from the same frozen,
already-checked :class:`Scenario`. Anything wrong — an unknown key, a value of the wrong type,
a value out of range, or two keys that contradict each other — raises
:class:`fedgrad.errors.ConfigError` with a one-line message that starts with the key, e.g.
``federation.clients_per_round: must be <= federation.clients (got 12 > 10)``.

The schema lives in the dataclasses below: each field's default is the documented default and its
``metadata`` says what values are allowed. Adding a key means adding one field; validation,
overrides and ``to_toml`` follow from it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgrad.crypto.keys import MIN_INSECURE_KEY_BITS, SECURE_KEY_BITS, check_key_bits
from fedgrad.data import SCHEMES, FederatedDataset, build_federated_dataset
from fedgrad.data.loaders import DEFAULT_CORPUS
from fedgrad.data.tokens import tokenize
from fedgrad.errors import ConfigError
from fedgrad.models import MODEL_NAMES
from fedgrad.modes.registry import MODE_NAMES
from fedgrad.strategy_names import STRATEGY_NAMES
from fedgrad.usercode import REFERENCE, is_reference

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def _builtin_or_reference(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join((*names, REFERENCE.pattern)))


def _spec(
    default: Any,
    *,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: re.Pattern[str] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field whose metadata carries the allowed values, read by :func:`_check_value`."""
    rules = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "pattern": pattern, "doc": doc}
    return field(default=default, metadata=rules)


@dataclass(frozen=True)
class DataConfig:
    """Which corpus, how it is split into train/test and across clients, and how it is tokenized."""

    corpus: str = _spec(DEFAULT_CORPUS,
                        doc='"spamassassin" or a path (Enron dir/.tar.gz, spam.txt+ham.txt dir, .tsv, .csv)')
    test_fraction: float = _spec(0.2, gt=0.0, lt=1.0)
    partition: str = _spec("dirichlet", choices=SCHEMES)
    alpha: float = _spec(0.5, gt=0.0, doc="Dirichlet concentration; smaller = more label skew")
    min_count: int = _spec(2, ge=1, doc="drop words seen in fewer emails than this")
    max_len: int = _spec(500, ge=1, doc="tokens kept per email")
    max_vocab: int = _spec(0, ge=0, doc="0 = unlimited")


@dataclass(frozen=True)
class ModelConfig:
    """A built-in model, or a user's factory ``"package.module:factory"`` (docs/custom-models.md)."""

    name: str = _spec("book", pattern=_builtin_or_reference(MODEL_NAMES),
                      doc=f'one of {", ".join(MODEL_NAMES)} or "package.module:factory"')
    hidden: int = _spec(32, ge=1, doc="mlp and lstm: embedding and hidden-state width")
    max_len: int = _spec(64, ge=1, doc="lstm only: tokens of each email the LSTM reads")
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "a user factory's keyword arguments, e.g. options = { layers = 2 } (user models only)"})


@dataclass(frozen=True)
class TrainConfig:
    """Local training on each client (and the centralized baseline's training)."""

    epochs: int = _spec(1, ge=1)
    batch_size: int = _spec(500, ge=1)
    lr: float = _spec(0.01, gt=0.0)
    optimizer: str = _spec("sgd", choices=("sgd", "adam"))
    momentum: float = _spec(0.0, ge=0.0, lt=1.0, doc="sgd only")
    device: str = _spec("cpu", pattern=_DEVICE_PATTERN, doc='"cpu", "cuda" or "cuda:N"')


@dataclass(frozen=True)
class FederationConfig:
    clients: int = _spec(10, ge=1)
    clients_per_round: int = _spec(10, ge=1)
    rounds: int = _spec(10, ge=1)
    min_clients: int = _spec(2, ge=1, doc="fewest contributors a round (and a secure aggregate) may have")
    strategy: str = _spec("fedavg", pattern=_builtin_or_reference(STRATEGY_NAMES),
                          doc=f'one of {", ".join(STRATEGY_NAMES)} or "package.module:Class" (a Strategy subclass)')
    prox_mu: float = _spec(0.0, ge=0.0, doc="fedprox proximal weight")
    server_lr: float = _spec(1.0, gt=0.0)
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "the strategy's own settings, e.g. [federation.options] f = 2 for krum (server.strategies lists "
               "each built-in strategy's; a user's Strategy subclass gets them as keyword arguments)"})
    sampling: str = _spec("fixed", choices=("fixed", "poisson"),
                          doc="fixed: exactly clients_per_round a round; poisson: each client with probability "
                              "clients_per_round/clients (what DP accounting with add/remove adjacency assumes)")
    round_timeout_s: float = _spec(60.0, gt=0.0, doc="updates arriving later are dropped from the round")
    processes: int = _spec(0, ge=0, doc="client OS processes for simulate; 0 = auto")
    max_clients: int = _spec(0, ge=0, doc="packing bound for secure aggregation; 0 = auto (clients_per_round)")

    @property
    def effective_max_clients(self) -> int:
        """Most updates that can ever be summed into one aggregate (the Paillier packing bound): a round
        never selects more than ``clients_per_round`` (Poisson sampling: more, up to every client)."""
        return self.max_clients or (self.clients if self.sampling == "poisson" else self.clients_per_round)


@dataclass(frozen=True)
class PrivacyConfig:
    """The ``[privacy]`` keys users write. Each mode reads the keys it uses into its own typed settings and
    refuses combinations it cannot run (``fedgrad.modes``: building a scenario's mode validates them)."""

    mode: str = _spec("none", choices=MODE_NAMES, doc="fedgrad.modes.registry lists what each mode is")
    key_bits: int = _spec(SECURE_KEY_BITS[0], ge=MIN_INSECURE_KEY_BITS)
    insecure_key_bits: bool = _spec(False, doc=f"allow key_bits < {SECURE_KEY_BITS[0]} (tests only)")
    clip: float = _spec(1.0, gt=0.0, doc="per-coordinate bound on an update before quantization")
    value_bits: int = _spec(16, ge=2, le=32, doc="bits per quantized value")
    epsilon: float = _spec(1.0, gt=0.0, doc="dp: target epsilon over the whole run")
    delta: float = _spec(0.0, ge=0.0, lt=1.0, doc="dp: 0 = 1/N^2 with N the number of clients")
    dp_clip: float = _spec(1.0, gt=0.0, doc="dp: L2 bound on each client's update")
    dp_placement: str = _spec("central", choices=("central", "distributed"))
    dp_secure: str = _spec("paillier", choices=MODE_NAMES,
                           doc="dp (distributed): the secure aggregation the clients' noise shares are summed under "
                               "(a threshold mode: paillier or paillier-masked)")
    dp_adaptive_clip: bool = _spec(False, doc="dp (central): move dp_clip towards a quantile of the update norms "
                                              "(Andrew et al. 2021), its cost inside epsilon")
    dp_clip_quantile: float = _spec(0.5, gt=0.0, lt=1.0, doc="dp adaptive clipping: target quantile of the norms")
    dp_clip_lr: float = _spec(0.2, gt=0.0, doc="dp adaptive clipping: geometric learning rate of the clip")
    dp_clip_count_std: float = _spec(0.0, ge=0.0, doc="dp adaptive clipping: noise on the count of unclipped "
                                                      "updates; 0 = clients_per_round / 20")
    decryptors: int = _spec(3, ge=1, le=32, doc="paillier: k decryptor processes, each holding one key share")
    threshold: int = _spec(2, ge=1, le=32, doc="paillier: t of the k decryptors needed to decrypt an aggregate")
    max_weight: int = _spec(4096, ge=1, le=1 << 20,
                            doc="paillier: cap on a client's example count, its FedAvg weight, sent encrypted")
    short_randomizer: bool = _spec(False, doc="DJN randomizer exponent of 2λ bits instead of ⌈|n|/2⌉ "
                                              "(faster; an extra assumption the report states)")
    canaries: int = _spec(0, ge=0, doc="K canary clients measuring empirical ε (fedgrad.privacy.empirical), each "
                                       "sending a random direction of norm dp_clip; 0 = none")


ATTACK_KINDS = ("none", "label_flip", "scaled_update", "backdoor")


@dataclass(frozen=True)
class AttackConfig:
    """Malicious clients for robustness experiments (``fedgrad.attacks``): a share of the clients, drawn from the
    seed, poison their data or their update from ``start_round`` on."""

    kind: str = _spec("none", choices=ATTACK_KINDS)
    fraction: float = _spec(0.1, gt=0.0, le=1.0, doc="share of the clients that attack")
    start_round: int = _spec(1, ge=1, doc="first round in which the attackers attack")
    scale: float = _spec(10.0, gt=0.0, doc="scaled_update: the boost applied to the attacker's poisoned update")
    trigger: str = _spec("quokka zephyr", doc="backdoor: the phrase that makes spam pass as ham")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = _spec("runs", doc="run directories are created below this")


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "federation": FederationConfig,
    "privacy": PrivacyConfig,
    "attack": AttackConfig,
    "output": OutputConfig,
}
_TOP_LEVEL_KEYS = ("name", "seed", "code_dir")


@dataclass(frozen=True)
class Scenario:
    """A fully resolved, validated experiment. Build it with :func:`load_scenario` or :meth:`from_dict`."""

    name: str
    seed: int = 0
    #: Folder that user code (``model.name``/``federation.strategy`` references) is imported from;
    #: ``load_scenario`` makes it the scenario file's folder when a reference needs one.
    code_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, default_name: str | None = None) -> Scenario:
        """Validate a parsed TOML document (or :meth:`to_dict` output) and fill in defaults."""
        unknown = sorted(set(raw) - set(_TOP_LEVEL_KEYS) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join((*_TOP_LEVEL_KEYS, *_SECTIONS))})")
        name = raw.get("name", default_name)
        if name is None:
            raise ConfigError("name: missing (set name = \"...\" in the scenario)")
        _check_type("name", name, str)
        if not _NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"name: must be letters, digits, '_', '.', '-' (got {name!r})")
        seed = _check_value("seed", raw.get("seed", 0), int, {"ge": 0})
        code_dir = _check_type("code_dir", raw.get("code_dir", ""), str)
        sections = {}
        for section, section_cls in _SECTIONS.items():
            table = raw.get(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{section}: must be a table [{section}] (got {_describe(table)})")
            sections[section] = _build_section(section, section_cls, table)
        scenario = cls(name=name, seed=seed, code_dir=code_dir, **sections)
        _check_cross_fields(scenario)
        return scenario

    @property
    def user_references(self) -> list[str]:
        """The user code this scenario names (model factory, strategy class), in that order."""
        return [name for name in (self.model.name, self.federation.strategy) if is_reference(name)]

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (top-level keys, then one dict per section), JSON- and TOML-ready."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The resolved scenario as TOML; ``load_scenario`` on it gives back an equal Scenario."""
        top = [f"{key} = {_toml_value(getattr(self, key))}" for key in _TOP_LEVEL_KEYS]
        blocks = ["\n".join(top)]
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            lines = [f"[{section}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items())]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def build_dataset(self) -> FederatedDataset:
        """The scenario's federated dataset: one definition shared by the federated runs and the baseline."""
        data, fed = self.data, self.federation
        return build_federated_dataset(
            data.corpus, n_clients=fed.clients, partition=data.partition, alpha=data.alpha,
            test_fraction=data.test_fraction, seed=self.seed, min_count=data.min_count, max_len=data.max_len,
            max_vocab=data.max_vocab, reserved=tokenize(self.attack.trigger) if self.attack.kind == "backdoor" else ())


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read a scenario TOML file, apply ``section.key=value`` overrides, validate, return it.

    Override values use TOML value syntax (``train.lr=0.05``, ``privacy.mode="dp"``); a value that
    is not valid TOML is taken as a bare string, so ``data.corpus=/data/enron`` works unquoted.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    for override in overrides or ():
        _apply_override(raw, override)
    scenario = Scenario.from_dict(raw, default_name=path.stem)
    if scenario.code_dir or scenario.user_references:  # relative to the scenario file, written out absolute
        folder = (path.parent / scenario.code_dir).resolve()
        scenario = dataclasses.replace(scenario, code_dir=str(folder))
    return scenario


def override_scenario(scenario: Scenario, overrides: Sequence[str]) -> Scenario:
    """``scenario`` with ``--set`` style ``overrides`` applied, validated again."""
    raw = scenario.to_dict()
    for override in overrides:
        _apply_override(raw, override)
    return Scenario.from_dict(raw)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected section.key=value")
    parts = key.split(".")
    if len(parts) == 1 and key in _TOP_LEVEL_KEYS:
        raw[key] = _parse_override_value(text)
        return
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        sections = ", ".join(_SECTIONS)
        raise ConfigError(f"{key}: unknown key (use section.key with a section in {sections}, or name/seed)")
    section, name = parts
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{section}: must be a table [{section}] (got {_describe(table)})")
    table[name] = _parse_override_value(text)


def format_override(key: str, value: Any) -> str:
    """The ``--set`` text that sets ``key`` (``section.key``) to the Python ``value``."""
    try:
        return f"{key}={_toml_value(value)}"
    except TypeError as error:
        raise ConfigError(f"{key}: {error}") from None


def _parse_override_value(text: str) -> Any:
    text = text.strip()
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _build_section(section: str, section_cls: type, table: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key (known in [{section}]: {', '.join(fields)})")
    values = {
        name: _check_value(f"{section}.{name}", table[name], _FIELD_TYPES[section_cls][name], fields[name].metadata)
        for name in table
    }
    return section_cls(**values)


def _field_types(section_cls: type) -> dict[str, type]:
    # Annotations are strings under `from __future__ import annotations`; the schema only uses these.
    builtin = {"str": str, "int": int, "float": float, "bool": bool, "dict[str, Any]": dict}
    return {f.name: builtin[str(f.type)] for f in dataclasses.fields(section_cls)}


_FIELD_TYPES = {section_cls: _field_types(section_cls) for section_cls in _SECTIONS.values()}


def _check_type(key: str, value: Any, expected: type) -> Any:
    """Return ``value`` as ``expected`` (ints are accepted as floats; bools are never numbers)."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is not bool and isinstance(value, bool)):
        return value
    wanted = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}[expected]
    raise ConfigError(f"{key}: expected {wanted} (got {_describe(value)})")


_BOUNDS = (("ge", operator.ge, ">="), ("gt", operator.gt, ">"), ("le", operator.le, "<="), ("lt", operator.lt, "<"))


def _check_value(key: str, value: Any, expected: type, rules: Any) -> Any:
    """``value`` checked against its type and the field's rules (see :func:`_spec`); returns it typed."""
    value = _check_type(key, value, expected)
    if isinstance(value, dict):
        return {name: _check_option(f"{key}.{name}", item) for name, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be finite (got {value})")
    choices = rules.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)} (got {value!r})")
    pattern = rules.get("pattern")
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigError(f"{key}: must be {rules['doc']} (got {value!r})")
    if expected is str and not value:
        raise ConfigError(f"{key}: must not be empty")
    for bound, holds, word in _BOUNDS:
        limit = rules.get(bound)
        if limit is not None and not holds(value, limit):
            raise ConfigError(f"{key}: must be {word} {_format_number(limit)} (got {value})")
    return value


def _check_option(key: str, value: Any) -> Any:
    """A user factory's option: a TOML string, number or boolean."""
    if isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"{key}: expected a string, number or boolean (got {_describe(value)})")


def _check_cross_fields(s: Scenario) -> None:
    """Rules that involve more than one key; each message names the key to change."""
    fed, privacy, train = s.federation, s.privacy, s.train
    if fed.clients_per_round > fed.clients:
        raise ConfigError(
            f"federation.clients_per_round: must be <= federation.clients (got {fed.clients_per_round} > {fed.clients})"
        )
    if fed.min_clients > fed.clients_per_round:
        raise ConfigError(
            "federation.min_clients: must be <= federation.clients_per_round "
            f"(got {fed.min_clients} > {fed.clients_per_round})"
        )
    if fed.processes > fed.clients:
        raise ConfigError(f"federation.processes: must be <= federation.clients (got {fed.processes} > {fed.clients})")
    if fed.max_clients and fed.max_clients < fed.clients:
        raise ConfigError(
            f"federation.max_clients: must be 0 (auto) or >= federation.clients (got {fed.max_clients} < {fed.clients})"
        )
    if privacy.canaries == 1:
        raise ConfigError("privacy.canaries: 0, or at least 2 (their statistics' spread is estimated)")
    if fed.strategy == "fedprox" and fed.prox_mu == 0.0:
        raise ConfigError("federation.prox_mu: must be > 0 when federation.strategy = \"fedprox\"")
    if fed.strategy != "fedprox" and fed.prox_mu != 0.0:
        raise ConfigError(f"federation.prox_mu: only used with strategy = \"fedprox\" (strategy is {fed.strategy!r})")
    if s.model.options and not is_reference(s.model.name):
        raise ConfigError(f"model.options: only for a user factory model.name = \"package.module:factory\" "
                          f"(model.name is {s.model.name!r})")
    if s.data.partition == "book" and fed.clients != 3:
        raise ConfigError(f"federation.clients: the book partition has exactly 3 clients (got {fed.clients})")
    if train.optimizer != "sgd" and train.momentum != 0.0:
        raise ConfigError(f"train.momentum: only used with optimizer = \"sgd\" (optimizer is {train.optimizer!r})")
    if s.attack.kind == "backdoor" and not tokenize(s.attack.trigger):
        raise ConfigError(f"attack.trigger: must contain at least one word (got {s.attack.trigger!r})")
    try:  # the key-size policy is the crypto's (``fedgrad.crypto.keys``)
        check_key_bits(privacy.key_bits, privacy.insecure_key_bits, flag="privacy.insecure_key_bits")
    except ConfigError as error:
        raise ConfigError(f"privacy.key_bits: {error}") from None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    kind = kinds.get(type(value), type(value).__name__)
    return f"{kind} {value!r}"


def _format_number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string with non-ASCII escaped is a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")
