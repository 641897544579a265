"""``privacy.mode = "paillier-trusted"`` (and ``"paillier-naive"``): Paillier secure aggregation with ONE key
holder, hosted in the coordinator's process. Kept to compare against ``paillier`` (threshold decryption): it
is the scheme the book describes, and what most "encrypted FedAvg" demos do.

Who holds what. :func:`host_key_holder` generates the run's key pair and seals the private key inside a
:class:`fedgrad.crypto.KeyHolder`, whose one door, ``decrypt_aggregate(round, contributors, payload)``, refuses
anything but an aggregate of at least ``federation.min_clients`` distinct contributors, once per round. The
accumulator has the public key only; each update is validated (header, fingerprint, width, count,
0 < c < n², gcd(c, n) = 1) and multiplied into the running product as it arrives.

What that is worth: the key holder lives in the coordinator's process, so whoever runs the coordinator can
read every update (through the private key in memory, or through the door: the coordinator chooses round
numbers, contributor sets and weights, mints client ids, and nothing checks what it says). ``paillier``
removes each of those powers; ``tests/redteam`` shows which attacks succeed here and fail there.

Weights. Under FedAvg each client folds its share of the cohort's weight, f_i = w_i / Σ_cohort w, into its
update before encrypting; the task announces Σ_cohort w (which the coordinator chooses: the weight-skew
attack). The decrypted sum is Σ_i f_i·x_i over the clients that answered; dividing by their Σ_i f_i gives
their weighted mean.

A key holder that refuses an aggregate (only a client encrypting an out-of-range plaintext can cause it, see
``fedgrad.crypto.packing``) drops that round's aggregate: the model stays as it was and the run goes on.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import phe

from fedgrad.crypto import (
    Accumulator,
    AggregationError,
    CiphertextError,
    KeyHolder,
    KeyHolderRefusal,
    SecureAggConfig,
    SlotLayout,
    generate_keypair,
    public_key_to_bytes,
)
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import (
    Aggregation,
    ClientPrivacy,
    EncodingRefused,
    Guarantee,
    Manifest,
    PrivacyMode,
    Profile,
    UpdateAccumulator,
)
from fedgrad.modes.paillier_common import (
    encrypt_update,
    flatten,
    key_strength,
    manifest_shapes,
    parameter_count,
    unflatten,
)
from fedgrad.protocol import Announcement, EncodedUpdate, Encoding, Rejected, RoundCohort, TrainTask, WeightedSum
from fedgrad.results.schema import PaillierReport, PrivacyReport, RoundRecord, RoundReport
from fedgrad.scenario import Scenario

log = logging.getLogger("fedgrad.server")

#: The key holder's one call: (round, contributors, aggregate payload) -> Σ_i f_i·x_i as float64.
DecryptAggregate = Callable[[int, Iterable[str], bytes], np.ndarray]

#: The wire encoding of each crypto scheme.
ENCODINGS: dict[str, Encoding] = {"paillier": Encoding.PAILLIER, "paillier-naive": Encoding.PAILLIER_NAIVE}


def host_key_holder(cfg: SecureAggConfig, *, key_bits: int, insecure_key_bits: bool,
                    min_clients: int) -> tuple[phe.PaillierPublicKey, KeyHolder]:
    """Generate a key pair and give the private key to a new :class:`KeyHolder`."""
    public_key, private_key = generate_keypair(key_bits, insecure_key_bits)
    return public_key, KeyHolder(private_key, cfg, min_clients=min_clients)


class PaillierAggregation(Aggregation):
    """One run's secure aggregation: its configuration, public key and the key holder's door."""

    def __init__(self, mode: str, cfg: SecureAggConfig, public_key: phe.PaillierPublicKey,
                 decrypt: DecryptAggregate, *, close: Callable[[], None] = lambda: None) -> None:
        self.mode = mode
        self.cfg = cfg
        self.public_key = public_key
        self._decrypt = decrypt
        self._close = close
        self._public_key_bytes = public_key_to_bytes(public_key)
        self.ciphertexts = make_scheme(cfg, public_key).n_ciphertexts
        self.payload_bytes = HEADER_BYTES + self.ciphertexts * ciphertext_width(public_key)

    def announcement(self, cohort_weight: float, extra: Mapping[str, Any] | None = None) -> Announcement:
        """What a TRAIN task tells the client."""
        return Announcement(self.mode, {"secure": self.cfg.to_dict(), "cohort_weight": cohort_weight, **(extra or {})},
                            self._public_key_bytes)

    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> PaillierAccumulator:
        return PaillierAccumulator(specs, cohort, self, self._decrypt)

    def summary(self) -> PaillierReport:
        key_bits = int(self.public_key.n).bit_length()
        slots = (SlotLayout.derive(self.cfg.value_bits, self.cfg.max_clients, key_bits).slots
                 if self.cfg.mode == "paillier" else None)
        return PaillierReport(mode=self.mode, key_bits=key_bits, clip=self.cfg.clip, value_bits=self.cfg.value_bits,
                              max_clients=self.cfg.max_clients, ciphertexts_per_update=self.ciphertexts,
                              update_bytes=self.payload_bytes, bytes_per_param=self.payload_bytes / self.cfg.n_params,
                              slots_per_ciphertext=slots)

    def close(self) -> None:
        self._close()


class PaillierAccumulator(UpdateAccumulator):
    """One round attempt's homomorphic sum (see the module docstring); holds the public key only."""

    def __init__(self, specs: Manifest, cohort: RoundCohort, aggregation: PaillierAggregation,
                 decrypt: DecryptAggregate, announcement_extra: Mapping[str, Any] | None = None) -> None:
        self._shapes = manifest_shapes(specs, aggregation.cfg)
        self._round = cohort.round_number
        self._cohort_weight = cohort.total_weight
        self._decrypt = decrypt
        self._sum = Accumulator(aggregation.cfg, aggregation.public_key)
        self._fractions: dict[str, float] = {}
        self._report = RoundReport()
        self.encoding = ENCODINGS[aggregation.cfg.mode]
        self.payload_bytes = aggregation.payload_bytes
        self.announcement = aggregation.announcement(self._cohort_weight, announcement_extra)

    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        try:
            self._sum.add(client_id, bytes(payload))
        except CiphertextError as error:
            log.warning("round %d: rejected client %s's ciphertexts: %s", self._round, client_id, error)
            raise Rejected.invalid(f"invalid ciphertext payload: {error}") from None
        except AggregationError as error:  # the aggregate holds max_clients updates already
            raise Rejected.resource(str(error)) from None
        self._fractions[client_id] = weight / self._cohort_weight

    def finalize(self, timer: PhaseTimer) -> WeightedSum | None:
        with timer.phase("aggregate"):
            aggregate = self._sum.payload()
            contributors = self._sum.contributors
        with timer.phase("decrypt"):
            try:
                flat = self._decrypt(self._round, contributors, aggregate)
            except KeyHolderRefusal as refusal:
                log.warning("round %d: the aggregate was not decrypted: %s; the model stays as it was",
                            self._round, refusal)
                self._report = RoundReport(dropped=f"aggregate not decrypted: {refusal}")
                return None
        return WeightedSum(total=unflatten(flat, self._shapes), weight=math.fsum(self._fractions.values()),
                           contributors=tuple(sorted(contributors)))

    def round_report(self) -> RoundReport:
        return self._report


