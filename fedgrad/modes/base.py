"""The interface every privacy mode implements, and the pieces the coordinator and clients share.

Server side, a mode builds one :class:`Aggregation` per run, which builds one :class:`UpdateAccumulator` per
round attempt. The coordinator never holds a round's updates side by side: each accepted update is folded into
the accumulator the moment its stream completes and then dropped, so coordinator memory is O(model), not
O(clients). Client side, :meth:`PrivacyMode.encode` turns a trained delta into the payload the round's
:class:`~fedgrad.protocol.Announcement` asks for.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fedgrad.errors import FedgradError
from fedgrad.metrics import PhaseTimer
from fedgrad.protocol import Announcement, EncodedUpdate, Encoding, RoundCohort, TensorSpec, TrainTask, WeightedSum
from fedgrad.results.schema import PrivacyReport, RoundRecord, RoundReport
from fedgrad.scenario import Scenario

#: The model's manifest as the codec describes it (name, shape, dtype per tensor, in payload order).
Manifest = Sequence[TensorSpec]


class EncodingRefused(FedgradError):
    """The task asks for an encoding this client will not produce (it would expose the client's data)."""


@dataclass(frozen=True)
class ClientPrivacy:
    """Privacy settings that belong to the client process, not to the coordinator's task: it is the client's
    data they protect, so the client does not take the coordinator's word for them."""

    allow_insecure_keys: bool = False  # accept Paillier keys below 2048 bits (tests and demos only)
    noise_seed: int | None = None      # seed of DP noise shares; None (always, outside tests): OS entropy
    identity_dir: Path | None = None   # this client's Ed25519 identities, <client id>.key (``paillier``)
    enrollment: Path | None = None     # the operator's enrollment of every client's public key (``paillier``)
    policy: Path | None = None         # the operator's run policy (``fedgrad.policy``): every task is checked
    training_seed: int | None = None   # with a policy: seed of local shuffling; None (outside simulate): OS entropy


DEFAULT_CLIENT_PRIVACY = ClientPrivacy()  # the defaults; shared safely because ClientPrivacy is frozen


@dataclass(frozen=True)
class Guarantee:
    """What a mode protects, in words: ``short`` fits a table cell; ``full`` is one paragraph saying what the
    coordinator sees and who must collude to read one client's update."""

    short: str
    full: str


class UpdateAccumulator(ABC):
    """Weighted sum of one round attempt's updates, built incrementally.

    ``add`` either folds an update in completely or raises :class:`~fedgrad.protocol.Rejected` and leaves the
    sum untouched, so a bad update never contaminates the round.
    """

    #: The encoding this accumulator reads; updates in any other encoding are rejected up front.
    encoding: Encoding
    #: Exact payload length of one update; a header announcing another length is rejected up front.
    payload_bytes: int
    #: What selected clients are told about encoding their updates; None: plain updates.
    announcement: Announcement | None = None

    @abstractmethod
    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        """Fold in one client's payload with aggregation weight ``weight`` (``signature`` and ``examples``, the
        client's declared example count, for modes whose decryptors verify what clients signed)."""

    @abstractmethod
    def finalize(self, timer: PhaseTimer) -> WeightedSum | None:
        """The round's weighted sum (time attributed to ``timer``'s phases), or None when the mode drops the
        round's aggregate (it failed validation); the round's report then says why."""

    def round_report(self) -> RoundReport:
        """What this accumulator adds to the round's record once finalized (e.g. the privacy spent)."""
        return RoundReport()


#: Builds the accumulator of one round attempt from the model's manifest and the round's cohort.
AccumulatorFactory = Callable[[Manifest, RoundCohort], UpdateAccumulator]


class Aggregation(ABC):
    """How one run's updates are summed and released: one per run, it builds every round's accumulator."""

    @abstractmethod
    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> UpdateAccumulator:
        """The accumulator of one round attempt (an :data:`AccumulatorFactory`)."""

    def new_keeping_accumulator(self, specs: Manifest, cohort: RoundCohort) -> UpdateAccumulator:
        """An accumulator whose sum also carries each update (``WeightedSum.updates``), for a strategy that needs
        them; only a mode whose :meth:`PrivacyMode.hides_individual_updates` is empty offers one."""
        raise NotImplementedError(f"{type(self).__name__} does not give individual updates")

    @abstractmethod
    def summary(self) -> PrivacyReport:
        """The ``privacy`` entry of the run's summary: the mode's numbers (key size, ε spent, ...)."""

    def close(self) -> None:  # noqa: B027  (a deliberate no-op default: only some modes hold resources)
        """Release what the aggregation holds (worker processes, connections); idempotent."""


class PrivacyMode(ABC):
    """One privacy mode for one scenario (see the package docstring)."""

    #: ``privacy.mode`` in a scenario.
    name: ClassVar[str]
    #: Whether updates travel encrypted (clients then withhold their local metrics, which describe their data).
    encrypted: ClassVar[bool] = False

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    @classmethod
    def needs_decryptors(cls, scenario: Scenario) -> bool:
        """Whether this mode, set up for ``scenario``, needs decryptor processes (``fedgrad.decryptor``),
        passed to its constructor as ``decryptors``."""
        return False

    @classmethod
    def hides_individual_updates(cls, scenario: Scenario) -> str:
        """Why this mode, set up for ``scenario``, cannot give the coordinator's strategy each client's update
        (robust rules and QFedAvg need them); empty when it can (see :meth:`Aggregation.new_keeping_accumulator`)."""
        if scenario.privacy.secure_aggregation:
            return ("secure aggregation exists to hide each client's update, the coordinator obtains only their sum "
                    "(what composes with it: client-side norm bounding by clipping, privacy.clip)")
        return "the mode releases only an aggregate of the updates"

    @abstractmethod
    def guarantee(self) -> Guarantee:
        """What this mode protects and from whom (see :class:`Guarantee`)."""

    @abstractmethod
    def settings(self) -> str:
        """The mode's settings in one line, for reports (``paillier-trusted, 2048-bit key, ...``)."""

    @abstractmethod
    def aggregation(self, model: Mapping[str, np.ndarray],
                    past_rounds: Sequence[RoundRecord] = ()) -> Aggregation:
        """The coordinator's side for a global model shaped like ``model``; ``past_rounds`` are the records of
        the rounds a resumed run already finished."""

    @classmethod
    def pinned_params(cls, scenario: Scenario, n_params: int) -> Mapping[str, Any]:
        """The announcement parameters this mode sends for a model of ``n_params`` under ``scenario``: what a
        client pinned to a run policy (``fedgrad.policy``) accepts, and nothing else."""
        raise FedgradError(f"privacy mode {cls.name!r} has no decryptors a run policy could bind")

    @classmethod
    @abstractmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        """The client's side: ``delta`` encoded as ``task.announcement`` asks."""

