"""``privacy.mode = "none"``: updates travel and are summed in plain.

Determinism. Updates arrive in whatever order the network delivers them, and float addition is not
associative, so a float running sum would make "same seed, same metrics" hold only by luck. The plain
accumulator therefore adds in exact integer arithmetic: each weighted value ``c = w·x`` (one float64
rounding, the same whichever order updates come in) is split into two fixed-point parts held in int64,

    hi = floor(c · 2^HI_BITS)                      the integer multiple of 2^-HI_BITS at or below c,
    lo = rint((c - hi · 2^-HI_BITS) · 2^LO_BITS)   the remainder on a 2^-LO_BITS grid,

and integer sums do not depend on order. The only loss is the rounding of the remainder to 2^-LO_BITS
(about 1e-16 absolute), far below float32 resolution for any weight of one or more. The bounds:
``|c| < 2^MAX_ABS_BITS`` keeps ``|hi| < 2^(MAX_ABS_BITS + HI_BITS)`` and ``lo < 2^(LO_BITS - HI_BITS)``,
so up to ``MAX_CONTRIBUTIONS = 2^20`` of them sum below 2^63 in either part.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import (
    Aggregation,
    ClientPrivacy,
    Guarantee,
    Manifest,
    NoSettings,
    PrivacyMode,
    Profile,
    UpdateAccumulator,
)
from fedgrad.protocol import (
    Announcement,
    ClientUpdate,
    EncodedUpdate,
    Encoding,
    Rejected,
    RoundCohort,
    TrainTask,
    WeightedSum,
)
from fedgrad.results.schema import PrivacyReport, RoundRecord
from fedgrad.scenario import Scenario
from fedgrad.transport.codec import decode_tensors, encode_tensors, payload_size

HI_BITS = 13
LO_BITS = 53
MAX_ABS_BITS = 30
MAX_CONTRIBUTIONS = 1 << 20


class PlainAccumulator(UpdateAccumulator):
    """Exact, order-independent sum of plain float deltas (see the module docstring).

    ``cohort`` is not needed: the weight of each update arrives with it. It is accepted so that the class
    itself is an :data:`~fedgrad.modes.base.AccumulatorFactory`.
    """

    encoding = Encoding.PLAIN

    def __init__(self, specs: Manifest, cohort: RoundCohort | None = None) -> None:
        self._specs = list(specs)
        self.payload_bytes = payload_size(specs)
        self._hi = {spec.name: np.zeros(tuple(spec.shape), dtype=np.int64) for spec in specs}
        self._lo = {spec.name: np.zeros(tuple(spec.shape), dtype=np.int64) for spec in specs}
        self._weights: dict[str, float] = {}

    def tensors(self, payload: bytes | bytearray) -> dict[str, np.ndarray]:
        """``payload`` decoded against the model's manifest, refused unless every value is finite."""
        tensors = decode_tensors(self._specs, payload)
        for name, values in tensors.items():
            if not np.isfinite(values).all():
                raise Rejected.invalid(f"tensor {name!r} contains NaN or infinite values")
        return tensors

    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        self._fold(client_id, weight, self.tensors(payload))

    def _fold(self, client_id: str, weight: float, tensors: Mapping[str, np.ndarray]) -> None:
        """Add ``weight · tensors`` to the sum, or raise :class:`Rejected` and leave it untouched."""
        if len(self._weights) >= MAX_CONTRIBUTIONS:
            raise Rejected.resource(f"a round can aggregate at most {MAX_CONTRIBUTIONS} updates")
        parts = {}
        for name, values in tensors.items():
            weighted = weight * values.astype(np.float64)
            if weighted.size and np.abs(weighted).max() >= 2.0 ** MAX_ABS_BITS:
                raise Rejected.invalid(
                    f"tensor {name!r}: weighted values reach {np.abs(weighted).max():.3g}, above the "
                    f"aggregation bound 2^{MAX_ABS_BITS}; the update is not a plausible model delta")
            parts[name] = _split_fixed_point(weighted)
        for name, (hi, lo) in parts.items():
            self._hi[name] += hi
            self._lo[name] += lo
        self._weights[client_id] = weight

    def finalize(self, timer: PhaseTimer) -> WeightedSum:
        with timer.phase("aggregate"):
            total = {name: np.ldexp(self._hi[name].astype(np.float64), -HI_BITS)
                     + np.ldexp(self._lo[name].astype(np.float64), -LO_BITS) for name in self._hi}
            # fsum is exactly rounded, hence independent of the order the weights arrived in.
            weight = math.fsum(self._weights.values())
            return WeightedSum(total=total, weight=weight, contributors=tuple(sorted(self._weights)))


