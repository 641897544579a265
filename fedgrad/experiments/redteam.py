"""The active coordinator: a library of attacks on one client's update, each run with what a coordinator of
``paillier-trusted``, ``paillier`` or ``paillier-masked`` really holds.

Trust model (``docs/threat-model.md``): the coordinator is not trusted. It chooses cohorts, round numbers,
attempts, weights and client ids, sends clients whatever tasks and announcements it likes, and may lie to the
key holder or the decryptors about all of them. What it holds, and what every attack here starts from
(:class:`Coordinator`):

- its mode's aggregation object and every accumulator it builds, with their decrypt path: under
  ``paillier-trusted`` the key holder's door (``decrypt_aggregate``), under ``paillier`` the handle on the k
  decryptors (``open``/``contribute``/``release``, and each decryptor separately where it can reach them);
  under ``paillier-masked`` the same handle, which releases sums of the clients' mask keys, next to the masked
  vectors the clients upload, which the coordinator adds and subtracts itself (``ThresholdAggregation.split``);
- its files (run directory, the public key set, the enrollment);
- the clients, as the coordinator reaches them: it sends a TRAIN task (round, weight, announcement, cohort) and
  gets back what the client's own code encodes (``PrivacyMode.encode``: ciphertexts, and under ``paillier`` the
  client's Ed25519 signature); it never reads a client's data or private key.

Each attack is a function ``(coordinator, victim) -> AttackOutcome``. ``victim`` names the target and carries its
true update, used **only to score** the outcome: ``succeeded`` means the attacker obtained a vector within half a
quantization step (in every coordinate) of the victim's true quantized update, as the victim quantized it.
``recovered_error`` is the smallest such distance, in quantization steps, over every candidate the attacker could
form from what was released to it (each release, and the difference of any two); None when nothing was released.
Under the threshold modes a release is decoded with what the coordinator holds (``ThresholdAggregation.
release_sums``): under ``paillier`` its plaintexts are the sums, under ``paillier-masked`` they are a key sum,
which unmasks the sum of the masked vectors the coordinator sent for the released contributors.

The attacks (issue 12): (1) subsets under fresh round numbers, (2) a sybil's encryption of zero, (3) dividing an
aggregate by one ciphertext, (4) skewed weights, (5) key material in the coordinator's objects and files,
(6) replaying an earlier round, (7) asking twice for one round, (8) a cohort with an unenrolled or duplicated
client, (9) forged or reused signatures. Against ``paillier`` and ``paillier-masked`` each must fail (under the
latter each plays the same move on the key ciphertexts and, beside them, on the masked vectors: a sybil's masked
zero vector, the quotient of key ciphertexts next to the difference of masked vectors); against
``paillier-trusted`` the outcome records which succeed.
"""
from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import re
import secrets
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gmpy2
import numpy as np
import phe

from fedgrad.crypto import CryptoError, SecureAggConfig
from fedgrad.crypto.identity import ClientIdentity, Enrollment, cohort_digest, sign_contribution
from fedgrad.crypto.quantize import dequantize, max_quantized, quantize, scale
from fedgrad.crypto.schemes import make_encoder, make_scheme
from fedgrad.crypto.threshold import (
    KeySet,
    KeyShare,
    PartialProof,
    combine,
    combine_verified,
    delta,
    partial_decrypt,
    verification_base,
)
from fedgrad.crypto.wire import ciphertext_width, dump_payload, load_payload
from fedgrad.decryptor.core import Decryptor, DecryptorRefusal
from fedgrad.decryptor.pool import ReleaseFailed
from fedgrad.errors import FedgradError
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import Aggregation, ClientPrivacy, Manifest, UpdateAccumulator
from fedgrad.modes.paillier import ThresholdAggregation
from fedgrad.modes.paillier_trusted import PaillierAggregation
from fedgrad.modes.resolve import encode_update
from fedgrad.protocol import EncodedUpdate, Rejected, RoundCohort, TaskConfig, TrainTask, WeightedSum

TRUSTED = "paillier-trusted"
THRESHOLD = "paillier"
MASKED = "paillier-masked"
MODES = (TRUSTED, THRESHOLD, MASKED)
#: An attack succeeds when every coordinate of its best candidate is within this many quantization steps.
SUCCESS_STEPS = 0.5


# ---- outcomes and the victim -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackOutcome:
    """What one attack achieved against one mode (see the module docstring)."""

    name: str
    mode: str
    succeeded: bool
    refusal: str | None          # what turned the attacker down (None: nothing did)
    recovered_error: float | None  # best candidate's distance to the victim's update, in quantization steps
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Victim:
    """The client under attack and its true flat update. Scoring only: no attack reads ``update``."""

    client_id: str
    update: np.ndarray
    cfg: SecureAggConfig

    def error(self, candidate: np.ndarray, fraction: float = 1.0) -> float:
        """Largest distance, in quantization steps, between ``candidate`` (in update units) and the victim's true
        quantized update as the victim quantized it (``fraction``: the FedAvg fraction it folded in under
        ``paillier-trusted``; 1 under ``paillier``, whose clients quantize the unweighted update)."""
        steps = scale(self.cfg) * fraction
        reference = quantize(self.cfg, self.update, fraction).astype(np.float64) / steps
        return float(np.max(np.abs(np.asarray(candidate, dtype=np.float64).reshape(-1) - reference)) * steps)


# ---- the clients, as the coordinator reaches them ------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """What came back from one client for one task: its encoded update and the example count it declared."""

    encoded: EncodedUpdate
    examples: int


class ClientHandle(Protocol):
    """A client as the coordinator reaches it: send a TRAIN task, receive what the client's code encodes."""

    def train(self, task: TrainTask) -> Upload: ...


@dataclass
class HonestClient:
    """An honest client whose local training returns the same delta every round (the coordinator may keep the
    model unchanged). It fills in its own example count, identity and enrollment, as ``client/`` does: the
    coordinator's task cannot set them."""

    client_id: str
    delta: Mapping[str, np.ndarray]
    examples: int
    privacy: ClientPrivacy

    def train(self, task: TrainTask) -> Upload:
        task = dataclasses.replace(task, local_examples=self.examples)
        return Upload(encode_update(task, self.client_id, self.delta, self.privacy), self.examples)


# ---- in-process decryptors -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Obtained:
    """Plaintexts that reached the coordinator: ≥ t partial decryptions of one product of ``contributors``,
    contributed in ``session`` (run, round, attempt)."""

    contributors: tuple[str, ...]
    plaintexts: tuple[int, ...]
    session: tuple[str, int, int]


