"""The aggregation seam: fold each round's updates into one weighted sum as they arrive.

The coordinator never holds a round's updates side by side. Each accepted update is added to an
:class:`UpdateAccumulator` the moment its stream completes and then dropped, so coordinator memory is
O(model), not O(clients). The accumulator decides how payloads are encoded and summed: in plain (here),
as Paillier ciphertexts multiplied without a key (``server.secure``), or clipped with noise added before
the sum is released (``server.dp``). One :class:`Aggregation` per run, chosen by ``privacy.mode`` in
:func:`build_aggregation`, builds each round's accumulator for the round's :class:`RoundCohort` and keeps
what outlives a round (the key holder, the privacy ledger).

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

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedgrad.metrics import PhaseTimer
from fedgrad.scenario import Scenario
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import decode_tensors, payload_size
from server.strategies import WeightedSum
from server.validation import Rejected

HI_BITS = 13
LO_BITS = 53
MAX_ABS_BITS = 30
MAX_CONTRIBUTIONS = 1 << 20


@dataclass(frozen=True)
class RoundCohort:
    """The clients selected for one attempt at a round, with the strategy's aggregation weight of each."""

    round_number: int
    weights: Mapping[str, float]

    @property
    def total_weight(self) -> float:
        """Σ weight over the cohort (exactly rounded, so it does not depend on the selection order)."""
        return math.fsum(self.weights.values())


class UpdateAccumulator(ABC):
    """Weighted sum of one round's updates, built incrementally.

    ``add`` either folds an update in completely or raises :class:`Rejected` and leaves the sum
    untouched, so a bad update never contaminates the round.
    """

    #: The ``Encoding`` this accumulator reads; updates in any other encoding are rejected up front.
    encoding: int
    #: Exact payload length of one update; a header announcing another length is rejected up front.
    payload_bytes: int
    #: What clients need to encode for this accumulator (key, packing, weights); sent with every TRAIN task.
    #: None: plain updates.
    secure_aggregation: pb.SecureAggregation | None = None
    #: How clients clip and noise their updates (DP-FedAvg); sent with every TRAIN task. None: no DP.
    differential_privacy: pb.DifferentialPrivacy | None = None

    @abstractmethod
    def add(self, client_id: str, weight: float, payload: bytes | bytearray) -> None:
        """Fold in one client's payload with aggregation weight ``weight``."""

    @abstractmethod
    def finalize(self, timer: PhaseTimer) -> WeightedSum:
        """The round's weighted sum (time spent attributed to ``timer``'s aggregate/decrypt phases)."""

    def round_report(self) -> dict[str, Any]:
        """Entries this accumulator adds to the round's record once finalized (e.g. the privacy spent)."""
        return {}


#: Builds the accumulator of one round attempt from the model's manifest and the round's cohort.
AccumulatorFactory = Callable[[Sequence[pb.TensorSpec], RoundCohort], UpdateAccumulator]


class PlainAccumulator(UpdateAccumulator):
    """Exact, order-independent sum of plain float deltas (see the module docstring).

    ``cohort`` is not needed: the weight of each update arrives with it. It is accepted so that the class
    itself is an :data:`AccumulatorFactory`.
    """

    encoding = pb.PLAIN

    def __init__(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort | None = None) -> None:
        self._specs = list(specs)
        self.payload_bytes = payload_size(specs)
        self._hi = {spec.name: np.zeros(tuple(spec.shape), dtype=np.int64) for spec in specs}
        self._lo = {spec.name: np.zeros(tuple(spec.shape), dtype=np.int64) for spec in specs}
        self._weights: dict[str, float] = {}

    def add(self, client_id: str, weight: float, payload: bytes | bytearray) -> None:
        if len(self._weights) >= MAX_CONTRIBUTIONS:
            raise Rejected.resource(f"a round can aggregate at most {MAX_CONTRIBUTIONS} updates")
        parts = {}
        for name, values in decode_tensors(self._specs, payload).items():
            if not np.isfinite(values).all():
                raise Rejected.invalid(f"tensor {name!r} contains NaN or infinite values")
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


def _split_fixed_point(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` int64 parts of float64 ``values`` with ``values ≈ hi·2^-HI_BITS + lo·2^-LO_BITS``."""
    hi = np.floor(np.ldexp(values, HI_BITS))
    remainder = values - np.ldexp(hi, -HI_BITS)  # exact: the bits of values below 2^-HI_BITS
    return hi.astype(np.int64), np.rint(np.ldexp(remainder, LO_BITS)).astype(np.int64)


class Aggregation(ABC):
    """How one run's updates are summed and released: one per run, it builds every round's accumulator."""

    @abstractmethod
    def new_accumulator(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort) -> UpdateAccumulator:
        """The accumulator of one round attempt (an :data:`AccumulatorFactory`)."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """The ``privacy`` entry of the run's summary: the mode and what it guarantees, as numbers and words."""


class PlainAggregation(Aggregation):
    """``privacy.mode = "none"``: updates travel and are summed in plain."""

    def new_accumulator(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort) -> UpdateAccumulator:
        return PlainAccumulator(specs)

    def summary(self) -> dict[str, Any]:
        return {"mode": "none", "guarantee": "none: the coordinator sees every client's update in plain"}


def build_aggregation(scenario: Scenario, model: Mapping[str, np.ndarray],
                      past_rounds: Sequence[Mapping[str, Any]] = ()) -> Aggregation:
    """The aggregation ``privacy.mode`` asks for, for a global model shaped like ``model``.

    Secure aggregation generates the run's Paillier key here; DP calibrates its noise here, and charges its
    ledger with ``past_rounds`` (the records of a resumed run's finished rounds). The imports are local:
    both modules build on this one, and a run should not load what its mode does not use (``dp-accounting``
    alone brings in scipy).
    """
    privacy = scenario.privacy
    if privacy.mode == "dp":
        from server.dp import build_dp_aggregation
        return build_dp_aggregation(scenario, model, past_rounds)
    if privacy.secure_aggregation:
        from server.secure import build_paillier_aggregation
        return build_paillier_aggregation(scenario, model)
    return PlainAggregation()
