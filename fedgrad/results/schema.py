"""The records a run produces, typed, and their one JSON form (``metrics.jsonl`` lines and ``summary.json``).

A run writes one :class:`RoundRecord` per round and one :class:`RunSummary` at the end. A privacy mode reports
its numbers as a :class:`PrivacyReport` (the summary's ``privacy`` entry; one subclass per kind of mode, picked by
its ``mode`` when read) and each round's as a :class:`RoundReport` (the round record's ``privacy``,
``decryptors`` and ``dropped`` entries). :func:`to_json` and :func:`from_json` are the one writer and the one
reader of all of them: an attribute's JSON key is its name (``moved`` is written as ``bytes``), an optional entry
(default None) that is None is left out, and a number that is not finite (a NaN loss) is written as ``null``.

``schema_version`` heads every round line and the summary:

- 0: files written before versioning (no ``schema_version``), in the layout of version 1: read as they are;
- 1: the layout documented on each record below.

A key this version does not know is kept in the record's ``extra`` and written back after the known ones, so
rewriting a file (``--resume`` rewrites ``metrics.jsonl``) loses nothing. A file from a newer schema, or an entry
of the wrong type, is a :class:`~fedgrad.errors.DataError` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from fedgrad.errors import DataError
from fedgrad.metrics import PHASES

SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"

#: Field metadata: an entry written even while None (any other entry whose default is None is left out then).
ALWAYS: Mapping[str, Any] = {"always": True}
#: Field metadata: where a record keeps the keys this version does not know.
EXTRA: Mapping[str, Any] = {"extra": True}
#: Field metadata: written before the other fields (a subclass's own, ahead of those it inherits).
FIRST: Mapping[str, Any] = {"position": 0}
#: Field metadata: written after the other fields (a mode's description after its numbers, as in version 0).
LAST: Mapping[str, Any] = {"position": 2}


@dataclass(frozen=True)
class Scores:
    """A model scored on a test set (:func:`fedgrad.training.evaluate`); None where undefined (no examples)."""

    accuracy: float | None = field(default=None, metadata=ALWAYS)
    precision: float | None = field(default=None, metadata=ALWAYS)
    recall: float | None = field(default=None, metadata=ALWAYS)
    f1: float | None = field(default=None, metadata=ALWAYS)
    loss: float | None = field(default=None, metadata=ALWAYS)
    n: int | None = None  # examples scored (the summary's ``initial`` has it)

    @classmethod
    def of(cls, evaluation: Mapping[str, Any]) -> Scores:
        """The scores in an :func:`~fedgrad.training.evaluate` result."""
        return cls(**{f.name: _plain(evaluation[f.name]) for f in dataclasses.fields(cls) if f.name in evaluation})


@dataclass(frozen=True)
class PhaseTimes:
    """Seconds per phase of a round (``server.rounds`` says what each covers), or their sums over a run."""

    broadcast: float = 0.0
    train: float = 0.0
    encrypt: float = 0.0
    upload: float = 0.0
    aggregate: float = 0.0
    decrypt: float = 0.0
    evaluate: float = 0.0
    total: float = 0.0

    @classmethod
    def of(cls, seconds: Mapping[str, float]) -> PhaseTimes:
        """From a :class:`~fedgrad.metrics.PhaseTimer`'s ``as_dict()``; a phase it lacks took 0 s."""
        unknown = set(seconds) - set(PHASES) - {"total"}
        if unknown:
            raise KeyError(f"unknown phase(s) {sorted(unknown)}; phases are {', '.join(PHASES)}")
        return cls(**{name: float(value) for name, value in seconds.items()})

    def __add__(self, other: PhaseTimes) -> PhaseTimes:
        return PhaseTimes(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                             for f in dataclasses.fields(self)})


# the timer's phases (``fedgrad.metrics.PHASES``) are this record's fields: a phase added to one is added to both
assert tuple(f.name for f in dataclasses.fields(PhaseTimes)) == (*PHASES, "total"), "PhaseTimes mirrors PHASES"


@dataclass(frozen=True)
class Traffic:
    """Payload bytes moved: ``down`` coordinator to clients, ``up`` clients to coordinator."""

    down: int = 0
    up: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.down + other.down, self.up + other.up)


