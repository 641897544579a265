"""``privacy.mode = "paillier"``: secure aggregation that holds against the coordinator.

Who holds what (``docs/threat-model.md`` walks through each attack):

- **Nobody holds the whole key.** A dealer step (``fedgrad keygen``, its own process) makes a t-of-k threshold
  Paillier key (``fedgrad.crypto.threshold``, Damgård–Jurik 2001 §4), writes one share per decryptor and exits,
  forgetting the factorization. The coordinator has the public key set only; it combines t partial decryptions
  of the round's aggregate, each with a proof of correctness.
- **Decryptors verify, they do not trust** (``fedgrad.decryptor``). Clients own Ed25519 identities, enrolled by
  the operator (in ``simulate``, the launcher), not by the coordinator. A round's cohort is announced to every
  selected client before any upload; each client signs (run, round, cohort, SHA-256 of its ciphertexts, its
  weight, and the digest of the task it trained: settings and the model it started from). A decryptor folds in
  only contributions signed for the round's one task digest, whose settings its run policy fixes. The
  coordinator forwards every signed update to the decryptors as it arrives; each decryptor checks the signature,
  the cohort and the task, multiplies the ciphertexts itself, requires at least its own ``min_clients`` distinct
  enrolled signers (and, with a run policy, a share of the cohort) and answers at most once per (run, round),
  remembered across its restarts.
- **Weights come from the clients.** A client encrypts n_i·q_i and n_i (its example count, capped at
  ``privacy.max_weight``) in the same packed plaintext, so the coordinator cannot skew the average; the
  division by Σ n_i happens after decryption.

Who must collude to read one client's update: t decryptors (who then hold the key), or the coordinator together
with all other contributors of a round (min_clients − 1 clients, who can subtract their own updates from the
sum, as with any secure aggregation). The coordinator alone gets only sums of at least min_clients enrolled
clients, one per round. Not covered: a coordinator that keeps the model (nearly) unchanged across rounds and
differences sums over overlapping cohorts; DP noise (``dp`` with distributed placement) is the defence there.

An aggregate that fails validation after decryption (a client encrypted an out-of-range plaintext) is dropped
for that round: the model stays, the run goes on, and the round's record says why. Decryptors never release a
second aggregate for the same round.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import phe

from fedgrad.crypto import (
    Accumulator,
    AggregationError,
    CiphertextError,
    PlaintextRangeError,
    SecureAggConfig,
    SlotLayout,
    public_key_from_bytes,
    public_key_to_bytes,
)
from fedgrad.crypto.identity import (
    ClientIdentity,
    Enrollment,
    SignatureError,
    cohort_digest,
    sign_contribution,
    verify_contribution,
)
from fedgrad.crypto.quantize import dequantize
from fedgrad.crypto.schemes import make_encoder, make_scheme
from fedgrad.crypto.threshold import KeySet
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width
from fedgrad.errors import ConfigError, FedgradError
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
    announced_config,
    flatten,
    key_strength,
    manifest_shapes,
    parameter_count,
    unflatten,
)
from fedgrad.protocol import (
    Announcement,
    EncodedUpdate,
    Encoding,
    Rejected,
    RoundCohort,
    TrainTask,
    WeightedSum,
    task_digest,
)
from fedgrad.results.schema import DecryptorStats, PrivacyReport, RoundRecord, RoundReport, ThresholdReport
from fedgrad.scenario import Scenario

log = logging.getLogger("fedgrad.server")


class Decryptors(Protocol):
    """The coordinator's handle on the k decryptors (``fedgrad.decryptor.pool.DecryptorPool``)."""

    key_set: KeySet
    enrollment: Enrollment | None  # the operator's public enrollment, to refuse bad signatures up front

    def open(self, run_id: str, round: int, attempt: int, cohort: Sequence[str], settings_digest: bytes = b"",
             model_digest: bytes = b"") -> None: ...

    def contribute(self, run_id: str, round: int, attempt: int, client_id: str, weight: int, payload: bytes,
                   signature: bytes, masked_sha256: bytes = b"") -> object: ...

    def release(self, run_id: str, round: int, attempt: int, contributors: Sequence[str],
                ciphertexts: Sequence[int]) -> list[int]: ...

    def close(self) -> None: ...


