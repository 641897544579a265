"""A threshold decryptor: one key share, and the checks it makes before it lets that share touch a ciphertext.

The coordinator is not trusted (DESIGN, trust model). It chooses cohorts, round numbers, attempts, weights and
client ids, and it may lie about all of them; it holds no key share, so to read anything it must get t partial
decryptions from t decryptors. Each decryptor therefore never decrypts what the coordinator hands it as an
aggregate. It rebuilds the aggregate itself from individually signed client ciphertexts, and releases one partial
decryption per (run, round) at most. What each rule defeats:

* **Cohort fixed first, enrolled clients only** (`open`). The cohort's ids must be distinct and every one
  enrolled by the operator (the `Enrollment` file, never written by the coordinator), at least `min_clients` of
  them. *Sybils*: the coordinator cannot mint client ids or keys, so it cannot pad a victim's update with
  encryptions of zero from invented clients; listing one client twice does not count twice.
* **Every ciphertext signed for this run, round and cohort** (`contribute`). The signature must verify under
  the client's enrolled key over (run id, round, cohort digest, SHA-256 of the ciphertext bytes, weight).
  *Replay of an earlier round*: a signed payload from round r (or another run) does not verify in round r' ≠ r.
  *Subsets*: a client signs the exact cohort (ids and keys) it agreed to be aggregated with, so its ciphertext
  cannot be moved into a smaller or different cohort. *Weight skew*: the weight is signed by the client.
  *Forgery / substitution*: a ciphertext the client did not produce has no valid signature.
* **The decryptor multiplies the ciphertexts itself** (`contribute`, running product mod n²). Each payload is
  validated as one client's ciphertexts (0 < c < n², gcd(c, n) = 1, contributors = 1, the session's key
  fingerprint and ciphertext count) and folded into the product at once, so memory is O(model), not O(clients).
  *Division of an aggregate by a ciphertext*: the coordinator never supplies the product, so it cannot submit
  {A, B}·B⁻¹ as an aggregate; an inverse of a ciphertext would need a signature that no client made.
* **Release names exactly who contributed** (`release`). The claimed contributors must equal the set whose
  contributions this decryptor folded in, with at least `min_clients` distinct enrolled signers. *Subsets and
  supersets*: the coordinator cannot get a product of fewer clients than it claims (or vice versa) decrypted.
  `min_clients` is this decryptor's own setting, from its operator, never taken from the coordinator.
* **One task per round** (`open`, `contribute`): the coordinator names the round's task (the digests of its
  settings and of the model it sends) when it opens the round, and each client signs the digest of the task it
  trained itself. *Per-client tasks*: a client sent other settings or another model (``epochs = 0`` to all but a
  victim, a model whose updates vanish) signed another digest, and is not folded in. With a run policy, the
  settings digest must be the policy's.
* **A share of the announced cohort** (`release`, `min_fraction`, from the operator's run policy): at least
  that fraction of the cohort fixed at `open` must have contributed. *Claimed dropouts*: a coordinator colluding
  with one client cannot announce a cohort of ten and claim all but the victim and its colluder dropped.
* **At most one release per (run id, round), whatever the attempt**, recorded durably in `state_dir`
  (exclusive create + fsync of the file and its directory) *before* any partial is computed or returned, and
  checked again on every open, contribution and release, also after this process restarts. *Asking twice*:
  after {A, B, C} is released in round r, the coordinator cannot also get {A, B} of round r decrypted under a
  second attempt (and the difference of the two would be C's update); nor by restarting the decryptor.

What this does not stop (see ARCHITECTURE.md): t decryptors colluding with each other (or with the coordinator)
decrypt anything; the coordinator colluding with min_clients − 1 enrolled clients learns the remaining client's
update from an honest release (that is what an aggregate of min_clients reveals); the run id is the coordinator's
choice, so a decryptor started with `run_id` set accepts only that run, otherwise clients must not sign two
contributions for one (run, round). A signature proves who made a ciphertext, not that its plaintext is in range.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gmpy2

from fedgrad.crypto.errors import CryptoError
from fedgrad.crypto.identity import DIGEST_BYTES, Enrollment, SignatureError, cohort_digest, verify_contribution
from fedgrad.crypto.masked import masked_digest
from fedgrad.crypto.threshold import KeySet, KeyShare, PartialProof, prove_partials
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width, load_payload, read_header
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.protocol.refusal import Refusal
from fedgrad.protocol.task_config import task_digest

log = logging.getLogger("fedgrad.decryptor")

#: Open sessions kept at once; opening one more evicts the oldest (eviction only ever loses state).
MAX_OPEN_SESSIONS = 16
_MAX_ROUND = (1 << 64) - 1
_MAX_ATTEMPT = (1 << 32) - 1
_RECORD_FORMAT = "fedgrad/decryptor-release/v1"


class DecryptorRefusal(FedgradError):
    """A call the decryptor turns down; `kind` says why (mapped to a gRPC status by the service)."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _invalid(message: str) -> DecryptorRefusal:
    return DecryptorRefusal(Refusal.INVALID, message)