# ---- what the privacy modes report -----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class DPRoundReport:
    """One released DP round: the ε spent so far, the noise actually present, and adaptive clipping's step."""

    epsilon_spent: float
    noise_multiplier: float
    contributors: int
    clip: float | None = None       # this round's clip (adaptive clipping)
    next_clip: float | None = None  # where adaptive clipping moved it


@dataclass(frozen=True, kw_only=True)
class DecryptorStats:
    """The slowest decryptor's seconds per step of one threshold release, and how many were asked."""

    decryptors_asked: float
    verify_s: float
    partial_s: float
    prove_s: float
    combine_s: float


@dataclass(frozen=True, kw_only=True)
class RoundReport:
    """What a mode adds to a round's record (:meth:`fedgrad.modes.base.UpdateAccumulator.round_report`)."""

    privacy: DPRoundReport | None = None
    decryptors: DecryptorStats | None = None
    dropped: str | None = None  # why the mode dropped the round's aggregate (the model stayed as it was)


@dataclass(frozen=True, kw_only=True)
class PrivacyReport:
    """A mode's numbers for the run summary (:meth:`fedgrad.modes.base.Aggregation.summary`); the run adds the
    mode's own words. Plain updates (``none``) have nothing more to say."""

    mode: str
    settings: str | None = field(default=None, metadata=LAST)         # the mode's one-line settings
    guarantee: str | None = field(default=None, metadata=LAST)        # its guarantee, one paragraph
    guarantee_short: str | None = field(default=None, metadata=LAST)  # ... and in a table cell
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=EXTRA)


@dataclass(frozen=True, kw_only=True)
class PaillierReport(PrivacyReport):
    """Packed Paillier with the key holder in the coordinator (``paillier-trusted``, ``paillier-naive``)."""

    key_bits: int
    clip: float
    value_bits: int
    max_clients: int
    ciphertexts_per_update: int
    update_bytes: int
    bytes_per_param: float
    slots_per_ciphertext: int | None = None  # packed scheme only


@dataclass(frozen=True, kw_only=True)
class ThresholdReport(PaillierReport):
    """Threshold Paillier (``paillier``): t-of-k decryptors, integer client weights up to ``max_weight``."""

    decryptors: int
    threshold: int
    max_weight: int
    short_randomizer: bool


@dataclass(frozen=True, kw_only=True)
class MaskedReport(ThresholdReport):
    """Threshold Paillier on the masks' keys only (``paillier-masked``): updates travel under lattice masks."""

    masked_bytes_per_value: int
    delta_bits: int
    dropped_bits: int
    key_ciphertexts: int


@dataclass(frozen=True, kw_only=True)
class AdaptiveClipReport:
    final_clip: float
    quantile: float
    learning_rate: float
    count_noise_std: float
    update_noise_multiplier: float


@dataclass(frozen=True, kw_only=True)
class DPReport(PrivacyReport):
    """DP-FedAvg (``dp``): the calibration, the ledger, and (distributed) the secure sum underneath."""

    placement: str
    epsilon_target: float
    epsilon_spent: float
    delta: float
    noise_multiplier: float
    clip: float
    accountant: str
    sampling: str
    sampling_rate: float
    adjacency: str
    rounds_accounted: int
    adaptive_clip: AdaptiveClipReport | None = None
    noise_share_std: float | None = None            # distributed: each client's share of the noise
    quantization_range_sigmas: float | None = None  # distributed: the packing's range in noise std
    secure_aggregation: ThresholdReport | None = None  # distributed: the threshold sum underneath


#: The report class of each ``mode`` a summary names; any other mode reads as a :class:`PrivacyReport`.
REPORTS: Mapping[str, type[PrivacyReport]] = {
    "paillier-trusted": PaillierReport, "paillier-naive": PaillierReport, "paillier": ThresholdReport,
    "paillier-masked": MaskedReport, "dp": DPReport,
}