class ThresholdAggregation(Aggregation):
    """One run's threshold secure aggregation: the packing, the public key set and the decryptors.

    Subclasses change what the decryptors' ciphertexts carry (``fedgrad.modes.paillier_masked``: only the keys of
    the clients' masks) and keep every rule of the round: cohort, signatures, task binding, one release."""

    mode_name = "paillier"

    def __init__(self, cfg: SecureAggConfig, decryptors: Decryptors) -> None:
        self.cfg = cfg
        self.decryptors = decryptors
        self.public_key = decryptors.key_set.public_key
        self.ciphertexts = make_scheme(cfg, self.public_key).n_ciphertexts
        self.payload_bytes = HEADER_BYTES + self.ciphertexts * ciphertext_width(self.public_key)
        self._public_key_bytes = public_key_to_bytes(self.public_key)
        #: What the Paillier part of a payload is bound to (``crypto.wire``): this key and packing.
        self.fingerprint = cfg.fingerprint(self.public_key.n)

    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> ThresholdAccumulator:
        return ThresholdAccumulator(specs, cohort, self)

    def signed_parts(self, payload: bytes) -> tuple[bytes, bytes, bytes]:
        """(what the decryptors fold in, the masked update's digest or b"", the digest the client signed);
        `CiphertextError` for a payload of the wrong size."""
        return payload, b"", hashlib.sha256(payload).digest()

    def split(self, payload: bytes) -> tuple[bytes, np.ndarray]:
        """A payload's two parts: the Paillier ciphertexts (a `wire` payload) and the vector the coordinator sums
        itself, as uint64 words (none here: every value is under Paillier)."""
        return payload, np.zeros(0, dtype=np.uint64)

    def join(self, ciphertexts: bytes, summed: np.ndarray) -> bytes:
        """The payload of :meth:`split`'s two parts (``summed`` reduced to its wire width)."""
        return ciphertexts

    def encrypt(self, update: np.ndarray, examples: int, run_id: str, round: int) -> bytes:
        """An unsigned payload of ``update`` with weight ``examples`` (capped at ``max_weight``), as a client of
        (run, round) encodes it with the public key: what anyone holding the key set can make."""
        return make_encoder(self.cfg, self.public_key).encrypt(update, examples)

    def release_sums(self, plaintexts: Sequence[int], payloads: Sequence[bytes], run_id: str, round: int
                     ) -> tuple[np.ndarray, int | None]:
        """(Σ n_i·q_i, Σ n_i) of ``payloads`` (made for (run, round)) from the plaintexts of their ciphertexts'
        product, as the round's accumulator decodes them; `CryptoError` when they do not decode."""
        return make_scheme(self.cfg, self.public_key).decode(list(plaintexts), len(payloads))

    def announcement(self, cohort: Sequence[str]) -> Announcement:
        return Announcement(self.mode_name, {"secure": self.cfg.to_dict()}, self._public_key_bytes, tuple(cohort))

    def summary(self) -> ThresholdReport:
        key_set = self.decryptors.key_set
        key_bits = int(self.public_key.n).bit_length()
        return ThresholdReport(
            mode=self.mode_name, key_bits=key_bits, decryptors=key_set.parties, threshold=key_set.threshold,
            clip=self.cfg.clip, value_bits=self.cfg.value_bits, max_clients=self.cfg.max_clients,
            max_weight=self.cfg.max_weight, short_randomizer=self.cfg.short_randomizer,
            ciphertexts_per_update=self.ciphertexts, update_bytes=self.payload_bytes,
            bytes_per_param=self.payload_bytes / self.cfg.n_params,
            slots_per_ciphertext=SlotLayout.derive(self.cfg.value_bits, self.cfg.max_clients, key_bits,
                                                   self.cfg.max_weight).slots)

    def close(self) -> None:
        self.decryptors.close()