@dataclass(frozen=True)
class TrustedSettings:
    """``paillier-trusted``'s settings: the key the coordinator's key holder generates, and how each value of an
    update is quantized."""

    key_bits: int
    insecure_key_bits: bool  # allow a key below the secure size (tests only)
    clip: float              # per-coordinate bound on an update before quantization
    value_bits: int          # bits per quantized value

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> TrustedSettings:
        privacy = scenario.privacy
        return cls(key_bits=privacy.key_bits, insecure_key_bits=privacy.insecure_key_bits, clip=privacy.clip,
                   value_bits=privacy.value_bits)

    def packing(self, scheme: str, n_params: int, max_clients: int) -> SecureAggConfig:
        """The run's packing for a model of ``n_params`` under the ``fedgrad.crypto`` ``scheme``, at most
        ``max_clients`` updates a sum (``federation.effective_max_clients``)."""
        return SecureAggConfig(mode=scheme, n_params=n_params, clip=self.clip, value_bits=self.value_bits,
                               max_clients=max_clients)


def key_holder_round(min_clients: int) -> str:
    """What the coordinator does with the ciphertexts when the key holder lives in its process, for the audit."""
    return ("The coordinator multiplies the ciphertexts, which adds the plaintexts without reading them; the key "
            f"holder decrypts only that product, and only with at least {min_clients} contributors. But the "
            "key holder runs in the coordinator's process: the individual view is what the coordinator decrypts "
            "with the private key it finds among its own objects, and the red-team table lists the attacks "
            "through the key holder's own door. The aggregate is a different, weaker target: it shows which "
            "words somebody in the cohort used, not who used them.")