# ---- what a run writes ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    """One ``metrics.jsonl`` line: the global model's test scores after the round, the cohort, the phase
    times and the bytes moved, then what the run and the mode add (``attempts`` and the rest)."""

    round: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    loss: float | None  # None: no test examples
    backdoor_success: float | None = None  # an ``[attack]``'s backdoor on the test set (``fedgrad.attacks``)
    clients_selected: int
    clients_used: int
    clients_dropped: int
    time_s: PhaseTimes
    moved: Traffic = field(metadata={"json": "bytes"})
    attempts: int | None = None       # tries until enough clients answered
    model_version: int | None = None  # the global model's version after the round
    local: Mapping[str, float] | None = None  # clients' own training metrics (plaintext modes)
    train_loss: float | None = None   # the centralized baseline's loss on its training data
    privacy: DPRoundReport | None = None
    decryptors: DecryptorStats | None = None
    dropped: str | None = None
    canaries: int | None = None  # canary clients summed into the round (``privacy.canaries``)
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=EXTRA)

    @property
    def scores(self) -> Scores:
        return Scores(self.accuracy, self.precision, self.recall, self.f1, self.loss)


def round_record(round_index: int, evaluation: Mapping[str, Any], *, clients_selected: int, clients_used: int,
                 clients_dropped: int, time_s: Mapping[str, float], moved: Traffic = Traffic(),
                 report: RoundReport = RoundReport(), attempts: int | None = None, model_version: int | None = None,
                 local: Mapping[str, float] | None = None, train_loss: float | None = None,
                 canaries: int | None = None) -> RoundRecord:
    """The record of round ``round_index`` whose global model scored ``evaluation`` on the test set
    (:func:`fedgrad.training.evaluate`), ``time_s`` as a :class:`~fedgrad.metrics.PhaseTimer` reports it."""
    return RoundRecord(
        round=round_index, accuracy=float(evaluation["accuracy"]), precision=float(evaluation["precision"]),
        recall=float(evaluation["recall"]), f1=float(evaluation["f1"]), loss=_finite(evaluation["loss"]),
        backdoor_success=float(evaluation["backdoor_success"]) if "backdoor_success" in evaluation else None,
        clients_selected=clients_selected, clients_used=clients_used, clients_dropped=clients_dropped,
        time_s=PhaseTimes.of(time_s), moved=moved, attempts=attempts, model_version=model_version,
        local=None if local is None else {k: float(v) for k, v in local.items()},
        train_loss=_finite(train_loss), privacy=report.privacy, decryptors=report.decryptors, dropped=report.dropped,
        canaries=canaries)


@dataclass(frozen=True, kw_only=True)
class ClientEvaluation:
    """Every client scoring the final model on its own shard, pooled by example count."""

    clients: int
    accuracy: float | None = None
    loss: float | None = None
    accuracy_min: float | None = None
    accuracy_max: float | None = None


@dataclass(frozen=True, kw_only=True)
class EpsilonEstimateReport:
    """ε̂ of one threat model (:class:`fedgrad.privacy.empirical.EpsilonEstimate`); None where it is infinite."""

    epsilon: float | None
    interval: tuple[float | None, float | None]
    lower_bound: float | None
    inserted: tuple[float, float]  # (mean, std) of the inserted canaries' statistic
    held_out: tuple[float, float]
    canaries: int
    delta: float


@dataclass(frozen=True, kw_only=True)
class EmpiricalPrivacyReport:
    """The run's canaries and the ε they measured (``server.canaries``, ``fedgrad.privacy.empirical``)."""

    canaries: int
    norm: float
    sampling_rate: float
    delta: float
    rounds_observed: int
    dimension: int
    participations_mean: float
    final_model: EpsilonEstimateReport | None = None  # the adversary who sees the final model
    all_iterates: EpsilonEstimateReport | None = None  # ... and the one who sees every round's model


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """What a finished run reports beyond its rounds (:meth:`fedgrad.results.RunWriter.finish` adds the totals)."""

    mode: str | None = None         # "centralized" for the baseline; federated runs leave it out
    epochs: int | None = None       # the centralized baseline's epochs
    initial: Scores | None = None   # the untrained model on the test set
    client_evaluation: ClientEvaluation | None = None
    privacy: PrivacyReport | None = None
    empirical_privacy: EmpiricalPrivacyReport | None = None
    processes: int | None = None    # client processes of a simulation
    train_examples: int | None = None  # the centralized baseline's data and vocabulary
    test_examples: int | None = None
    vocab_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class RunSummary(RunOutcome):
    """``summary.json``: the run's identity and times, the last round's scores, the totals over its rounds, then
    its :class:`RunOutcome`."""

    scenario: str = field(metadata=FIRST)
    run_dir: str = field(metadata=FIRST)
    started: str = field(metadata=FIRST)
    finished: str = field(metadata=FIRST)
    wall_time_s: float = field(metadata=FIRST)
    rounds: int = field(metadata=FIRST)
    final: Scores = field(metadata=FIRST)
    time_s: PhaseTimes = field(metadata=FIRST)
    moved: Traffic = field(metadata={**FIRST, "json": "bytes"})
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=EXTRA)