class ThresholdAccumulator(UpdateAccumulator):
    """One round attempt: validates each signed update, forwards it to the decryptors, keeps the product."""

    encoding = Encoding.PAILLIER

    def __init__(self, specs: Manifest, cohort: RoundCohort, aggregation: ThresholdAggregation) -> None:
        self._shapes = manifest_shapes(specs, aggregation.cfg)
        self._aggregation = aggregation
        self._session = (cohort.run_id, cohort.round_number, cohort.attempt)
        self._members = tuple(sorted(cohort.weights))
        self._task_digest = (task_digest(cohort.settings_digest, cohort.model_digest)
                             if cohort.settings_digest and cohort.model_digest else None)
        enrollment = aggregation.decryptors.enrollment
        self._cohort_digest = (enrollment.cohort(self._members)
                               if enrollment is not None and all(m in enrollment.clients for m in self._members)
                               else None)
        self._sum = Accumulator(aggregation.cfg, aggregation.public_key)
        self._report = RoundReport()
        self.payload_bytes = aggregation.payload_bytes
        self.announcement = aggregation.announcement(self._members)
        aggregation.decryptors.open(*self._session, self._members, cohort.settings_digest, cohort.model_digest)

    def add(self, client_id: str, weight: float, payload: bytes | bytearray, signature: bytes = b"",
            examples: int = 0) -> None:
        if not signature:
            raise Rejected.invalid("this round's updates must be signed by the client")
        payload = bytes(payload)
        capped = min(max(examples, 1), self._aggregation.cfg.max_weight)  # what the client signed (``encode``)
        try:
            ciphertexts, masked_sha256, signed = self._aggregation.signed_parts(payload)
        except CiphertextError as error:
            raise Rejected.invalid(f"invalid payload: {error}") from None
        enrollment = self._aggregation.decryptors.enrollment
        if enrollment is not None:  # refuse what the decryptors would refuse, before it enters the product
            if self._cohort_digest is None or client_id not in enrollment.clients:
                raise Rejected.unauthenticated(f"client {client_id!r} is not enrolled")
            try:
                verify_contribution(enrollment.public_key(client_id), signature, self._session[0],
                                    self._session[1], self._cohort_digest, signed, capped, self._task_digest)
            except SignatureError as error:
                raise Rejected.unauthenticated(f"the update's signature does not verify: {error}") from None
        try:
            self._fold(client_id, payload)
        except CiphertextError as error:
            raise Rejected.invalid(f"invalid ciphertext payload: {error}") from None
        except AggregationError as error:
            raise Rejected.resource(str(error)) from None
        self._aggregation.decryptors.contribute(*self._session, client_id, capped, ciphertexts, signature,
                                                masked_sha256)

    def _fold(self, client_id: str, payload: bytes) -> None:
        """Validate ``payload`` in full and fold it into the round's sum, or raise and leave the sum as it was."""
        self._sum.add(client_id, payload)

    def _decode(self, plaintexts: list[int], contributors: int) -> tuple[np.ndarray, int | None]:
        """(Σ n_i·q_i as integers, Σ n_i) from the released plaintexts; `PlaintextRangeError` if out of range."""
        return make_scheme(self._aggregation.cfg, self._aggregation.public_key).decode(plaintexts, contributors)

    def finalize(self, timer: PhaseTimer) -> WeightedSum | None:
        cfg = self._aggregation.cfg
        with timer.phase("aggregate"):
            contributors = sorted(self._sum.contributors)
            ciphertexts = self._sum.ciphertexts()
        with timer.phase("decrypt"):
            try:
                plaintexts = self._aggregation.decryptors.release(*self._session, contributors, ciphertexts)
                sums, total_weight = self._decode(plaintexts, len(contributors))
            except (FedgradError, PlaintextRangeError) as error:
                log.warning("round %d: the aggregate was not released: %s; the model stays as it was",
                            self._session[1], error)
                self._report = RoundReport(dropped=f"aggregate not released: {error}")
                return None
        assert total_weight is not None, "integer weights decode their sum"
        stats = getattr(self._aggregation.decryptors, "release_stats", {}).pop(self._session, None)
        if stats is not None:
            self._report = RoundReport(decryptors=DecryptorStats(**stats))
        return WeightedSum(total=unflatten(dequantize(cfg, sums), self._shapes), weight=float(total_weight),
                           contributors=tuple(contributors))

    def round_report(self) -> RoundReport:
        return self._report


@functools.lru_cache(maxsize=4096)
def _identity(path: Path) -> ClientIdentity:
    return ClientIdentity.load(path)


@functools.lru_cache(maxsize=8)
def _enrollment(path: Path) -> Enrollment:
    return Enrollment.load(path)