class TrustedPaillierMode(PrivacyMode[TrustedSettings]):
    """Packed Paillier, the key holder inside the coordinator (see the module docstring)."""

    name = "paillier-trusted"
    #: The ``fedgrad.crypto`` scheme: packed plaintexts with DJN encryption.
    scheme: ClassVar[str] = "paillier"
    #: The scheme in words, for the guarantee and the audit.
    scheme_words: ClassVar[str] = "packed Paillier"
    encrypt_words: ClassVar[str] = "packs and encrypts it"
    #: Why a round takes minutes per client (empty: it does not), see :class:`~fedgrad.modes.base.Profile`.
    slow: ClassVar[str] = ""

    @classmethod
    def read_settings(cls, scenario: Scenario) -> TrustedSettings:
        return TrustedSettings.from_scenario(scenario)

    @property
    def encrypted(self) -> bool:
        return True

    @classmethod
    def encrypts(cls, announcement: Announcement) -> bool:
        return True

    def guarantee(self) -> Guarantee:
        fed = self.scenario.federation
        return Guarantee(
            f"ciphertexts; sum of >= {fed.min_clients} (key holder in the coordinator)",
            f"secure aggregation with a trusted key holder ({self.scheme_words}, "
            f"{key_strength(self.settings.key_bits)}): clients send only "
            f"ciphertexts, and the key holder decrypts only sums of at least {fed.min_clients} clients, once per "
            "round; but the key holder runs inside the coordinator's process, so whoever hosts the coordinator "
            "can read every client's update on its own (through the private key, or by choosing round numbers, "
            "contributor sets, client ids and weights); no differential-privacy bound on what the sum reveals")

    def profile(self) -> Profile:
        return Profile(key_holder="coordinator", client_weights="folded", key_sizes=True, slow=self.slow,
                       redteam=True)

    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        assert isinstance(summary, PaillierReport), "the summary of this mode's aggregation"
        settings = self.settings
        return (f"Each client clips every coordinate of its delta to ±{settings.clip:g}, folds in its FedAvg weight, "
                f"quantizes it to {settings.value_bits} bits, then {self.encrypt_words} under the key holder's "
                f"{summary.key_bits}-bit Paillier public key ({sent} of ciphertext). "
                f"{key_holder_round(self.scenario.federation.min_clients)}")

    def settings_line(self) -> str:
        settings = self.settings
        return f"{self.name}, {settings.key_bits}-bit key, clip {settings.clip:g}, {settings.value_bits} value bits"

    def aggregation(self, model: Mapping[str, np.ndarray],
                    past_rounds: Sequence[RoundRecord] = ()) -> PaillierAggregation:
        """A fresh key pair and the key holder in this process."""
        settings, fed = self.settings, self.scenario.federation
        cfg = settings.packing(self.scheme, parameter_count(model), fed.effective_max_clients)
        public_key, key_holder = host_key_holder(cfg, key_bits=settings.key_bits,
                                                 insecure_key_bits=settings.insecure_key_bits,
                                                 min_clients=fed.min_clients)
        return PaillierAggregation(self.name, cfg, public_key, key_holder.decrypt_aggregate,
                                   close=key_holder.close)

    @classmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        announcement = task.announcement
        assert announcement is not None, "a secure round announces its key"
        cohort_weight = float(announcement.params.get("cohort_weight", 0.0))
        if cohort_weight <= 0:
            raise EncodingRefused(f"client {client_id}: the task announces no cohort weight for secure aggregation")
        weight = task.weight / cohort_weight
        payload = encrypt_update(announcement, client_id, flatten(task, delta), weight, privacy)
        return EncodedUpdate(ENCODINGS[cls.scheme], payload)


class NaivePaillierMode(TrustedPaillierMode):
    """The book's scheme: one phe ciphertext per value (minutes per round; for comparison only)."""

    name = "paillier-naive"
    scheme = "paillier-naive"
    scheme_words = "one Paillier ciphertext per value"
    encrypt_words = "encrypts every value separately"
    slow = "one Paillier ciphertext per value costs minutes per client and round"
