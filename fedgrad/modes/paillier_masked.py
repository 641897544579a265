"""``privacy.mode = "paillier-masked"``: threshold secure aggregation whose cost does not grow with the model.

The threshold ``paillier`` mode encrypts every weight under Paillier, so the decryptors' work (t partial
decryptions of ⌈params / slots⌉ ciphertexts per round) grows with the model. Here, after Willow (Bell-Clark,
Gascón, Li, Raykova, Schoppmann: KAHE + AHE) and OPA (Karthikeyan & Polychroniadou 2024), each client masks its
clipped, quantized, self-weighted update with a key-additive RLWE mask (``fedgrad.crypto.lattice``) under a
fresh secret key, and encrypts only that key under the threshold Paillier key (``fedgrad.crypto.masked``). The
coordinator sums the masked vectors in uint64; the decryptors release the sum of the cohort's keys, a fixed
number of ciphertexts whatever the model (23 for a 2048-bit key and up to 1,000 clients); the key sum unmasks
the sum of the updates and nothing else.

Every rule of ``paillier`` carries over unchanged, because this mode *is* that mode with another payload
(:class:`~fedgrad.modes.paillier.ThresholdAggregation`, :class:`~fedgrad.modes.paillier.ContributionSigner`):
operator enrollment, the cohort fixed before any upload, a client's signature over the run, round, cohort, its
weight, the round's one task and, here, the digest binding its key ciphertexts to its masked vector
(``crypto.masked.masked_digest``, domain-separated from ``paillier``'s payload digest); decryptors that rebuild
the key product themselves, release once per (run, round) durably, with proofs; weights from the clients (n_i
rides as one more masked value); the run policy; dropped rounds.

Who must collude to read one client's update: t decryptors (who then hold the Paillier key and so the client's
mask key), or the coordinator together with all other contributors of a round (min_clients − 1 clients). The
coordinator alone sees masked vectors, RLWE samples under a key it never learns, and the key sum of at least
min_clients signed clients once per round (what that reveals about one key: ``docs/threat-model.md``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from fedgrad.crypto import SecureAggConfig
from fedgrad.crypto.masked import MaskedEncoder, MaskedScheme, MaskedSum
from fedgrad.modes.base import ClientPrivacy, Guarantee, Manifest
from fedgrad.modes.paillier import (
    ContributionSigner,
    Decryptors,
    PaillierMode,
    ThresholdAccumulator,
    ThresholdAggregation,
    threshold_round,
)
from fedgrad.modes.paillier_common import flatten
from fedgrad.protocol import EncodedUpdate, Encoding, RoundCohort, TrainTask
from fedgrad.results.schema import MaskedReport, PrivacyReport, ThresholdReport


class MaskedAggregation(ThresholdAggregation):
    """One run's hybrid aggregation: the threshold key set for the masks' keys, the lattice layout for updates."""

    mode_name = "paillier-masked"

    def __init__(self, cfg: SecureAggConfig, decryptors: Decryptors) -> None:
        super().__init__(cfg, decryptors)
        self.scheme = MaskedScheme(cfg, self.public_key)
        self.ciphertexts = self.scheme.n_ciphertexts
        self.payload_bytes = self.scheme.payload_bytes
        self.fingerprint = self.scheme.fingerprint

    def new_accumulator(self, specs: Manifest, cohort: RoundCohort) -> MaskedAccumulator:
        return MaskedAccumulator(specs, cohort, self)

    def signed_parts(self, payload: bytes) -> tuple[bytes, bytes, bytes]:
        upload = self.scheme.split(payload)
        return upload.key_payload, upload.masked_sha256(), upload.digest()

    def split(self, payload: bytes) -> tuple[bytes, np.ndarray]:
        upload = self.scheme.split(payload)
        return upload.key_payload, self.scheme.words(upload.masked)

    def join(self, ciphertexts: bytes, summed: np.ndarray) -> bytes:
        return ciphertexts + self.scheme.wire_bytes(summed)

    def encrypt(self, update: np.ndarray, examples: int, run_id: str, round: int) -> bytes:
        return MaskedEncoder(self.cfg, self.public_key).encrypt(update, examples, run_id, round).to_bytes()

    def release_sums(self, plaintexts: Sequence[int], payloads: Sequence[bytes], run_id: str, round: int
                     ) -> tuple[np.ndarray, int | None]:
        total = MaskedSum(self.scheme, run_id, round)
        for index, payload in enumerate(payloads):
            total.add(str(index), self.scheme.split(payload).masked)
        return total.unmask(list(plaintexts))

    def summary(self) -> MaskedReport:
        masks = self.scheme.masks
        base = super().summary()
        threshold = {f.name: getattr(base, f.name) for f in dataclasses.fields(ThresholdReport)}
        threshold["slots_per_ciphertext"] = None  # the packing of whole updates, which this mode does not use
        return MaskedReport(**threshold, masked_bytes_per_value=masks.value_bytes, delta_bits=masks.delta_bits,
                            dropped_bits=masks.dropped_bits, key_ciphertexts=self.scheme.n_ciphertexts)


class MaskedAccumulator(ThresholdAccumulator):
    """One round attempt: each signed upload's key joins the Paillier product (and goes to the decryptors), its
    masked vector the uint64 sum; the released key sum unmasks the total."""

    encoding = Encoding.PAILLIER_MASKED

    def __init__(self, specs: Manifest, cohort: RoundCohort, aggregation: MaskedAggregation) -> None:
        super().__init__(specs, cohort, aggregation)
        self._scheme = aggregation.scheme
        self._sum = aggregation.scheme.key_accumulator()
        self._masked = MaskedSum(aggregation.scheme, cohort.run_id, cohort.round_number)

    def _fold(self, client_id: str, payload: bytes) -> None:
        upload = self._scheme.split(payload)
        self._sum.add(client_id, upload.key_payload)  # validates the ciphertexts first: a refusal changes nothing
        self._masked.add(client_id, upload.masked)

    def _decode(self, plaintexts: list[int], contributors: int) -> tuple[np.ndarray, int | None]:
        return self._masked.unmask(plaintexts)


class PaillierMaskedMode(PaillierMode):
    """Threshold Paillier on the masks' keys, RLWE masks on the updates (see the module docstring)."""

    name = "paillier-masked"
    encrypted_as = "RLWE masks whose keys are summed under Paillier"
    seals = "masks the result with a fresh RLWE key and encrypts only that key under"
    aggregation_type = MaskedAggregation

    def guarantee(self) -> Guarantee:
        threshold = super().guarantee()
        return Guarantee(
            threshold.short.replace("ciphertexts;", "lattice-masked updates, keys under Paillier;"),
            f"{threshold.full}. Updates travel under key-additive RLWE masks (N = 4096, q = 2^64, ternary "
            "secrets, Homomorphic Encryption Security Standard 128-bit table); only each mask's key is "
            "encrypted under the threshold key, and the decryptors release the sum of the cohort's keys, which "
            "unmasks the sum of the updates only")

    def settings_line(self) -> str:
        return super().settings_line() + ", RLWE masks (N = 4096, q = 2^64)"

    def describe_round(self, summary: PrivacyReport, *, client: int, sent: str) -> str:
        assert isinstance(summary, ThresholdReport), "the summary of this mode's aggregation"
        settings = self.settings
        return (f"Each client clips every coordinate of its delta to ±{settings.clip:g}, quantizes it to "
                f"{settings.value_bits} bits, masks n_i·q_i and its own example count n_i with a key-additive RLWE "
                f"mask under a fresh key, and encrypts only that key under a {summary.key_bits}-bit threshold "
                f"Paillier key ({summary.threshold}-of-{summary.decryptors} decryptors, dealt outside the "
                f"coordinator), then signs (run, round, cohort, digest of the key ciphertexts and the masked vector, "
                f"weight) with its enrolled Ed25519 key ({sent}). "
                f"{threshold_round(self.scenario.federation.min_clients)}")

    @classmethod
    def encode(cls, task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
               privacy: ClientPrivacy) -> EncodedUpdate:
        signer = ContributionSigner.for_task(cls.name, task, client_id, privacy)
        upload = MaskedEncoder(signer.cfg, signer.public_key).encrypt(flatten(task, delta), signer.weight,
                                                                      task.run_id, task.round)
        return EncodedUpdate(Encoding.PAILLIER_MASKED, upload.to_bytes(), signer.sign(upload.digest()))