@dataclass(frozen=True)
class ThresholdSettings:
    """``paillier``'s settings: the t-of-k key the dealer makes for the decryptors, and the packing of each update.
    Distributed DP (``fedgrad.modes.dp``) runs on these too, with its own clip and weights."""

    key_bits: int
    decryptors: int          # k decryptor processes, each holding one key share
    threshold: int           # t of them decrypt an aggregate
    clip: float              # per-coordinate bound on an update before quantization
    value_bits: int          # bits per quantized value
    max_weight: int          # cap on a client's example count, its FedAvg weight, sent encrypted (1: every update once)
    short_randomizer: bool   # DJN randomizer exponent of 2λ bits (an extra assumption the guarantee states)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ThresholdSettings:
        """The scenario's threshold settings; :class:`ConfigError` for a threshold two disjoint sets of decryptors
        could each reach."""
        privacy = scenario.privacy
        if not privacy.decryptors < 2 * privacy.threshold <= 2 * privacy.decryptors:
            raise ConfigError(f"privacy.threshold: more than half of privacy.decryptors={privacy.decryptors} and at "
                              f"most all of them (got {privacy.threshold}); with fewer, two disjoint sets of "
                              "decryptors could each release a different sum of one round")
        return cls(key_bits=privacy.key_bits, decryptors=privacy.decryptors, threshold=privacy.threshold,
                   clip=privacy.clip, value_bits=privacy.value_bits, max_weight=privacy.max_weight,
                   short_randomizer=privacy.short_randomizer)

    def packing(self, n_params: int, max_clients: int) -> SecureAggConfig:
        """The run's packing for a model of ``n_params``, at most ``max_clients`` updates a sum: integer client
        weights up to ``max_weight`` next to the values."""
        return SecureAggConfig(mode="paillier", n_params=n_params, clip=self.clip, value_bits=self.value_bits,
                               max_clients=max_clients, max_weight=self.max_weight,
                               short_randomizer=self.short_randomizer)

    def strength(self) -> str:
        """The key in words, for guarantees."""
        return key_strength(self.key_bits) + (", short DJN randomizer (assumes short-exponent discrete logs are "
                                              "hard)" if self.short_randomizer else "")


def threshold_round(min_clients: int) -> str:
    """What the coordinator does with threshold ciphertexts, for the audit (``paillier`` and distributed DP)."""
    return ("The coordinator multiplies the ciphertexts and forwards each signed upload to the decryptors, "
            "which verify every signature, multiply the ciphertexts themselves and release one sum of at least "
            f"{min_clients} enrolled clients per round. The coordinator holds no key share: it has no "
            "individual view, and the red-team table lists every attack it tried for one.")


def threshold_aggregation(settings: ThresholdSettings, scenario: Scenario, model: Mapping[str, np.ndarray],
                          decryptors: Decryptors | None,
                          aggregation_type: type[ThresholdAggregation]) -> ThresholdAggregation:
    """The coordinator's side of threshold secure aggregation (``aggregation_type``: what the decryptors'
    ciphertexts carry) under ``settings`` for ``model``, on ``decryptors`` holding shares of a key set that
    matches them."""
    if decryptors is None:
        raise ConfigError(f"privacy.mode = \"{scenario.privacy.mode}\" needs running decryptors (fedgrad simulate "
                          "starts them; fedgrad server takes --decryptors and --key-set)")
    key_set = decryptors.key_set
    if (key_set.parties, key_set.threshold) != (settings.decryptors, settings.threshold):
        raise ConfigError(f"the key set is {key_set.threshold}-of-{key_set.parties}, the scenario asks for "
                          f"privacy.threshold={settings.threshold} of privacy.decryptors={settings.decryptors}")
    cfg = settings.packing(parameter_count(model), scenario.federation.effective_max_clients)
    return aggregation_type(cfg, decryptors)