class LocalDecryptors:
    """The coordinator's ``Decryptors`` handle over k :class:`~fedgrad.decryptor.core.Decryptor` objects in this
    process: the real decryptor code without gRPC, with the semantics of ``DecryptorPool`` (``open`` and
    ``contribute`` never raise: refusals are recorded and returned by ``refusals``; ``release`` verifies every
    proof against the coordinator's product and raises ``ReleaseFailed`` below t). Each decryptor stands for its
    own process: the key-material search treats them as out of the coordinator's reach.

    ``obtained`` records every product of which the coordinator received at least t partial decryptions (whether
    or not their proofs matched the ciphertexts it claimed): what it could combine on its own.
    """

    def __init__(self, parties: Sequence[Decryptor], key_set: KeySet) -> None:
        self.key_set = key_set
        # an attacking coordinator skips its own signature checks: the decryptors' count
        self.enrollment: Enrollment | None = None
        self.parties = list(parties)
        self.obtained: list[Obtained] = []
        self._refusals: dict[tuple[str, int, int], list[tuple[int, str, DecryptorRefusal]]] = {}

    def _refused(self, session: tuple[str, int, int], index: int, what: str, refusal: DecryptorRefusal) -> None:
        self._refusals.setdefault(session, []).append((index, what, refusal))

    def open(self, run_id: str, round: int, attempt: int, cohort: Sequence[str], settings_digest: bytes = b"",
             model_digest: bytes = b"") -> None:
        for party in self.parties:
            try:
                party.open(run_id, round, attempt, cohort, settings_digest, model_digest)
            except DecryptorRefusal as refusal:
                self._refused((run_id, round, attempt), party.index, "open", refusal)

    def contribute(self, run_id: str, round: int, attempt: int, client_id: str, weight: int, payload: bytes,
                   signature: bytes, masked_sha256: bytes = b"") -> None:
        for party in self.parties:
            try:
                party.contribute(run_id, round, attempt, client_id, weight, payload, signature, masked_sha256)
            except DecryptorRefusal as refusal:
                self._refused((run_id, round, attempt), party.index, client_id, refusal)

    def reconfigured(self, directory: Path, enrollment: Path, *, min_clients: int, min_fraction: float = 0.0,
                     run_id: str | None = None, settings_digest: bytes | None = None) -> LocalDecryptors:
        """The same key shares in k fresh decryptors with another operator's settings (enrollment, run policy),
        each with its own state directory under ``directory``."""
        from fedgrad.crypto.identity import Enrollment

        enrolled = Enrollment.load(enrollment)
        return LocalDecryptors([Decryptor(party.share, self.key_set, enrolled, min_clients=min_clients,
                                          state_dir=directory / f"decryptor-{party.index}", cores=1,
                                          min_fraction=min_fraction, run_id=run_id, settings_digest=settings_digest)
                                for party in self.parties], self.key_set)

    def refusals(self, run_id: str, round: int, attempt: int) -> list[tuple[int, str, DecryptorRefusal]]:
        return list(self._refusals.get((run_id, round, attempt), []))

    def release(self, run_id: str, round: int, attempt: int, contributors: Sequence[str],
                ciphertexts: Sequence[int]) -> list[int]:
        responses: dict[int, tuple[list[int], PartialProof]] = {}
        problems: list[str] = []
        for party in self.parties:
            try:
                responses[party.index] = party.release(run_id, round, attempt, contributors)
            except DecryptorRefusal as refusal:
                self._refused((run_id, round, attempt), party.index, "release", refusal)
                problems.append(f"decryptor {party.index} refused the release: {refusal}")
        threshold = self.key_set.threshold
        if len(responses) < threshold:
            raise ReleaseFailed(f"run {run_id!r} round {round}: {len(responses)} decryptor(s) released partial "
                                f"decryptions, {threshold} needed: {'; '.join(problems)}")
        chosen = {i: responses[i][0] for i in sorted(responses)[:threshold]}
        own = combine(self.key_set.public_key, chosen, threshold, self.key_set.parties)
        self.obtained.append(Obtained(tuple(sorted(contributors)), tuple(own), (run_id, round, attempt)))
        try:
            plaintexts, _ = combine_verified(self.key_set, list(ciphertexts), responses)
        except CryptoError as exc:
            raise ReleaseFailed(f"run {run_id!r} round {round}: {exc}") from None
        return plaintexts

    def close(self) -> None:
        for party in self.parties:
            party.close()


# ---- the coordinator's position ---------------------------------------------------------------------------------


@dataclass
class Coordinator:
    """Everything an active coordinator of ``mode`` holds (see the module docstring)."""

    mode: str
    aggregation: Aggregation
    specs: Manifest
    config: TaskConfig
    clients: Mapping[str, ClientHandle]
    run_id: str = "redteam"
    files: tuple[Path, ...] = ()
    #: FedAvg weights it would assign honestly (the example counts clients registered with).
    weights: Mapping[str, float] = field(default_factory=dict)
    accumulators: list[UpdateAccumulator] = field(default_factory=list)
    #: The round numbers it will use (it chooses them; start past any round the run already used).
    rounds: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: Every payload it contributed to the decryptors, by session (run, round, attempt) and client id.
    sent: dict[tuple[str, int, int], dict[str, bytes]] = field(default_factory=dict)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    @property
    def holds_key_holder(self) -> bool:
        """Whether the key holder lives in this coordinator's process (``paillier-trusted``); otherwise the
        decryptors hold the key (``paillier``)."""
        return isinstance(self.aggregation, PaillierAggregation)

    def fresh_round(self) -> int:
        """A round number never used before in this run: the coordinator chooses them."""
        return next(self.rounds)

    def cohort_weights(self, members: Iterable[str]) -> dict[str, float]:
        return {member: float(self.weights.get(member, 1.0)) for member in members}

    def collect(self, round: int, weights: Mapping[str, float], attempt: int = 1,
                ) -> tuple[UpdateAccumulator, dict[str, Upload]]:
        """Open a round (cohort = ``weights``' keys, the weights announced as chosen), send every member its
        task, fold each upload into the round's accumulator as the platform does; nothing is released yet."""
        cohort = RoundCohort(round, dict(weights), self.run_id, attempt)
        accumulator = self.aggregation.new_accumulator(self.specs, cohort)
        self.accumulators.append(accumulator)
        uploads: dict[str, Upload] = {}
        for task_id, (client_id, weight) in enumerate(weights.items(), start=1):
            task = TrainTask(task_id, round, round - 1, weight, self.config, tuple(self.specs),
                             accumulator.announcement, self.run_id)
            upload = self.clients[client_id].train(task)
            uploads[client_id] = upload
            self.sent.setdefault((self.run_id, round, attempt), {})[client_id] = upload.encoded.payload
            accumulator.add(client_id, weight, upload.encoded.payload, upload.encoded.signature, upload.examples)
        return accumulator, uploads

    def flat(self, released: WeightedSum) -> np.ndarray:
        """A released weighted sum's tensors as one flat vector, in payload order."""
        return np.concatenate([np.asarray(released.total[name], dtype=np.float64).reshape(-1)
                               for name in self.tensor_names])


# ---- ciphertext arithmetic with the public key (what the coordinator can compute) ------------------------------