def _stale(message: str) -> DecryptorRefusal:
    return DecryptorRefusal(Refusal.STALE, message)


def _unauthenticated(message: str) -> DecryptorRefusal:
    return DecryptorRefusal(Refusal.UNAUTHENTICATED, message)


SessionKey = tuple[str, int, int]


@dataclass
class _Session:
    run_id: str
    round: int
    attempt: int
    cohort: tuple[str, ...]
    digest: bytes
    task: bytes | None = None  # the round's task digest every contribution must be signed for
    fingerprint: bytes | None = None
    count: int | None = None
    product: list[gmpy2.mpz] | None = None
    contributed: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    verify_s: float = 0.0  # time spent verifying and folding in contributions

    def describe(self) -> str:
        return f"run {self.run_id!r} round {self.round} attempt {self.attempt}"


def require_majority(parties: int, threshold: int) -> None:
    """Refuse a t-of-k key with 2t <= k. Each decryptor releases once per (run, round) on its own, so with
    k >= 2t the coordinator could ask t decryptors for {A, B, C} and t others for {B, C} in the same round and
    subtract (``tests/redteam``: split attempts). With t > k/2 any two sets of t decryptors share one, who
    answers only once."""
    if 2 * threshold <= parties:
        raise ConfigError(f"a {threshold}-of-{parties} key lets two disjoint sets of {threshold} decryptors each "
                          f"release a different sum of one round; the threshold must exceed half the decryptors "
                          f"(at least {parties // 2 + 1} of {parties})")