# ---- the one writer and reader ----------------------------------------------------------------------------------

Record = TypeVar("Record")


def to_json(record: RoundRecord | RunSummary) -> dict[str, Any]:
    """``record`` as the JSON object its file holds, headed by the schema version."""
    return {VERSION_KEY: SCHEMA_VERSION, **record_dict(record)}


def from_json(kind: type[Record], data: Any, where: str) -> Record:
    """The ``kind`` record (:class:`RoundRecord` or :class:`RunSummary`) in ``data``, a JSON object of any schema
    version up to this one; ``where`` (a file, a line) names it in errors."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    version = data.pop(VERSION_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= SCHEMA_VERSION:
        raise DataError(f"{where}: schema_version {version!r}; this fedgrad reads versions 0 to {SCHEMA_VERSION} "
                        "(a newer fedgrad wrote it)")
    # version 0 differs from 1 only by the missing version key: no migration to apply
    return typing.cast(Record, _decode(kind, data, where))


def record_dict(record: Any) -> dict[str, Any]:
    """Any record of this module as a JSON object (nested records too; no version: that heads files only)."""
    out: dict[str, Any] = {}
    known = dataclasses.fields(record)
    for f in sorted(known, key=lambda f: f.metadata.get("position", 1)):  # stable: definition order otherwise
        value = getattr(record, f.name)
        if f.metadata.get("extra") or (value is None and f.default is None and not f.metadata.get("always")):
            continue
        out[f.metadata.get("json", f.name)] = _encode(value)
    for f in known:
        if f.metadata.get("extra"):
            out.update({key: _encode(value) for key, value in getattr(record, f.name).items() if key not in out})
    return out


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record_dict(value)
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_encode(item) for item in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """A numpy scalar (what array arithmetic returns) as the Python number it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _decode(kind: Any, value: Any, where: str, path: str = "") -> Any:
    """``value`` read as ``kind``; errors name ``where`` (a file and line) and ``path`` (the key, dotted)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        [inner] = [arg for arg in args if arg is not type(None)]
        return _decode(inner, value, where, path)
    if kind is Any:
        return value
    if origin is tuple:
        _expect(isinstance(value, list) and len(value) == len(args), value, f"a list of {len(args)}", where, path)
        return tuple(_decode(arg, item, where, _at(path, str(i)))
                     for i, (arg, item) in enumerate(zip(args, value, strict=True)))
    if origin is not None and issubclass(origin, Mapping):
        _expect(isinstance(value, dict), value, "an object", where, path)
        return {key: _decode(args[1], item, where, _at(path, key)) for key, item in value.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        _expect(isinstance(value, dict), value, "an object", where, path)
        if issubclass(kind, PrivacyReport):  # the class of the mode named, if it is one of ``kind``'s
            named = REPORTS.get(value.get("mode"), kind)
            kind = named if issubclass(named, kind) else kind
        return _decode_record(kind, value, where, path)
    if kind is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), value, "a number", where, path)
        return float(value)
    if kind in (int, str, bool):
        _expect(isinstance(value, kind) and (kind is bool or not isinstance(value, bool)), value,
                f"{'an' if kind is int else 'a'} {kind.__name__}", where, path)
        return value
    raise TypeError(f"the run records' schema has no reader for {kind!r} ({path})")  # a new field's type


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _decode_record(kind: type, data: dict[str, Any], where: str, path: str) -> Any:
    hints = _hints(kind)
    values: dict[str, Any] = {}
    taken: set[str] = set()
    extra = None
    for f in dataclasses.fields(kind):
        if f.metadata.get("extra"):
            extra = f.name
            continue
        key = f.metadata.get("json", f.name)
        taken.add(key)
        if key in data:
            values[f.name] = _decode(hints[f.name], data[key], where, _at(path, key))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DataError(f"{where}: missing {_at(path, key)!r}")
    if extra is not None:
        values[extra] = {key: value for key, value in data.items() if key not in taken}
    return kind(**values)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _expect(ok: bool, value: Any, expected: str, where: str, path: str) -> None:
    if not ok:
        raise DataError(f"{where}: {path or 'the record'}: expected {expected}, got {value!r}")
