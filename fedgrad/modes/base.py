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
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from fedgrad.errors import ConfigError, FedgradError
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


@dataclass(frozen=True)
class Profile:
    """What ``compare``, ``audit`` and the red team need to know about a mode, so that they never compare its name.

    ``key_holder``: who can decrypt one update: ``""`` (nothing is encrypted), ``"coordinator"`` (a key holder in
    the coordinator's process) or ``"decryptors"`` (t of k decryptor processes). ``client_weights``: how a
    client's FedAvg weight reaches the sum: ``"plain"`` (next to a plaintext update), ``"folded"`` (the client
    multiplies its update by its share of the cohort's weight before encrypting), ``"encrypted"`` (the client
    encrypts its own example count next to its update) or ``"unit"`` (every update counts once, as DP needs).
    ``epsilon``: the mode spends a privacy budget (its runs have an ε to plot). ``key_sizes``: its cost depends
    on ``privacy.key_bits`` (``compare --key-bits`` grids over it). ``slow``: why one round takes minutes per
    client (empty: it does not); experiments then run fewer of its rounds and do not replay it in their own
    process. ``redteam``: the coordinator's own attacks (``fedgrad.experiments.redteam``) apply to this mode's
    aggregation.
    """

    key_holder: str = ""
    client_weights: str = "plain"
    epsilon: bool = False
    key_sizes: bool = False
    slow: str = ""
    redteam: bool = False


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


#: A mode's own settings type: a frozen dataclass built from the scenario by the mode (``read_settings``).
SettingsT = TypeVar("SettingsT")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a mode that has none."""


class PrivacyMode(ABC, Generic[SettingsT]):
    """One privacy mode for one scenario (see the package docstring).

    A mode is built for a scenario: :meth:`read_settings` turns the scenario's keys into the mode's own typed
    settings (``self.settings``) and refuses a combination the mode cannot run with :class:`ConfigError`, so that
    building a mode validates it. Everything about the mode is asked of it, never decided from its name
    elsewhere: whether updates travel encrypted (:attr:`encrypted` for the coordinator, :meth:`encrypts` for a
    client reading an announcement), whether it needs decryptor processes, what a run policy pins
    (:meth:`pinned_params`), what it guarantees (:meth:`guarantee`) and what experiments need to know about
    it (:meth:`profile`, :meth:`describe_round`).
    """

    #: ``privacy.mode`` in a scenario.
    name: ClassVar[str]
    #: Whether the mode is set by a target ε (``privacy.epsilon``): ``compare --privacy`` then takes ``NAME:EPSILON``.
    takes_epsilon: ClassVar[bool] = False

    def __init__(self, scenario: Scenario, *, decryptors: Any = None) -> None:
        """``decryptors``: the coordinator's handle on the decryptor processes, for modes that need them."""
        self.scenario = scenario
        self.settings: SettingsT = self.read_settings(scenario)
        self.decryptors = decryptors
        if self.encrypted and scenario.federation.min_clients < 2:
            raise ConfigError(f"federation.min_clients: secure aggregation (privacy.mode = {self.name!r}) needs >= 2, "
                              f"so that no single client's update is ever decrypted (got "
                              f"{scenario.federation.min_clients})")

    @classmethod
    @abstractmethod
    def read_settings(cls, scenario: Scenario) -> SettingsT:
        """This mode's settings from ``scenario``'s keys; :class:`ConfigError` naming the key to change when the
        mode cannot run with them."""

    @property
    @abstractmethod
    def encrypted(self) -> bool:
        """Whether updates travel encrypted under these settings (clients then withhold their local metrics, which
        describe their data)."""

    @classmethod
    @abstractmethod
    def encrypts(cls, announcement: Announcement) -> bool:
        """The client's side of :attr:`encrypted`: whether :meth:`encode` under ``announcement`` sends ciphertexts
        (a client knows the task's announcement, not the coordinator's scenario)."""

    @classmethod
    def underneath(cls) -> tuple[str, ...]:
        """The modes this mode can run on top of (``privacy.dp_secure`` for ``dp``; ``compare --privacy`` spells
        one ``UNDER+NAME:EPSILON``); empty for a mode that runs on its own."""
        return ()

    @property
    def needs_decryptors(self) -> bool:
        """Whether this mode needs decryptor processes (``fedgrad.decryptor``), passed to its constructor as
        ``decryptors``."""
        return False

    def hides_individual_updates(self) -> str:
        """Why this mode cannot give the coordinator's strategy each client's update (robust rules and QFedAvg
        need them); empty when it can (see :meth:`Aggregation.new_keeping_accumulator`)."""
        if self.encrypted:
            return ("secure aggregation exists to hide each client's update, the coordinator obtains only their sum "
                    "(what composes with it: client-side norm bounding by clipping, privacy.clip)")
        return "the mode releases only an aggregate of the updates"

    @abstractmethod
    def guarantee(self) -> Guarantee:
        """What this mode protects and from whom (see :class:`Guarantee`)."""

    @abstractmethod
    def profile(self) -> Profile:
        """What experiments need to know about this mode (see :class:`Profile`)."""

    @abstractmethod
    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        """What the coordinator receives and releases in one round, in words, for the leakage audit: ``summary``
        is this mode's aggregation summary (:meth:`Aggregation.summary`: key size, noise, ...), ``client`` the
        audited client and ``sent`` what it uploaded (``"client 0 sends 12.3 KiB"``)."""

    @abstractmethod
    def settings_line(self) -> str:
        """The mode's settings in one line, for reports (``paillier-trusted, 2048-bit key, ...``)."""

    @abstractmethod
    def aggregation(self, model: Mapping[str, np.ndarray],
                    past_rounds: Sequence[RoundRecord] = ()) -> Aggregation:
        """The coordinator's side for a global model shaped like ``model``; ``past_rounds`` are the records of
        the rounds a resumed run already finished."""

    def pinned_params(self, n_params: int) -> Mapping[str, Any]:
        """The announcement parameters this mode sends for a model of ``n_params``: what a client pinned to a run
        policy (``fedgrad.policy``) accepts, and nothing else."""
        raise FedgradError(f"privacy mode {self.name!r} has no decryptors a run policy could bind")

    @classmethod
    @abstractmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        """The client's side: ``delta`` encoded as ``task.announcement`` asks."""