class Decryptor:
    """One decryptor: its key share, the operator's enrollment and `min_clients`, and its durable release log.

    Thread-safe: the gRPC service calls it from several threads at once.
    """

    def __init__(self, share: KeyShare, key_set: KeySet, enrollment: Enrollment, *, min_clients: int,
                 state_dir: Path, cores: int | None = None, run_id: str | None = None,
                 max_sessions: int = MAX_OPEN_SESSIONS, min_fraction: float = 0.0,
                 settings_digest: bytes | None = None) -> None:
        key_set.check(share)
        require_majority(key_set.parties, key_set.threshold)
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise FedgradError(f"min_clients must be a positive integer, got {min_clients!r}")
        if min_clients > len(enrollment.clients):
            raise FedgradError(f"min_clients={min_clients} exceeds the {len(enrollment.clients)} enrolled clients")
        self.share = share
        self.key_set = key_set
        self.enrollment = enrollment
        if not 0.0 <= min_fraction <= 1.0:
            raise FedgradError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
        self.min_clients = min_clients
        self.min_fraction = min_fraction
        self.settings_digest = settings_digest
        self.run_id = run_id
        self.cores = cores
        self.max_sessions = max(1, max_sessions)
        self.state_dir = Path(state_dir)
        self._released_dir = self.state_dir / "released"
        self._released_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._n = gmpy2.mpz(key_set.n)
        self._nsquare = self._n * self._n
        self._width = ciphertext_width(key_set.public_key)
        self._lock = threading.Lock()
        self._sessions: OrderedDict[SessionKey, _Session] = OrderedDict()
        self._opened: set[SessionKey] = set()
        self._releasing: set[tuple[str, int]] = set()
        self._workers: object | None = None  # a ParallelPartialDecryptor, made on first release
        #: (run, round) -> seconds spent verifying, partially decrypting and proving, for the release's reply
        self.timings: dict[tuple[str, int], dict[str, float]] = {}
        self._workers_batch = 0

    @property
    def index(self) -> int:
        return self.share.index

    # ---- the durable release log ----

    def _record_path(self, run_id: str, round: int) -> Path:
        name = hashlib.sha256(run_id.encode() + b"\0" + str(round).encode()).hexdigest()[:40]
        return self._released_dir / f"{name}.json"

    def released(self, run_id: str, round: int) -> bool:
        """Whether this decryptor has released (run_id, round), in this process or an earlier one."""
        return self._record_path(run_id, round).exists()

    def _record_release(self, session: _Session, contributors: Sequence[str]) -> None:
        """Create the (run, round) record exclusively and durably; refuse if it exists (another attempt won)."""
        target = self._record_path(session.run_id, session.round)
        document = json.dumps({"format": _RECORD_FORMAT, "run_id": session.run_id, "round": session.round,
                               "attempt": session.attempt, "share_index": self.index,
                               "contributors": sorted(contributors), "cohort_digest": session.digest.hex(),
                               "time": time.time()}) + "\n"
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, document.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)  # fails if the record exists, also when another process made it
            except FileExistsError:
                raise _stale(f"{session.describe()}: this decryptor already released run {session.run_id!r} "
                             f"round {session.round}") from None
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(self._released_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # ---- the protocol ----

    def _check_ids(self, run_id: object, round: object, attempt: object) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise _invalid(f"run id must be a non-empty string, got {run_id!r:.60}")
        if self.run_id is not None and run_id != self.run_id:
            raise _stale(f"this decryptor serves run {self.run_id!r} only, not {run_id!r:.60}")
        if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round <= _MAX_ROUND:
            raise _invalid(f"round must be an integer in [0, 2^64), got {round!r:.40}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt <= _MAX_ATTEMPT:
            raise _invalid(f"attempt must be an integer in [0, 2^32), got {attempt!r:.40}")

    def open(self, run_id: str, round: int, attempt: int, cohort: Sequence[str], settings_digest: bytes = b"",
             model_digest: bytes = b"") -> None:
        """Fix the cohort of (run_id, round, attempt) and the task its contributions are signed for (its settings'
        and model's digests) before any contribution; see the module docstring."""
        self._check_ids(run_id, round, attempt)
        if self.settings_digest is not None and settings_digest != self.settings_digest:
            raise _invalid(f"run {run_id!r} round {round}: the round's task settings are not those of this "
                           "decryptor's run policy")
        if bool(settings_digest) != bool(model_digest) or any(
                len(digest) not in (0, DIGEST_BYTES) for digest in (settings_digest, model_digest)):
            raise _invalid(f"run {run_id!r} round {round}: a task is named by a settings and a model digest of "
                           f"{DIGEST_BYTES} bytes each")
        task = task_digest(settings_digest, model_digest) if settings_digest else None
        members = list(cohort)
        if any(not isinstance(member, str) or not member for member in members):
            raise _invalid("cohort ids must be non-empty strings")
        if len(set(members)) != len(members):
            raise _invalid(f"run {run_id!r} round {round}: the cohort lists a client more than once")
        unenrolled = [member for member in members if member not in self.enrollment.clients]
        if unenrolled:
            raise _unauthenticated(f"run {run_id!r} round {round}: cohort names {len(unenrolled)} client(s) "
                                   f"not enrolled by the operator: {', '.join(sorted(unenrolled)[:5])}")
        if len(members) < self.min_clients:
            raise _invalid(f"run {run_id!r} round {round}: a cohort of {len(members)} is below this decryptor's "
                           f"min_clients={self.min_clients}")
        digest = cohort_digest({member: self.enrollment.public_key(member) for member in members})
        key = (run_id, round, attempt)
        with self._lock:
            if self.released(run_id, round):
                raise _stale(f"run {run_id!r} round {round} was already released by this decryptor")
            if key in self._opened:
                raise _stale(f"run {run_id!r} round {round} attempt {attempt} was opened before; "
                             "a new attempt needs a new attempt number")
            while len(self._sessions) >= self.max_sessions:
                _, old = self._sessions.popitem(last=False)
                log.warning("evicted the unreleased session %s to open %s", old.describe(), key)
            self._opened.add(key)
            self._sessions[key] = _Session(run_id, round, attempt, tuple(sorted(members)), digest, task)
        log.info("opened run %r round %d attempt %d with a cohort of %d", run_id, round, attempt, len(members))

    def _session(self, run_id: str, round: int, attempt: int) -> _Session:
        self._check_ids(run_id, round, attempt)
        with self._lock:
            session = self._sessions.get((run_id, round, attempt))
        if session is None:
            if self.released(run_id, round):
                raise _stale(f"run {run_id!r} round {round} was already released by this decryptor")
            raise _stale(f"run {run_id!r} round {round} attempt {attempt} is not open at this decryptor")
        return session

    def expected_payload_bytes(self, run_id: str, round: int, attempt: int, client_id: str) -> int | None:
        """Cheap admission before a payload is received: refuses what `contribute` would refuse without reading
        the payload, and returns the payload size the session expects (None until its first contribution)."""
        session = self._session(run_id, round, attempt)
        with session.lock:
            self._check_contributor(session, client_id)
            return None if session.count is None else read_size(session.count, self._width)

    def _check_contributor(self, session: _Session, client_id: str) -> None:
        if client_id not in session.cohort:
            raise _unauthenticated(f"{session.describe()}: client {client_id!r:.60} is not in the cohort")
        if client_id in session.contributed or client_id in session.pending:
            raise _stale(f"{session.describe()}: client {client_id!r} has already contributed")
        if self.released(session.run_id, session.round):
            raise _stale(f"run {session.run_id!r} round {session.round} was already released by this decryptor")

    def contribute(self, run_id: str, round: int, attempt: int, client_id: str, weight: int, payload: bytes,
                   signature: bytes, masked_sha256: bytes = b"") -> None:
        """Verify one client's signed ciphertexts and fold them into the session's product; see the module
        docstring for each check. ``masked_sha256`` (``paillier-masked``): the SHA-256 of the masked update that
        the payload's key unmasks, which the client signed with it (`signed_digest`)."""
        session = self._session(run_id, round, attempt)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise _invalid(f"weight must be a non-negative integer, got {weight!r:.40}")
        with session.lock:
            self._check_contributor(session, client_id)
            session.pending.add(client_id)
        started = time.perf_counter()
        try:
            ciphertexts = self._verified_ciphertexts(session, client_id, weight, payload, signature, masked_sha256)
            with session.lock:
                if session.product is None:
                    session.product = ciphertexts
                else:
                    nsquare = self._nsquare
                    session.product = [a * b % nsquare for a, b in zip(session.product, ciphertexts, strict=True)]
                session.contributed.add(client_id)
                session.verify_s += time.perf_counter() - started
        finally:
            with session.lock:
                session.pending.discard(client_id)
        log.debug("%s: folded in client %r", session.describe(), client_id)

    def _verified_ciphertexts(self, session: _Session, client_id: str, weight: int, payload: bytes,
                              signature: bytes, masked_sha256: bytes) -> list[gmpy2.mpz]:
        data = bytes(payload)
        try:
            verify_contribution(self.enrollment.public_key(client_id), bytes(signature), session.run_id,
                                session.round, session.digest, signed_digest(data, masked_sha256),
                                weight, session.task)
        except (SignatureError, CryptoError) as exc:
            raise _unauthenticated(f"{session.describe()}: contribution of client {client_id!r}: {exc}") from None
        try:
            header = read_header(data)
            with session.lock:
                fingerprint = session.fingerprint if session.fingerprint is not None else header.fingerprint
                count = session.count if session.count is not None else header.count
            if count < 1:
                raise CryptoError("payload holds no ciphertexts")
            parsed = load_payload(data, pub=self.key_set.public_key, fingerprint=fingerprint, count=count)
            if parsed.contributors != 1:
                raise CryptoError(f"payload claims {parsed.contributors} contributors; a client sends its own only")
        except CryptoError as exc:
            raise _invalid(f"{session.describe()}: contribution of client {client_id!r}: {exc}") from None
        with session.lock:
            if session.fingerprint is None:
                session.fingerprint, session.count = fingerprint, count
            elif (session.fingerprint, session.count) != (fingerprint, count):
                raise _invalid(f"{session.describe()}: contribution of client {client_id!r} does not match the "
                               "session's key fingerprint or ciphertext count")
        return parsed.ciphertexts

    def release(self, run_id: str, round: int, attempt: int,
                contributors: Sequence[str]) -> tuple[list[int], PartialProof]:
        """This share's partial decryptions of the product of exactly `contributors`' ciphertexts, with a proof of
        correctness; at most once per (run_id, round), recorded durably before anything is returned."""
        session = self._session(run_id, round, attempt)
        claimed = list(contributors)
        if len(set(claimed)) != len(claimed):
            raise _invalid(f"{session.describe()}: the contributors list a client more than once")
        with session.lock:
            contributed = set(session.contributed)
            pending = set(session.pending)
            product = session.product
        if pending:
            raise _stale(f"{session.describe()}: {len(pending)} contribution(s) are still being verified")
        if set(claimed) != contributed:
            missing, extra = sorted(contributed - set(claimed)), sorted(set(claimed) - contributed)
            raise _invalid(f"{session.describe()}: the claimed contributors are not those this decryptor folded in "
                           f"(not claimed: {missing[:5] or 'none'}; never contributed here: {extra[:5] or 'none'})")
        if len(contributed) < self.min_clients or product is None:
            raise _invalid(f"{session.describe()}: {len(contributed)} verified contributor(s), below this "
                           f"decryptor's min_clients={self.min_clients}")
        if len(contributed) < self.min_fraction * len(session.cohort) - 1e-9:
            raise _invalid(f"{session.describe()}: {len(contributed)} of a cohort of {len(session.cohort)} "
                           f"contributed, below this decryptor's min_fraction={self.min_fraction:g}")
        round_key = (run_id, round)
        with self._lock:
            if round_key in self._releasing or self.released(run_id, round):
                raise _stale(f"run {run_id!r} round {round} was already released by this decryptor")
            self._releasing.add(round_key)
        try:
            self._record_release(session, claimed)
        finally:
            with self._lock:
                self._releasing.discard(round_key)
                for key in [key for key in self._sessions if key[:2] == round_key]:
                    del self._sessions[key]  # no further use: the round is released (or lost to a race)
        ciphertexts = [int(c) for c in product]
        started = time.perf_counter()
        partials = self._partial_decrypt(ciphertexts)
        proved = time.perf_counter()
        proof = prove_partials(self.share, ciphertexts, partials)
        self.timings[round_key] = {"verify_s": session.verify_s, "partial_s": proved - started,
                                   "prove_s": time.perf_counter() - proved}
        log.info("released %s: %d contributors, %d ciphertexts", session.describe(), len(claimed), len(ciphertexts))
        return partials, proof

    def _partial_decrypt(self, ciphertexts: list[int]) -> list[int]:
        from fedgrad.crypto.decryption import ParallelPartialDecryptor

        workers = self._workers
        if not isinstance(workers, ParallelPartialDecryptor) or self._workers_batch != len(ciphertexts):
            if isinstance(workers, ParallelPartialDecryptor):
                workers.close()
            workers = ParallelPartialDecryptor(self.share, len(ciphertexts), cores=self.cores)
            self._workers, self._workers_batch = workers, len(ciphertexts)
        return workers.decrypt(ciphertexts)

    def close(self) -> None:
        """Stop the partial-decryption workers (idempotent); the release log stays on disk."""
        from fedgrad.crypto.decryption import ParallelPartialDecryptor

        if isinstance(self._workers, ParallelPartialDecryptor):
            self._workers.close()
        self._workers = None


def signed_digest(payload: bytes, masked_sha256: bytes = b"") -> bytes:
    """What the client signed for this contribution (`ciphertext_sha256` of `sign_contribution`): the payload's
    digest, or under ``paillier-masked`` the digest binding the key ciphertexts to the masked update
    (`fedgrad.crypto.masked.masked_digest`). The two are domain-separated, so a coordinator cannot present one
    mode's signed contribution as the other's."""
    if not masked_sha256:
        return payload_digest(payload)
    if len(masked_sha256) != DIGEST_BYTES:
        raise CryptoError(f"a masked update's digest is {DIGEST_BYTES} bytes, got {len(masked_sha256)}")
    return masked_digest(payload_digest(payload), bytes(masked_sha256))


def payload_digest(payload: bytes | bytearray | memoryview) -> bytes:
    """What a client signs for its ciphertexts (`ciphertext_sha256` of `sign_contribution`): SHA-256 of the whole
    payload, header included, so that the key fingerprint, the contributor count and the ciphertext count are
    signed along with the ciphertexts."""
    return hashlib.sha256(payload).digest()


def read_size(count: int, width: int) -> int:
    """Bytes of a payload of `count` ciphertexts of `width` bytes each, header included."""
    return HEADER_BYTES + count * width