@dataclass(frozen=True)
class _Public:
    """What anyone holding the public key set computes on payloads: their Paillier ciphertexts (multiplied,
    inverted, re-randomized) and, under ``paillier-masked``, the masked vectors beside them (added, subtracted in
    uint64, as the coordinator sums them)."""

    cfg: SecureAggConfig
    pub: phe.PaillierPublicKey
    count: int
    fingerprint: bytes
    threshold: ThresholdAggregation | None  # splits a payload into its Paillier part and the summed vector

    @classmethod
    def of(cls, aggregation: PaillierAggregation | ThresholdAggregation) -> _Public:
        if isinstance(aggregation, ThresholdAggregation):
            return cls(aggregation.cfg, aggregation.public_key, aggregation.ciphertexts, aggregation.fingerprint,
                       aggregation)
        return cls(aggregation.cfg, aggregation.public_key, aggregation.ciphertexts,
                   aggregation.cfg.fingerprint(aggregation.public_key.n), None)

    @property
    def nsquare(self) -> gmpy2.mpz:
        return gmpy2.mpz(self.pub.nsquare)

    def _split(self, payload: bytes) -> tuple[bytes, np.ndarray]:
        return self.threshold.split(payload) if self.threshold is not None else (payload, np.zeros(0, np.uint64))

    def parse(self, payload: bytes) -> list[gmpy2.mpz]:
        """A payload's Paillier ciphertexts."""
        return load_payload(self._split(payload)[0], pub=self.pub, fingerprint=self.fingerprint,
                            count=self.count).ciphertexts

    def dump(self, contributors: int, ciphertexts: Sequence[int], summed: np.ndarray | None = None) -> bytes:
        """A payload of ``ciphertexts`` (and the masked vector ``summed``, where the mode has one)."""
        paillier = dump_payload(self.fingerprint, contributors, ciphertexts, ciphertext_width(self.pub))
        if self.threshold is None:
            return paillier
        return self.threshold.join(paillier, np.zeros(0, np.uint64) if summed is None else summed)

    def product(self, *payloads: bytes, contributors: int | None = None) -> bytes:
        """The aggregate payload of ``payloads``: ciphertexts multiplied, masked vectors added."""
        parts = [self._split(payload)[1] for payload in payloads]
        summed = np.asarray(np.sum(parts, axis=0, dtype=np.uint64)) if parts else None
        return self.dump(contributors or len(payloads), self.multiply(*(self.parse(p) for p in payloads)), summed)

    def quotient(self, payload: bytes, divisor: bytes, contributors: int = 1) -> bytes:
        """``payload`` with ``divisor`` taken out: ciphertexts times the divisor's inverses, masked vectors
        subtracted (mod 2^64, reduced to the wire width by ``dump``)."""
        summed = self._split(payload)[1] - self._split(divisor)[1]
        return self.dump(contributors, self.multiply(self.parse(payload), self.inverse(self.parse(divisor))), summed)

    def rerandomized(self, payload: bytes, contributors: int = 1) -> bytes:
        """``payload`` with new bytes: each ciphertext times a fresh encryption of zero, the masked vector kept."""
        return self.dump(contributors, self.rerandomize(self.parse(payload)), self._split(payload)[1])

    def multiply(self, *vectors: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
        nsquare = self.nsquare
        out = [gmpy2.mpz(1)] * self.count
        for vector in vectors:
            out = [a * b % nsquare for a, b in zip(out, vector, strict=True)]
        return out

    def inverse(self, vector: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
        return [gmpy2.invert(c, self.nsquare) for c in vector]

    def rerandomize(self, vector: Sequence[gmpy2.mpz]) -> list[gmpy2.mpz]:
        """Each ciphertext times a fresh encryption of zero, r^n mod n²: same plaintexts, new bytes."""
        n, nsquare = gmpy2.mpz(self.pub.n), self.nsquare
        return [c * gmpy2.powmod(gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2), n, nsquare) % nsquare
                for c in vector]

    def zero_update(self, weight: float | int, run_id: str = "", round: int = 0) -> bytes:
        """An honest-looking, unsigned encryption of an all-zero update made by the coordinator itself (a sybil's),
        as a client of (run, round) would make it."""
        zeros = np.zeros(self.cfg.n_params)
        if self.threshold is not None:
            return self.threshold.encrypt(zeros, int(weight), run_id, round)
        return make_encoder(self.cfg, self.pub).encrypt(zeros, weight)


# ---- key material in the coordinator's objects and files -----------------------------------------------------------

_SKIP_TYPES: tuple[type, ...] = (type, types.ModuleType, types.CodeType, types.FrameType, str, bytes, bytearray,
                                 float, complex, np.ndarray)
_MPZ = type(gmpy2.mpz(0))
_BIG_HEX = re.compile(rb"(?:0x)?[0-9a-fA-F]{32,}")
_BIG_DEC = re.compile(rb"[0-9]{40,}")
_SECRET_MARKERS = (b"fedgrad/threshold-key-share/v1", b"PRIVATE KEY")


@dataclass
class KeyMaterial:
    """What :func:`search_key_material` found."""

    private_keys: list[phe.PaillierPrivateKey] = field(default_factory=list)
    shares: list[KeyShare] = field(default_factory=list)
    factors: set[int] = field(default_factory=set)
    files: list[str] = field(default_factory=list)     # files holding a secret marker or a factor of n
    strings: int = 0                                   # in-memory texts holding a secret marker
    objects_searched: int = 0
    files_searched: int = 0

    def add_share(self, share: KeyShare) -> None:
        if all((known.n, known.index) != (share.n, share.index) for known in self.shares):
            self.shares.append(share)

    @property
    def found(self) -> bool:
        return bool(self.private_keys or self.shares or self.factors or self.files or self.strings)

    def describe(self) -> str:
        parts = [f"{len(self.private_keys)} Paillier private key(s)", f"{len(self.shares)} key share(s)",
                 f"{len(self.factors)} factor(s) of n", f"{self.strings} secret text(s) in memory",
                 f"{len(self.files)} file(s) with secrets"]
        return (f"searched {self.objects_searched} objects reachable from the coordinator's aggregation and "
                f"{self.files_searched} files: " + ", ".join(parts))


def _referents(obj: object) -> list[object]:
    """What ``obj`` holds as data: ``gc.get_referents``, except that a function contributes its closure and
    defaults, not its module globals (which would reach the whole interpreter, test fixtures included)."""
    if isinstance(obj, types.FunctionType):
        return [*(cell.cell_contents for cell in obj.__closure__ or () if _cell_full(cell)),
                *(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    return list(gc.get_referents(obj))


def _cell_full(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018  (an empty cell raises ValueError)
    except ValueError:
        return False
    return True


def search_key_material(roots: Sequence[object], n: int, *, files: Iterable[Path] = (), key_set: KeySet | None = None,
                        remote: tuple[type, ...] = (Decryptor,), limit: int = 500_000) -> KeyMaterial:
    """Walk every object reachable from ``roots`` (``gc.get_referents``, see ``_referents``) and read every file
    under ``files``, looking for a Paillier private key, threshold key shares (as ``KeyShare`` objects, or, given
    ``key_set``, as bare integers matching a verification key), an integer factor of ``n``, or text holding a
    secret (a key-share document, a PEM private key). Integers inside large containers (ciphertext vectors) are
    tested for factors only. Objects of a ``remote`` type stand for other processes (in-process decryptors) and
    are not entered."""
    found = KeyMaterial()
    seen: set[int] = set()
    nsquare = n * n
    base = gmpy2.mpz(verification_base(n)) if key_set is not None else None
    shares_by_key = {v: i for i, v in enumerate(key_set.verification_keys, start=1)} if key_set is not None else {}
    stack: list[tuple[object, bool]] = [(root, False) for root in roots]
    while stack and found.objects_searched < limit:
        obj, bulk = stack.pop()
        if id(obj) in seen or isinstance(obj, remote):
            continue
        seen.add(id(obj))
        if isinstance(obj, (str, bytes, bytearray)):
            data = obj.encode(errors="ignore") if isinstance(obj, str) else bytes(obj)
            if any(marker in data for marker in _SECRET_MARKERS):
                found.strings += 1
                try:
                    found.add_share(KeyShare.from_bytes(data))
                except CryptoError:
                    pass
            continue
        if isinstance(obj, _SKIP_TYPES):
            continue
        found.objects_searched += 1
        if isinstance(obj, phe.PaillierPrivateKey):
            found.private_keys.append(obj)
        elif isinstance(obj, KeyShare):
            found.add_share(obj)
        if isinstance(obj, (int, _MPZ)) and not isinstance(obj, bool):
            value = int(obj)
            if 1 < value < n and n % value == 0:
                found.factors.add(value)
            elif base is not None and key_set is not None and not bulk and 64 < value.bit_length() \
                    and value < nsquare:
                index = shares_by_key.get(int(gmpy2.powmod(base, delta(key_set.parties) * value, nsquare)))
                if index is not None:
                    found.add_share(KeyShare(index, key_set.parties, key_set.threshold, n, value))
            continue
        children = _referents(obj)
        large = isinstance(obj, (list, tuple, set, frozenset, dict)) and len(obj) > 64
        stack.extend((child, large) for child in children)
    for root in files:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            found.files_searched += 1
            try:
                data = path.read_bytes()[: 64 << 20]
            except OSError:
                continue
            hit = any(marker in data for marker in _SECRET_MARKERS)
            for match in itertools.chain(_BIG_HEX.finditer(data), _BIG_DEC.finditer(data)):
                text = match.group()
                value = int(text, 16) if (text.startswith(b"0x") or _BIG_DEC.fullmatch(text) is None) else int(text)
                if 1 < value < n and n % value == 0:
                    found.factors.add(value)
                    hit = True
            if hit:
                found.files.append(str(path))
    return found


def _decrypt_with(material: KeyMaterial, public: _Public, ciphertexts: Sequence[int],
                  key_set: KeySet | None) -> list[int] | None:
    """Plaintexts of ``ciphertexts`` using whatever key material was found; None if it does not suffice."""
    keys = list(material.private_keys)
    for p in sorted(material.factors):
        keys.append(phe.PaillierPrivateKey(public.pub, p, public.pub.n // p))
    for key in keys:
        if key.public_key.n == public.pub.n:
            return [int(key.raw_decrypt(int(c))) for c in ciphertexts]
    shares = {share.index: share for share in material.shares if share.n == public.pub.n}
    if key_set is not None and len(shares) >= key_set.threshold:
        partials = {i: partial_decrypt(share, ciphertexts) for i, share in shares.items()}
        return combine(public.pub, partials, key_set.threshold, key_set.parties)
    return None


def _inner(aggregation: object) -> PaillierAggregation | ThresholdAggregation | None:
    """The Paillier aggregation inside ``aggregation`` (itself, or the one a DP aggregation wraps)."""
    for candidate in (aggregation, getattr(aggregation, "_inner", None)):
        if isinstance(candidate, (PaillierAggregation, ThresholdAggregation)):
            return candidate
    return None


def decrypt_uploads(aggregation: Aggregation, payloads: Mapping[str, bytes], *, files: Iterable[Path] = (),
                    run_id: str = "", round: int = 0) -> tuple[dict[str, np.ndarray] | None, KeyMaterial]:
    """Every client's upload (made for ``run_id``'s ``round``) decrypted with key material the coordinator finds in
    its own objects and files (as the client encoded it: the folded-in fraction or DP noise share included), or
    None when it finds none."""
    inner = _inner(aggregation)
    if inner is None:
        raise TypeError(f"{type(aggregation).__name__} holds no Paillier aggregation")
    public = _Public.of(inner)
    key_set = inner.decryptors.key_set if isinstance(inner, ThresholdAggregation) else None
    material = search_key_material([aggregation], int(public.pub.n), files=files, key_set=key_set)
    decrypted: dict[str, np.ndarray] = {}
    for client_id, payload in payloads.items():
        plaintexts = _decrypt_with(material, public, public.parse(payload), key_set)
        if plaintexts is None:
            return None, material
        sums, total = _decode(inner, plaintexts, [payload], run_id, round)
        decrypted[client_id] = dequantize(public.cfg, sums) / (total or 1)
    return decrypted, material


def _decode(aggregation: PaillierAggregation | ThresholdAggregation, plaintexts: Sequence[int],
            payloads: Sequence[bytes], run_id: str, round: int) -> tuple[np.ndarray, int | None]:
    """(Σ n_i·q_i, Σ n_i) of ``payloads`` from the plaintexts of their product, with what the coordinator holds."""
    if isinstance(aggregation, ThresholdAggregation):
        return aggregation.release_sums(plaintexts, payloads, run_id, round)
    return make_scheme(aggregation.cfg, aggregation.public_key).decode(list(plaintexts), len(payloads))


def short_reason(outcome: AttackOutcome, width: int = 220) -> str:
    """One line on why ``outcome`` went as it did: its detail when it succeeded, else its first refusal."""
    text = outcome.detail if outcome.succeeded or not outcome.refusal else outcome.refusal.split("; ")[0]
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- helpers shared by the attacks -------------------------------------------------------------------------------


def _trusted(coordinator: Coordinator) -> tuple[PaillierAggregation, Callable[[int, Iterable[str], bytes],
                                                                             np.ndarray]]:
    aggregation = coordinator.aggregation
    assert isinstance(aggregation, PaillierAggregation), "a paillier-trusted coordinator"
    return aggregation, aggregation._decrypt  # the key holder's door, in the coordinator's own process


def _threshold(coordinator: Coordinator) -> tuple[ThresholdAggregation, Any]:
    aggregation = coordinator.aggregation
    assert isinstance(aggregation, ThresholdAggregation), "a threshold coordinator"
    return aggregation, aggregation.decryptors


def _contribute(coordinator: Coordinator, round: int, attempt: int, client_id: str, weight: int, payload: bytes,
                signature: bytes) -> None:
    """Forward ``payload`` to the decryptors as ``client_id``'s contribution to (round, attempt), the way the
    round's accumulator does (its Paillier part, and the digest of its masked vector where it has one), and keep
    it: the coordinator holds what it sent."""
    aggregation, decryptors = _threshold(coordinator)
    session = (coordinator.run_id, round, attempt)
    coordinator.sent.setdefault(session, {})[client_id] = payload
    ciphertexts, masked_sha256, _ = aggregation.signed_parts(payload)
    decryptors.contribute(*session, client_id, weight, ciphertexts, signature, masked_sha256)


def _fractions(coordinator: Coordinator, weights: Mapping[str, float]) -> dict[str, float]:
    """The fraction each client folds in under paillier-trusted: its weight over the announced cohort weight."""
    total = math.fsum(weights.values())
    return {client_id: weight / total for client_id, weight in weights.items()}


def _others(coordinator: Coordinator, victim: Victim) -> list[str]:
    return sorted(client_id for client_id in coordinator.clients if client_id != victim.client_id)


def _door_refusal(call: Callable[[], np.ndarray]) -> tuple[np.ndarray | None, str | None]:
    try:
        return call(), None
    except FedgradError as refusal:
        return None, f"{type(refusal).__name__}: {refusal}"


def _trusted_outcome(name: str, victim: Victim, candidate: np.ndarray | None, fraction: float, refusal: str | None,
                     detail: str) -> AttackOutcome:
    error = None if candidate is None else victim.error(candidate, fraction)
    return AttackOutcome(name, TRUSTED, error is not None and error < SUCCESS_STEPS, refusal, error, detail)


def _session_refusals(decryptors: Any, run_id: str, round: int, attempt: int) -> list[str]:
    """The decryptors' refusals in one session, one line per distinct reason (naming which decryptors gave it)."""
    refusals = getattr(decryptors, "refusals", None)
    if refusals is None:
        return []
    by_reason: dict[str, list[int]] = {}
    for index, what, refusal in refusals(run_id, round, attempt):
        subject = what if what in ("open", "release") else f"the contribution of client {what!r}"
        by_reason.setdefault(f"refused {subject}: {refusal.kind.name}: {refusal}", []).append(index)
    return [f"decryptor(s) {', '.join(map(str, indices))} {reason}" for reason, indices in by_reason.items()]


def _threshold_candidates(coordinator: Coordinator, victim: Victim, extra: Sequence[Obtained] = ()
                          ) -> list[np.ndarray]:
    """Every update estimate the attacker can form from what reached it: each obtained weighted sum's mean, and
    the difference of any two (Σ n q over the difference / Σ n over the difference). A release is decoded with
    the payloads the coordinator sent for its contributors in its session, under every round's public masks the
    coordinator used (those payloads may have been made for another round than the session's)."""
    aggregation, decryptors = _threshold(coordinator)
    obtained = [*getattr(decryptors, "obtained", []), *extra]
    rounds = sorted({round for run_id, round, _ in coordinator.sent if run_id == coordinator.run_id})
    decoded: dict[tuple[bytes, int], tuple[np.ndarray, int]] = {}
    for item in obtained:
        sent = coordinator.sent.get(item.session, {})
        if not all(contributor in sent for contributor in item.contributors):
            continue
        payloads = [sent[contributor] for contributor in item.contributors]
        for made_for in rounds:
            try:
                integer_sums, total = aggregation.release_sums(item.plaintexts, payloads, coordinator.run_id,
                                                               made_for)
            except CryptoError:
                continue
            if total:
                decoded.setdefault((integer_sums.tobytes(), total), (integer_sums.astype(np.float64), total))
    sums = list(decoded.values())
    candidates = [dequantize(aggregation.cfg, s) / t for s, t in sums]
    for (s1, t1), (s2, t2) in itertools.permutations(sums, 2):
        if t1 != t2:
            candidates.append(dequantize(aggregation.cfg, s1 - s2) / (t1 - t2))
    return candidates


def _threshold_outcome(name: str, coordinator: Coordinator, victim: Victim, refusals: Sequence[str], detail: str,
                       extra: Sequence[Obtained] = ()) -> AttackOutcome:
    candidates = _threshold_candidates(coordinator, victim, extra)
    error = min((victim.error(c) for c in candidates), default=None)
    succeeded = error is not None and error < SUCCESS_STEPS
    refusal = "; ".join(dict.fromkeys(refusals)) or None
    decryptors = getattr(coordinator.aggregation, "decryptors", None)
    obtained = [*(decryptors.obtained if isinstance(decryptors, LocalDecryptors) else []), *extra]
    sets = sorted({", ".join(item.contributors) for item in obtained})
    released = (f"released to the coordinator: {len(obtained)} sum(s) of {{{'}, {'.join(sets)}}}" if obtained
                else "released to the coordinator: nothing")
    verdict = ("; the best estimate of the victim's update from them is "
               f"{error:.3g} quantization steps away" if error is not None else "")
    return AttackOutcome(name, coordinator.mode, succeeded, refusal, error, f"{detail} ({released}{verdict})")


def _release(decryptors: Any, run_id: str, round: int, attempt: int, contributors: Sequence[str],
             ciphertexts: Sequence[int]) -> str | None:
    """Ask for a release; the refusal as text, or None if the decryptors released."""
    try:
        decryptors.release(run_id, round, attempt, list(contributors), list(ciphertexts))
    except FedgradError as error:
        return f"{type(error).__name__}: {error}"
    return None


def _upload_product(public: _Public, uploads: Mapping[str, Upload], members: Iterable[str]) -> list[int]:
    """The Paillier ciphertexts of the members' aggregate, as the coordinator would claim it."""
    return [int(c) for c in public.parse(public.product(*(uploads[m].encoded.payload for m in members)))]


# ---- (1) subsets under fresh round numbers -------------------------------------------------------------------------


def attack_subsets(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """Decrypt {A,B}, {A,C}, {B,C} of one round's uploads under three fresh round numbers and solve for A."""
    name = "subsets under fresh round numbers"
    a = victim.client_id
    b, c = _others(coordinator, victim)[:2]
    round = coordinator.fresh_round()
    weights = coordinator.cohort_weights([a, b, c])
    _, uploads = coordinator.collect(round, weights)
    if coordinator.holds_key_holder:
        aggregation, door = _trusted(coordinator)
        public = _Public.of(aggregation)
        sums: dict[tuple[str, str], np.ndarray] = {}
        for pair in ((a, b), (a, c), (b, c)):
            payload = public.dump(2, public.multiply(*(public.parse(uploads[m].encoded.payload) for m in pair)))
            try:
                sums[pair] = door(coordinator.fresh_round(), pair, payload)
            except FedgradError as error:
                return _trusted_outcome(name, victim, None, 1.0, f"{type(error).__name__}: {error}",
                                        f"the key holder refused {pair}")
        fraction = _fractions(coordinator, weights)[a]
        candidate = (sums[(a, b)] + sums[(a, c)] - sums[(b, c)]) / 2 / fraction
        return _trusted_outcome(name, victim, candidate, fraction, None,
                                "the key holder decrypted three two-party aggregates of one round's ciphertexts "
                                "under three round numbers the coordinator chose; (AB + AC − BC)/2 is A")
    held, decryptors = _threshold(coordinator)
    public = _Public.of(held)
    refusals: list[str] = []
    for pair in ((a, b), (a, c), (b, c)):
        fresh = coordinator.fresh_round()
        decryptors.open(coordinator.run_id, fresh, 1, list(pair))
        for member in pair:
            upload = uploads[member]
            _contribute(coordinator, fresh, 1, member, upload.examples, upload.encoded.payload,
                        upload.encoded.signature)
        refusals += _session_refusals(decryptors, coordinator.run_id, fresh, 1)
        refusal = _release(decryptors, coordinator.run_id, fresh, 1, pair, _upload_product(public, uploads, pair))
        if refusal:
            refusals.append(refusal)
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "each client signed (run, round, cohort {A,B,C}); under a fresh round number and a "
                              "two-member cohort no signature verifies, so no decryptor folds anything in and "
                              "none releases")


# ---- (2) a sybil's encryption of zero ------------------------------------------------------------------------------


def attack_sybil(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """The victim's ciphertext (re-randomized) next to an encryption of zero from an invented client id."""
    name = "sybil with an encryption of zero"
    a = victim.client_id
    weights = coordinator.cohort_weights(coordinator.clients)
    round = coordinator.fresh_round()
    _, uploads = coordinator.collect(round, weights)
    sybil = f"sybil-{secrets.token_hex(4)}"
    if coordinator.holds_key_holder:
        aggregation, _ = _trusted(coordinator)
        public = _Public.of(aggregation)
        fraction = _fractions(coordinator, weights)[a]
        attack_weights = {a: weights[a], sybil: weights[a]}
        cohort = RoundCohort(coordinator.fresh_round(), attack_weights, coordinator.run_id)
        accumulator = aggregation.new_accumulator(coordinator.specs, cohort)
        replayed = public.dump(1, public.rerandomize(public.parse(uploads[a].encoded.payload)))
        accumulator.add(a, weights[a], replayed)
        accumulator.add(sybil, weights[a], public.zero_update(1.0))
        released = accumulator.finalize(PhaseTimer())
        if released is None:
            return _trusted_outcome(name, victim, None, fraction, str(accumulator.round_report().dropped), "refused")
        return _trusted_outcome(name, victim, coordinator.flat(released) / fraction, fraction, None,
                                f"the key holder decrypted {{{a}, {sybil}}}: the coordinator minted {sybil!r} and "
                                "its encryption of zero; re-randomizing gave the victim's ciphertext new bytes")
    held, decryptors = _threshold(coordinator)
    public = _Public.of(held)
    refusals: list[str] = []
    run_id = coordinator.run_id
    # (a) a cohort with the invented id
    fresh = coordinator.fresh_round()
    decryptors.open(run_id, fresh, 1, [a, sybil])
    rerandomized = public.rerandomized(uploads[a].encoded.payload)
    _contribute(coordinator, fresh, 1, a, uploads[a].examples, uploads[a].encoded.payload,
                uploads[a].encoded.signature)
    # the sybil's encryption of zero (under paillier-masked: a zero key's ciphertexts and a masked zero vector,
    # made for the victim's round, so that it adds to the victim's masked vector)
    _contribute(coordinator, fresh, 1, sybil, 1, public.zero_update(1, run_id, round), bytes(64))
    refusals += _session_refusals(decryptors, run_id, fresh, 1)
    refusal = _release(decryptors, run_id, fresh, 1, [a, sybil],
                       [int(c) for c in public.parse(rerandomized)])
    refusals += [refusal] if refusal else []
    # (b) the victim's own round, a second attempt: the victim's signed upload plus the coordinator's own
    # re-randomized copy under an enrolled id, signed with a key the coordinator made
    other = _others(coordinator, victim)[0]
    members = list(weights)
    decryptors.open(run_id, round, 2, members)
    upload = uploads[a]
    _contribute(coordinator, round, 2, a, upload.examples, upload.encoded.payload, upload.encoded.signature)
    minted = ClientIdentity.generate()
    digest = cohort_digest(dict.fromkeys(members, minted.public_key_bytes))
    _contribute(coordinator, round, 2, other, upload.examples, rerandomized,
                sign_contribution(minted, run_id, round, digest, held.signed_parts(rerandomized)[2],
                                  upload.examples))
    refusals += _session_refusals(decryptors, run_id, round, 2)
    refusal = _release(decryptors, run_id, round, 2, [a, other],
                       [int(c) for c in public.parse(public.product(upload.encoded.payload, rerandomized))])
    refusals += [refusal] if refusal else []
    return _threshold_outcome(name, coordinator, victim, refusals,
                              f"the decryptors accept only enrolled ids ({sybil!r} is not) and only ciphertexts "
                              "signed by the enrolled key of the id they are contributed under")


# ---- (3) divide an aggregate by one ciphertext ---------------------------------------------------------------------


def attack_divide(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """{A,B} aggregate times B's ciphertext inverted, submitted as a two-party aggregate."""
    name = "divide an aggregate by one ciphertext"
    a = victim.client_id
    b = _others(coordinator, victim)[0]
    weights = coordinator.cohort_weights(coordinator.clients)
    round = coordinator.fresh_round()
    _, uploads = coordinator.collect(round, weights)
    held = coordinator.aggregation
    assert isinstance(held, (PaillierAggregation, ThresholdAggregation))
    public = _Public.of(held)
    # {A,B}·B⁻¹, presented as two contributors' aggregate (under paillier-masked: the key ciphertexts divided, B's
    # masked vector subtracted)
    pair = public.product(uploads[a].encoded.payload, uploads[b].encoded.payload)
    quotient = public.quotient(pair, uploads[b].encoded.payload, contributors=2)
    if coordinator.holds_key_holder:
        aggregation, door = _trusted(coordinator)
        result, refusal = _door_refusal(lambda: door(coordinator.fresh_round(), (a, b), quotient))
        fraction = _fractions(coordinator, weights)[a]
        # decoded as two contributors, the slot offset Q was subtracted twice: add it back once
        candidate = None if result is None else (result + max_quantized(aggregation.cfg.value_bits)
                                                 / scale(aggregation.cfg)) / fraction
        return _trusted_outcome(name, victim, candidate, fraction, refusal,
                                "the key holder decrypted {A,B}·B⁻¹ (= A's ciphertext) presented as an aggregate "
                                "of two contributors; one offset added back gives A")
    _, decryptors = _threshold(coordinator)
    run_id = coordinator.run_id
    quotient_cts = [int(c) for c in public.parse(quotient)]
    refusals: list[str] = []
    # (a) claim the round's session holds only {A, B} and have the quotient "decrypted"
    refusal = _release(decryptors, run_id, round, 1, [a, b], quotient_cts)
    refusals += _session_refusals(decryptors, run_id, round, 1) + ([refusal] if refusal else [])
    # (b) submit the quotient itself, as a two-party aggregate and as A's contribution, in a fresh session
    fresh = coordinator.fresh_round()
    decryptors.open(run_id, fresh, 1, [a, b])
    _contribute(coordinator, fresh, 1, a, uploads[a].examples, quotient, uploads[a].encoded.signature)
    _contribute(coordinator, fresh, 1, b, 1, public.rerandomized(quotient), uploads[a].encoded.signature)
    refusals += _session_refusals(decryptors, run_id, fresh, 1)
    refusal = _release(decryptors, run_id, fresh, 1, [a, b], quotient_cts)
    refusals += [refusal] if refusal else []
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "decryptors never decrypt an aggregate the coordinator supplies: each multiplies the "
                              "signed ciphertexts it verified itself and releases only the exact set it folded in; "
                              "the quotient carries no client's signature")


# ---- (4) weight skew -----------------------------------------------------------------------------------------------


def attack_weight_skew(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """An honest-looking round whose FedAvg weights are 1.0 for the victim and 1e-9 for everyone else."""
    name = "weight skew"
    a = victim.client_id
    weights = {client_id: (1.0 if client_id == a else 1e-9) for client_id in coordinator.clients}
    accumulator, uploads = coordinator.collect(coordinator.fresh_round(), weights)
    released = accumulator.finalize(PhaseTimer())
    if released is None:
        refusal = str(accumulator.round_report().dropped)
        if coordinator.holds_key_holder:
            return _trusted_outcome(name, victim, None, 1.0, refusal, "the aggregate was dropped")
        return _threshold_outcome(name, coordinator, victim, [refusal], "the aggregate was dropped")
    mean = coordinator.flat(released) / released.weight
    if coordinator.holds_key_holder:
        fraction = _fractions(coordinator, weights)[a]
        return _trusted_outcome(name, victim, mean, fraction, None,
                                "clients fold in whatever fraction the coordinator announces; with the others at "
                                "1e-9 their quantized contributions round to 0 and the released mean is A's update")
    examples = {client_id: upload.examples for client_id, upload in uploads.items()}
    return _threshold_outcome(name, coordinator, victim,
                              [(f"no weight to skew: the released total weight is {released.weight:g} = the clients' "
                               f"own encrypted example counts {examples}, not the coordinator's 1 : 1e-9")],
                              "the released mean is the n-weighted mean of the cohort")


# ---- (5) key material ----------------------------------------------------------------------------------------------


def attack_key_material(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """Search the coordinator's objects (from its aggregation and accumulators) and its files for key material,
    and decrypt the victim's upload with whatever is found."""
    name = "key material in the coordinator"
    weights = coordinator.cohort_weights(coordinator.clients)
    round = coordinator.fresh_round()
    _, uploads = coordinator.collect(round, weights)
    aggregation = coordinator.aggregation
    assert isinstance(aggregation, (PaillierAggregation, ThresholdAggregation))
    public = _Public.of(aggregation)
    key_set = aggregation.decryptors.key_set if isinstance(aggregation, ThresholdAggregation) else None
    material = search_key_material([aggregation, *coordinator.accumulators], int(public.pub.n),
                                   files=coordinator.files, key_set=key_set)
    plaintexts = _decrypt_with(material, public, public.parse(uploads[victim.client_id].encoded.payload), key_set)
    refusal = None if plaintexts is not None else (
        f"{'no usable' if material.found else 'no'} key material: {material.describe()}")
    detail = material.describe() + ("; decrypted the victim's upload with it" if plaintexts is not None else "")
    if coordinator.holds_key_holder:
        candidate = None
        fraction = _fractions(coordinator, weights)[victim.client_id]
        if plaintexts is not None:
            sums, total = _decode(aggregation, plaintexts, [uploads[victim.client_id].encoded.payload],
                                  coordinator.run_id, round)
            candidate = dequantize(public.cfg, sums) / ((total or 1) * fraction)
        return _trusted_outcome(name, victim, candidate, fraction, refusal, detail)
    # decoded with the victim's upload as sent in the round's first attempt (its masked vector, where it has one)
    extra = [] if plaintexts is None else [Obtained((victim.client_id,), tuple(plaintexts),
                                                    (coordinator.run_id, round, 1))]
    return _threshold_outcome(name, coordinator, victim, [refusal] if refusal else [], detail, extra)


# ---- (6) replay ----------------------------------------------------------------------------------------------------


def attack_replay(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """Release round r honestly, then replay the other clients' round-r uploads in round r + 1 and subtract."""
    name = "replay an earlier round"
    a = victim.client_id
    others = _others(coordinator, victim)
    weights = coordinator.cohort_weights(coordinator.clients)
    accumulator, uploads = coordinator.collect(coordinator.fresh_round(), weights)
    first = accumulator.finalize(PhaseTimer())
    later = coordinator.fresh_round()
    if coordinator.holds_key_holder:
        aggregation, _ = _trusted(coordinator)
        public = _Public.of(aggregation)
        fraction = _fractions(coordinator, weights)[a]
        replay = aggregation.new_accumulator(coordinator.specs,
                                             RoundCohort(later, {m: weights[m] for m in others}, coordinator.run_id))
        for member in others:
            replay.add(member, weights[member], public.dump(1, public.rerandomize(
                public.parse(uploads[member].encoded.payload))))
        second = replay.finalize(PhaseTimer())
        if first is None or second is None:
            return _trusted_outcome(name, victim, None, fraction, str(replay.round_report().dropped), "refused")
        # the replay accumulator divides weights by its own cohort weight; the sums are what the clients folded in
        candidate = (coordinator.flat(first) - coordinator.flat(second)) / fraction
        return _trusted_outcome(name, victim, candidate, fraction, None,
                                f"round {later} decrypted the others' round-{later - 1} ciphertexts (re-randomized "
                                "so that their digests are new); the difference of the two sums is A")
    held, decryptors = _threshold(coordinator)
    public = _Public.of(held)
    run_id = coordinator.run_id
    refusals = [] if first is not None else [str(accumulator.round_report().dropped)]
    decryptors.open(run_id, later, 1, list(weights))
    for member in others:
        upload = uploads[member]
        _contribute(coordinator, later, 1, member, upload.examples, upload.encoded.payload, upload.encoded.signature)
    refusals += _session_refusals(decryptors, run_id, later, 1)
    refusal = _release(decryptors, run_id, later, 1, others, _upload_product(public, uploads, others))
    refusals += [refusal] if refusal else []
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "the round number is signed: a round-r signature does not verify in round r + 1")


# ---- (7) ask twice for one round -----------------------------------------------------------------------------------


def attack_ask_twice(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """Release {A,B,C} of round r, then ask again for round r under another attempt number for {B,C}."""
    name = "ask twice for one round"
    a = victim.client_id
    others = _others(coordinator, victim)
    weights = coordinator.cohort_weights(coordinator.clients)
    round = coordinator.fresh_round()
    if coordinator.holds_key_holder:
        aggregation, _ = _trusted(coordinator)
        public = _Public.of(aggregation)
        fraction = _fractions(coordinator, weights)[a]
        accumulator, uploads = coordinator.collect(round, weights)
        first = accumulator.finalize(PhaseTimer())
        second_try = aggregation.new_accumulator(coordinator.specs, RoundCohort(
            round, {m: weights[m] for m in others}, coordinator.run_id, attempt=2))
        for member in others:
            second_try.add(member, weights[member], public.dump(1, public.rerandomize(
                public.parse(uploads[member].encoded.payload))))
        second = second_try.finalize(PhaseTimer())
        if first is None or second is None:
            return _trusted_outcome(name, victim, None, fraction, str(second_try.round_report().dropped),
                                    "the key holder decrypts one aggregate per round number (the coordinator can "
                                    "choose a fresh round number instead: attacks 1 and 6)")
        candidate = (coordinator.flat(first) - coordinator.flat(second)) / fraction
        return _trusted_outcome(name, victim, candidate, fraction, None, "two releases in one round")
    held, decryptors = _threshold(coordinator)
    public = _Public.of(held)
    run_id = coordinator.run_id
    # both attempts opened before anything is released: attempt 1 with everyone, attempt 2 with the others
    accumulator, uploads = coordinator.collect(round, weights, attempt=1)
    decryptors.open(run_id, round, 2, list(weights))
    for member in others:
        upload = uploads[member]
        _contribute(coordinator, round, 2, member, upload.examples, upload.encoded.payload, upload.encoded.signature)
    refusals = _session_refusals(decryptors, run_id, round, 2)
    first = accumulator.finalize(PhaseTimer())
    if first is None:
        refusals.append(str(accumulator.round_report().dropped))
    refusal = _release(decryptors, run_id, round, 2, others, _upload_product(public, uploads, others))
    refusals += [refusal] if refusal else []
    extra: list[Obtained] = []
    parties = getattr(decryptors, "parties", None)
    if parties:
        # split the decryptors: the first t release attempt 1, the rest attempt 2 (needs k ≥ 2t to succeed)
        split_round = coordinator.fresh_round()
        _, split_uploads = coordinator.collect(split_round, weights, attempt=1)
        decryptors.open(run_id, split_round, 2, list(weights))
        for member in others:
            upload = split_uploads[member]
            _contribute(coordinator, split_round, 2, member, upload.examples, upload.encoded.payload,
                        upload.encoded.signature)
        t = decryptors.key_set.threshold
        groups = {1: (parties[:t], [a, *others]), 2: (parties[t:], others)}
        for attempt, (group, contributors) in groups.items():
            partials: dict[int, list[int]] = {}
            for party in group:
                try:
                    partials[party.index] = party.release(run_id, split_round, attempt, contributors)[0]
                except DecryptorRefusal as denied:
                    refusals.append(f"decryptor {party.index} refused attempt {attempt}: {denied}")
            if len(partials) >= t:
                extra.append(Obtained(tuple(sorted(contributors)), tuple(combine(
                    public.pub, dict(list(partials.items())[:t]), t, decryptors.key_set.parties)),
                    (run_id, split_round, attempt)))
            else:
                refusals.append(f"attempt {attempt}: {len(partials)} partial decryption(s), {t} needed "
                                f"(k = {len(parties)} < 2t: two attempts cannot both reach t decryptors)")
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "each decryptor releases at most once per (run, round), whatever the attempt, recorded "
                              "durably before the partials leave it", extra)


# ---- (8) unenrolled or duplicated client ---------------------------------------------------------------------------


def attack_bad_cohort(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """A cohort naming an unenrolled client next to the victim, and one naming the victim twice."""
    name = "unenrolled or duplicated client"
    a = victim.client_id
    weights = coordinator.cohort_weights(coordinator.clients)
    _, uploads = coordinator.collect(coordinator.fresh_round(), weights)
    ghost = f"ghost-{secrets.token_hex(4)}"
    if coordinator.holds_key_holder:
        aggregation, _ = _trusted(coordinator)
        public = _Public.of(aggregation)
        fraction = _fractions(coordinator, weights)[a]
        duplicate = aggregation.new_accumulator(coordinator.specs, RoundCohort(coordinator.fresh_round(),
                                                                               {a: 1.0}, coordinator.run_id))
        duplicated = public.dump(1, public.parse(uploads[a].encoded.payload))
        duplicate.add(a, 1.0, duplicated)
        duplicate_refusal = None
        try:
            duplicate.add(a, 1.0, public.dump(1, public.rerandomize(public.parse(duplicated))))
        except Rejected as error:
            duplicate_refusal = f"duplicated {a!r}: {error}"
        unenrolled = aggregation.new_accumulator(coordinator.specs, RoundCohort(
            coordinator.fresh_round(), {a: weights[a], ghost: weights[a]}, coordinator.run_id))
        unenrolled.add(a, weights[a], public.dump(1, public.rerandomize(public.parse(uploads[a].encoded.payload))))
        unenrolled.add(ghost, weights[a], public.zero_update(1.0))
        released = unenrolled.finalize(PhaseTimer())
        candidate = None if released is None else coordinator.flat(released) / fraction
        return _trusted_outcome(name, victim, candidate, fraction, duplicate_refusal,
                                f"a duplicated id is refused by the accumulator, but nothing is enrolled: the "
                                f"invented {ghost!r} with an encryption of zero makes {{{a}, {ghost}}} decryptable")
    _, decryptors = _threshold(coordinator)
    public = _Public.of(coordinator.aggregation)  # type: ignore[arg-type]
    run_id = coordinator.run_id
    refusals: list[str] = []
    for cohort in ([a, ghost], [a, a], [a]):
        fresh = coordinator.fresh_round()
        decryptors.open(run_id, fresh, 1, cohort)
        upload = uploads[a]
        for member in cohort:
            _contribute(coordinator, fresh, 1, member, upload.examples, upload.encoded.payload,
                        upload.encoded.signature)
        refusals += _session_refusals(decryptors, run_id, fresh, 1)
        refusal = _release(decryptors, run_id, fresh, 1, sorted(set(cohort)),
                           [int(c) for c in public.parse(upload.encoded.payload)])
        refusals += [refusal] if refusal else []
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "the decryptors take cohorts of distinct ids, all enrolled by the operator, at least "
                              "their own min_clients of them")


# ---- (9) forged or reused signature --------------------------------------------------------------------------------


def attack_signatures(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """Fill the other members' places with the coordinator's own ciphertexts: A's signature reused, a forged
    signature, and a signature from a key the coordinator made."""
    name = "forged or reused signature"
    a = victim.client_id
    b, c = _others(coordinator, victim)[:2]
    weights = coordinator.cohort_weights(coordinator.clients)
    round = coordinator.fresh_round()
    _, uploads = coordinator.collect(round, weights)
    if coordinator.holds_key_holder:
        aggregation, _ = _trusted(coordinator)
        public = _Public.of(aggregation)
        fraction = _fractions(coordinator, weights)[a]
        accumulator = aggregation.new_accumulator(coordinator.specs, RoundCohort(
            coordinator.fresh_round(), {a: weights[a], b: weights[a]}, coordinator.run_id))
        accumulator.add(a, weights[a], public.dump(1, public.rerandomize(public.parse(uploads[a].encoded.payload))),
                        uploads[a].encoded.signature)
        accumulator.add(b, weights[a], public.zero_update(1.0), uploads[a].encoded.signature)
        released = accumulator.finalize(PhaseTimer())
        candidate = None if released is None else coordinator.flat(released) / fraction
        return _trusted_outcome(name, victim, candidate, fraction, None,
                                f"paillier-trusted checks no signature: {b!r}'s place held the coordinator's "
                                "encryption of zero")
    held, decryptors = _threshold(coordinator)
    public = _Public.of(held)
    run_id = coordinator.run_id
    members = list(weights)
    upload = uploads[a]
    zero = public.zero_update(1, run_id, round)  # under paillier-masked: a zero key and a masked zero vector
    minted = ClientIdentity.generate()
    forged_digest = cohort_digest(dict.fromkeys(members, minted.public_key_bytes))
    decryptors.open(run_id, round, 2, members)
    _contribute(coordinator, round, 2, a, upload.examples, upload.encoded.payload, upload.encoded.signature)
    _contribute(coordinator, round, 2, b, 1, zero, upload.encoded.signature)  # A's signature, reused
    _contribute(coordinator, round, 2, c, 1, zero, sign_contribution(minted, run_id, round, forged_digest,
                                                                     held.signed_parts(zero)[2], 1))
    _contribute(coordinator, round, 2, c, 1, zero, secrets.token_bytes(64))  # forged: random bytes
    refusals = _session_refusals(decryptors, run_id, round, 2)
    for claimed in ([a, b, c], [a, b], [a]):
        ciphertexts = public.parse(public.product(upload.encoded.payload, *([zero] * (len(claimed) - 1))))
        refusal = _release(decryptors, run_id, round, 2, claimed, [int(x) for x in ciphertexts])
        refusals += [refusal] if refusal else []
    return _threshold_outcome(name, coordinator, victim, refusals,
                              "every contribution must verify under the enrolled key of the id it is contributed "
                              "under, over this run, round, cohort, payload digest and weight")


#: The attacks, in issue 12's order.
ATTACKS: dict[str, Callable[[Coordinator, Victim], AttackOutcome]] = {
    "subsets": attack_subsets,
    "sybil": attack_sybil,
    "divide": attack_divide,
    "weight-skew": attack_weight_skew,
    "key-material": attack_key_material,
    "replay": attack_replay,
    "ask-twice": attack_ask_twice,
    "bad-cohort": attack_bad_cohort,
    "signatures": attack_signatures,
}


# ---- what remains: collusions and differencing that no protocol check can stop -------------------------------


def residual_collusion(coordinator: Coordinator, victim: Victim, colluders: Mapping[str, np.ndarray]) -> AttackOutcome:
    """``paillier``, ``paillier-masked``: the coordinator with min_clients − 1 colluding clients (``colluders``:
    their own flat updates, which they hand over) runs an honest round of exactly them and the victim, and
    subtracts their updates from the released sum. Expected to succeed: any aggregate of min_clients reveals the
    rest to the others in it."""
    name = "coordinator + min_clients - 1 colluding clients"
    held, _ = _threshold(coordinator)
    weights = coordinator.cohort_weights([victim.client_id, *colluders])
    accumulator, uploads = coordinator.collect(coordinator.fresh_round(), weights)
    released = accumulator.finalize(PhaseTimer())
    if released is None:
        return _threshold_outcome(name, coordinator, victim, [str(accumulator.round_report().dropped)], "dropped")
    cfg = held.cfg
    known = sum(uploads[c].examples * quantize(cfg, update, 1.0).astype(np.float64) for c, update in colluders.items())
    own = released.weight - sum(uploads[c].examples for c in colluders)
    candidate = (coordinator.flat(released) - dequantize(cfg, np.asarray(known))) / own
    error = victim.error(candidate)
    return AttackOutcome(name, coordinator.mode, error < SUCCESS_STEPS, None, error,
                         f"an honest release of {{{victim.client_id}, {', '.join(colluders)}}} minus what the "
                         "colluders know of their own updates")


def residual_differencing(coordinator: Coordinator, victim: Victim) -> AttackOutcome:
    """``paillier``, ``paillier-masked``: the coordinator keeps the model unchanged, releases the whole cohort in
    round r and the cohort without the victim in round r + 1 (each an honest round), and differences the sums.
    Expected to succeed when the clients' updates repeat across rounds (the harness's clients return the same delta
    for the same model): only DP noise on each sum defends against it."""
    name = "differencing across rounds (model kept unchanged)"
    everyone = coordinator.cohort_weights(coordinator.clients)
    sums: list[tuple[np.ndarray, float]] = []
    for members in (everyone, {c: w for c, w in everyone.items() if c != victim.client_id}):
        accumulator, _ = coordinator.collect(coordinator.fresh_round(), members)
        released = accumulator.finalize(PhaseTimer())
        if released is None:
            return _threshold_outcome(name, coordinator, victim, [str(accumulator.round_report().dropped)], "dropped")
        sums.append((coordinator.flat(released), released.weight))
    (first, t1), (second, t2) = sums
    error = victim.error((first - second) / (t1 - t2))
    return AttackOutcome(name, coordinator.mode, error < SUCCESS_STEPS, None, error,
                         "two honest releases one round apart, the victim in the first cohort only")


def run_attacks(coordinator: Coordinator, victim: Victim, names: Iterable[str] | None = None) -> list[AttackOutcome]:
    """Every attack (or those named) against one coordinator, each on rounds of its own."""
    return [ATTACKS[name](coordinator, victim) for name in (ATTACKS if names is None else names)]


# ---- building the two coordinators ---------------------------------------------------------------------------------


def enroll_clients(directory: Path, client_ids: Iterable[str]) -> tuple[Path, Path]:
    """Each client's Ed25519 identity (``<id>.key``, mode 600, the client's own) and the operator's enrollment
    file of their public keys; returns (identity directory, enrollment path). Neither is the coordinator's."""
    from fedgrad.crypto.identity import Enrollment

    identities = directory / "identities"
    identities.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = {}
    for client_id in client_ids:
        identity = ClientIdentity.generate()
        identity.save(identities / f"{client_id}.key")
        public[client_id] = identity.public_key_bytes
    enrollment = directory / "enrollment.json"
    Enrollment(public).save(enrollment)
    return identities, enrollment


def local_decryptors(directory: Path, *, key_bits: int, parties: int, threshold: int, enrollment: Path,
                     min_clients: int, insecure_key_bits: bool = False, min_fraction: float = 0.0,
                     run_id: str | None = None, settings_digest: bytes | None = None) -> LocalDecryptors:
    """A dealer's fresh t-of-k key and k in-process decryptors, each with its share and its own state directory
    under ``directory`` (the decryptors' side, never the coordinator's files); ``min_fraction`` and ``run_id`` as
    an operator's run policy sets them."""
    from fedgrad.crypto.identity import Enrollment
    from fedgrad.crypto.threshold import deal, key_set

    _, shares = deal(key_bits, parties, threshold, insecure_key_bits=insecure_key_bits)
    keys = key_set(shares)
    enrolled = Enrollment.load(enrollment)
    decryptors = [Decryptor(share, keys, enrolled, min_clients=min_clients, state_dir=directory / f"decryptor-{i}",
                            cores=1, min_fraction=min_fraction, run_id=run_id, settings_digest=settings_digest)
                  for i, share in enumerate(shares, start=1)]
    del shares
    return LocalDecryptors(decryptors, keys)