class PaillierMode(PrivacyMode[ThresholdSettings]):
    """Threshold Paillier with verifying decryptors and client-held identities (see the module docstring)."""

    name = "paillier"
    #: How an update travels, in words (a DP guarantee built on this mode quotes it, and DP's audit paragraph).
    encrypted_as: ClassVar[str] = "Paillier"
    seals: ClassVar[str] = "encrypts the result under"
    #: The coordinator's side of a run (a subclass of this mode swaps what the decryptors' ciphertexts carry).
    aggregation_type: ClassVar[type[ThresholdAggregation]] = ThresholdAggregation

    @classmethod
    def read_settings(cls, scenario: Scenario) -> ThresholdSettings:
        return ThresholdSettings.from_scenario(scenario)

    @property
    def encrypted(self) -> bool:
        return True

    @classmethod
    def encrypts(cls, announcement: Announcement) -> bool:
        return True

    @property
    def needs_decryptors(self) -> bool:
        return True

    def guarantee(self) -> Guarantee:
        settings, m = self.settings, self.scenario.federation.min_clients
        t, k = settings.threshold, settings.decryptors
        return Guarantee(
            f"ciphertexts; {t}-of-{k} decryptors; sums of >= {m} signed clients",
            f"threshold secure aggregation ({settings.strength()}): no single party holds the key; {t} of {k} "
            f"decryptors must collude to read one client's update, or the coordinator together with the other "
            f"{m - 1} contributor(s) of a round; the coordinator alone obtains only sums of at least {m} enrolled, "
            "signed clients, one per round, weighted by the clients' own encrypted example counts; no "
            "differential-privacy bound on what the sum or the model reveals")

    def profile(self) -> Profile:
        return Profile(key_holder="decryptors", client_weights="encrypted", key_sizes=True, redteam=True)

    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        assert isinstance(summary, ThresholdReport), "the summary of this mode's aggregation"
        settings = self.settings
        return (f"Each client clips every coordinate of its delta to ±{settings.clip:g}, quantizes it to "
                f"{settings.value_bits} bits and encrypts n_i·q_i next to its own example count n_i under a "
                f"{summary.key_bits}-bit threshold Paillier key ({summary.threshold}-of-"
                f"{summary.decryptors} decryptors, dealt outside the coordinator), then signs (run, round, "
                f"cohort, ciphertext digest, weight) with its enrolled Ed25519 key ({sent} of ciphertext). "
                f"{threshold_round(self.scenario.federation.min_clients)}")

    def settings_line(self) -> str:
        settings = self.settings
        return (f"{self.name}, {settings.threshold}-of-{settings.decryptors} decryptors, {settings.key_bits}-bit "
                f"key, clip {settings.clip:g}, {settings.value_bits} value bits, weights up to {settings.max_weight}"
                + (", short randomizer" if settings.short_randomizer else ""))

    def aggregation(self, model: Mapping[str, np.ndarray],
                    past_rounds: Sequence[RoundRecord] = ()) -> ThresholdAggregation:
        return threshold_aggregation(self.settings, self.scenario, model, self.decryptors, self.aggregation_type)

    def pinned_params(self, n_params: int) -> dict[str, Any]:
        return {"secure": self.settings.packing(n_params, self.scenario.federation.effective_max_clients).to_dict()}

    @classmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        signer = ContributionSigner.for_task(cls.name, task, client_id, privacy)
        payload = make_encoder(signer.cfg, signer.public_key).encrypt(flatten(task, delta), signer.weight)
        return EncodedUpdate(Encoding.PAILLIER, payload, signer.sign(hashlib.sha256(payload).digest()))


@dataclass(frozen=True)
class ContributionSigner:
    """A client's side of a threshold round, once it has checked the task's announcement: the packing, the key,
    its own capped weight, and its signature over the run, round, cohort, task and what it encrypted."""

    task: TrainTask
    cfg: SecureAggConfig
    public_key: phe.PaillierPublicKey
    weight: int
    identity: ClientIdentity
    cohort_digest: bytes

    @classmethod
    def for_task(cls, mode: str, task: TrainTask, client_id: str, privacy: ClientPrivacy) -> ContributionSigner:
        """Check ``task``'s announcement as a client of ``mode`` (its cohort lists this client once, every member
        enrolled by the operator, integer weights, a key of allowed size); `EncodingRefused` otherwise."""
        announcement = task.announcement
        assert announcement is not None, "a secure round announces its key"
        if privacy.identity_dir is None or privacy.enrollment is None:
            raise EncodingRefused(f"client {client_id}: privacy.mode = \"{mode}\" needs this client's identity "
                                  "and the operator's enrollment (fedgrad client --identity-dir, --enrollment)")
        enrollment = _enrollment(privacy.enrollment)
        cohort = announcement.cohort
        if client_id not in cohort or len(set(cohort)) != len(cohort):
            raise EncodingRefused(f"client {client_id}: the announced cohort does not list this client once")
        try:
            members = {member: enrollment.public_key(member) for member in cohort}
        except (KeyError, FedgradError):
            raise EncodingRefused(f"client {client_id}: the announced cohort names clients the operator did not "
                                  "enroll") from None
        cfg = announced_config(announcement, client_id)
        if not cfg.integer_weights:
            raise EncodingRefused(f"client {client_id}: {mode} rounds carry the client's own weight "
                                  "(max_weight >= 1)")
        public_key = public_key_from_bytes(announcement.public_key, insecure_key_bits=privacy.allow_insecure_keys)
        return cls(task, cfg, public_key, min(max(task.local_examples, 1), cfg.max_weight),
                   _identity(privacy.identity_dir / f"{client_id}.key"), cohort_digest(members))

    def sign(self, encrypted_sha256: bytes) -> bytes:
        """The signature over this round's contribution whose ciphertexts (or masked digest) hash to
        ``encrypted_sha256``, bound to the task this client trained: its settings and the model it computed the
        digest of itself."""
        task = self.task
        trained = task_digest(task.config.settings_digest(), task.model_digest) if task.model_digest else None
        return sign_contribution(self.identity, task.run_id, task.round, self.cohort_digest, encrypted_sha256,
                                 self.weight, trained)