class KeepingAccumulator(PlainAccumulator):
    """The plain sum, and each update as it arrived (``WeightedSum.updates``, in client-id order), for a strategy
    that needs them (robust rules, QFedAvg): memory O(clients × model), where the plain sum needs O(model)."""

    def __init__(self, specs: Manifest, cohort: RoundCohort | None = None) -> None:
        super().__init__(specs, cohort)
        self._kept: dict[str, dict[str, np.ndarray]] = {}

    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        tensors = self.tensors(payload)
        self._fold(client_id, weight, tensors)
        self._kept[client_id] = {name: values.copy() for name, values in tensors.items()}  # not views of the payload

    def finalize(self, timer: PhaseTimer) -> WeightedSum:
        summed = super().finalize(timer)
        updates = tuple(ClientUpdate(cid, self._weights[cid], self._kept[cid]) for cid in summed.contributors)
        return dataclasses.replace(summed, updates=updates)


def _split_fixed_point(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` int64 parts of float64 ``values`` with ``values ≈ hi·2^-HI_BITS + lo·2^-LO_BITS``."""
    hi = np.floor(np.ldexp(values, HI_BITS))
    remainder = values - np.ldexp(hi, -HI_BITS)  # exact: the bits of values below 2^-HI_BITS
    return hi.astype(np.int64), np.rint(np.ldexp(remainder, LO_BITS)).astype(np.int64)


class PlainAggregation(Aggregation):
    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> UpdateAccumulator:
        return PlainAccumulator(specs)

    def new_keeping_accumulator(self, specs: Manifest, cohort: RoundCohort) -> UpdateAccumulator:
        return KeepingAccumulator(specs)

    def summary(self) -> PrivacyReport:
        return PrivacyReport(mode=PlainMode.name)


def encode_plain(delta: Mapping[str, np.ndarray]) -> EncodedUpdate:
    """``delta``'s tensors as they are, in the model's order."""
    return EncodedUpdate(Encoding.PLAIN, encode_tensors(delta)[1])


class PlainMode(PrivacyMode[NoSettings]):
    name = "none"

    @classmethod
    def read_settings(cls, scenario: Scenario) -> NoSettings:
        return NoSettings()

    @property
    def encrypted(self) -> bool:
        return False

    @classmethod
    def encrypts(cls, announcement: Announcement) -> bool:
        return False

    def guarantee(self) -> Guarantee:
        return Guarantee(
            "plaintext updates",
            "none: the coordinator sees every client's update in plaintext (nobody else needs to collude); with a "
            "bag-of-words model that reveals which words each client's emails contain")

    def profile(self) -> Profile:
        return Profile()

    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        return (f"Every client sends its delta in plaintext ({sent}). The coordinator holds client {client}'s delta "
                "and every other client's, then averages them.")

    def hides_individual_updates(self) -> str:
        return ""

    def settings_line(self) -> str:
        return self.name

    def aggregation(self, model: Mapping[str, np.ndarray],
                    past_rounds: Sequence[RoundRecord] = ()) -> Aggregation:
        return PlainAggregation()

    @classmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        return encode_plain(delta)
