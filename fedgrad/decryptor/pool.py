"""The coordinator's handle on its k decryptors: forward each signed contribution as it arrives, release at the end.

Synchronous API, safe to call from the coordinator's event loop: `open` and `contribute` only queue the calls
(one small thread pool per decryptor, blocking gRPC stubs, a deadline on every call) and return at once;
`release` runs in a worker thread, waits until that session's queued calls have been answered, asks every live
decryptor for its partial decryptions, checks each one's proof (`combine_verified`) against the aggregate the
coordinator computed itself, and combines t of them.

`addresses[i]` is the decryptor holding share i + 1 (`fedgrad keygen` writes `decryptor-<i>/share.json`). Two
ways a decryptor can fail a call, told apart by the gRPC status:

* a *refusal* (the status of a `Refusal` kind: INVALID_ARGUMENT, FAILED_PRECONDITION, UNAUTHENTICATED, ...):
  the decryptor is alive and says no, e.g. to a forged contribution. It is logged, returned by the future that
  `contribute` gives back, and named in `ReleaseFailed` if it costs the release;
* past its deadline (DEADLINE_EXCEEDED): the decryptor is *slow*, not dead. The call's answer is lost and
  logged, and the decryptor is asked again in later rounds;
* anything else (unreachable, killed): the decryptor is marked dead for the rest of the run, logged once, and
  skipped from then on. Up to k − t may die and `release` still succeeds.

A release's deadline follows the work it asks for (`release_deadline_s`): the base `timeout_s` plus, per
ciphertext, `RELEASE_POWMODS` times one partial-decryption powmod as measured on this machine at start-up. A
model with 6,688 ciphertexts per update (spam_lstm under `paillier`) gets minutes, not the 60 s that made every
decryptor look dead while it was still computing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import grpc

from fedgrad.crypto.errors import CryptoError
from fedgrad.crypto.identity import Enrollment
from fedgrad.crypto.threshold import KeySet, PartialProof, combine_verified
from fedgrad.decryptor.core import DecryptorRefusal
from fedgrad.errors import FedgradError
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import ClientSecurity, open_blocking_channel
from fedgrad.transport.codec import split_payload
from fedgrad.transport.interceptors import REFUSALS

log = logging.getLogger("fedgrad.decryptor.pool")

#: Concurrent calls in flight to one decryptor (contributions of one round are verified in parallel there).
CALLS_PER_DECRYPTOR = 4
#: Powmods a release may take per ciphertext before its deadline: one partial decryption, its share of the
#: batched proof and of the contributions' checks (≈ 1.1 together, `threshold`), times a margin for a decryptor
#: on a slower or busier machine than the coordinator's.
RELEASE_POWMODS = 8.0


def measure_powmod_s(key_set: KeySet, repeats: int = 3) -> float:
    """Seconds of one partial-decryption powmod for `key_set` on this machine: a base mod n² raised to an
    exponent of a key share's size (|n²| bits), the fastest of `repeats`."""
    nsquare = gmpy2.mpz(key_set.n) ** 2
    base = nsquare - 3
    exponent = (gmpy2.mpz(1) << int(nsquare.bit_length())) - 1
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        gmpy2.powmod(base, exponent, nsquare)
        best = min(best, time.perf_counter() - started)
    return best


class ReleaseFailed(FedgradError):
    """Fewer than t decryptors returned verified partial decryptions; the message says who failed and why."""


@dataclass
class _Remote:
    index: int
    address: str
    channel: grpc.Channel
    stub: pb_grpc.DecryptorStub
    executor: ThreadPoolExecutor
    alive: bool = True
    failure: str = ""


@dataclass
class _Session:
    opened: dict[int, Future[None]] = field(default_factory=dict)
    calls: list[Future[Any]] = field(default_factory=list)
    refusals: list[tuple[int, str, DecryptorRefusal]] = field(default_factory=list)  # (decryptor, what, why)


class DecryptorPool:
    """k decryptors at `addresses` (share order) for one run; see the module docstring."""

    def __init__(self, addresses: Sequence[str], key_set: KeySet, *, security: ClientSecurity | None = None,
                 timeout_s: float = 60.0, enrollment: Enrollment | None = None) -> None:
        """``enrollment``: the operator's (public) enrollment, which lets the coordinator refuse an update whose
        signature the decryptors would refuse before it spoils the round's product."""
        if len(addresses) != key_set.parties:
            raise FedgradError(f"{len(addresses)} decryptor address(es) for a {key_set.threshold}-of-"
                               f"{key_set.parties} key: give one per share, in share order")
        self.key_set = key_set
        self.enrollment = enrollment
        self._timings: defaultdict[tuple[str, int, int], list[dict[str, float]]] = defaultdict(list)
        #: (run, round, attempt) -> where the release's time went: the slowest decryptor's verify, partial and
        #: prove seconds, and the coordinator's combine (proof checks included); filled by ``release``
        self.release_stats: dict[tuple[str, int, int], dict[str, float]] = {}
        self.timeout_s = timeout_s
        #: one partial decryption's powmod on this machine (`measure_powmod_s`); sizes release deadlines
        self.powmod_s = measure_powmod_s(key_set)
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int, int], _Session] = {}
        self._remotes: list[_Remote] = []
        for index, address in enumerate(addresses, start=1):
            channel = open_blocking_channel(address, security)
            self._remotes.append(_Remote(index, address, channel, pb_grpc.DecryptorStub(channel),
                                         ThreadPoolExecutor(CALLS_PER_DECRYPTOR,
                                                            thread_name_prefix=f"decryptor-{index}")))
        self._release_executor = ThreadPoolExecutor(len(self._remotes), thread_name_prefix="decryptor-release")
        self._closed = False

    @property
    def alive(self) -> list[int]:
        """Share indices of the decryptors not (yet) marked dead."""
        with self._lock:
            return [remote.index for remote in self._remotes if remote.alive]

    def _live(self) -> list[_Remote]:
        with self._lock:
            return [remote for remote in self._remotes if remote.alive]

    def _session(self, key: tuple[str, int, int]) -> _Session:
        with self._lock:
            return self._sessions.setdefault(key, _Session())

    # ---- calls, each in a pool thread ----

    def release_deadline_s(self, n_ciphertexts: int) -> float:
        """Seconds a decryptor gets to release `n_ciphertexts` partial decryptions (module docstring)."""
        return self.timeout_s + n_ciphertexts * RELEASE_POWMODS * self.powmod_s

    def _failed(self, remote: _Remote, what: str, error: grpc.RpcError) -> DecryptorRefusal | None:
        """A refusal for a refusal status; None for a slow call (logged) or a dead decryptor (marked dead)."""
        code = error.code() if isinstance(error, grpc.Call) else None
        details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
        kind = REFUSALS.get(code) if code is not None else None
        if kind is not None:
            log.warning("decryptor %d (%s) refused %s: %s", remote.index, remote.address, what, details)
            return DecryptorRefusal(kind, f"decryptor {remote.index} refused {what}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            log.warning("decryptor %d (%s) was too slow for %s (%s); still asked in later rounds",
                        remote.index, remote.address, what, details)
            return None
        with self._lock:
            newly_dead, remote.alive = remote.alive, False
            remote.failure = remote.failure or f"{what}: {code.name if code else 'error'} {details}"
        if newly_dead:
            log.warning("decryptor %d (%s) failed %s (%s: %s); marked dead for the rest of the run "
                        "(%d of %d alive, threshold %d)", remote.index, remote.address, what,
                        code.name if code else "error", details, len(self.alive), len(self._remotes),
                        self.key_set.threshold)
        return None

    def _open_call(self, remote: _Remote, session: _Session, request: pb.RoundOpening) -> None:
        if not remote.alive:
            return
        try:
            remote.stub.Open(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            refusal = self._failed(remote, f"opening round {request.round}", error)
            if refusal is not None:
                with self._lock:
                    session.refusals.append((remote.index, "open", refusal))
                raise refusal from None

    def _contribute_call(self, remote: _Remote, session: _Session, opened: Future[None] | None,
                         header: pb.ContributionHeader, payload: bytes) -> DecryptorRefusal | None:
        if opened is not None:
            try:
                opened.result()
            except DecryptorRefusal:
                return None  # the session was refused at this decryptor: nothing to add
        if not remote.alive:
            return None

        def chunks() -> Iterator[pb.ContributionChunk]:
            yield pb.ContributionChunk(header=header)
            for data in split_payload(payload):
                yield pb.ContributionChunk(data=data)

        try:
            remote.stub.Contribute(chunks(), timeout=self.timeout_s)
        except grpc.RpcError as error:
            refusal = self._failed(remote, f"the contribution of client {header.client_id!r}", error)
            if refusal is not None:
                with self._lock:
                    session.refusals.append((remote.index, header.client_id, refusal))
            return refusal
        return None

    def _release_call(self, remote: _Remote, request: pb.ReleaseRequest,
                      deadline_s: float) -> tuple[list[int], PartialProof]:
        reply = remote.stub.Release(request, timeout=deadline_s)
        with self._lock:
            self._timings[(request.run_id, request.round, request.attempt)].append(
                {"verify_s": reply.verify_s, "partial_s": reply.partial_s, "prove_s": reply.prove_s})
        if reply.index != remote.index:
            raise CryptoError(f"decryptor at {remote.address} answered as share {reply.index}, "
                              f"expected share {remote.index}")
        return [int.from_bytes(c, "big") for c in reply.partials], PartialProof.from_bytes(reply.proof)

    # ---- the API ----

    def open(self, run_id: str, round: int, attempt: int, cohort: Sequence[str], settings_digest: bytes = b"",
             model_digest: bytes = b"") -> None:
        """Open (run_id, round, attempt) with `cohort` and the round's task digests at every live decryptor;
        returns at once."""
        session = self._session((run_id, round, attempt))
        request = pb.RoundOpening(run_id=run_id, round=round, attempt=attempt, cohort=list(cohort),
                                  settings_digest=settings_digest, model_digest=model_digest)
        for remote in self._live():
            future = remote.executor.submit(self._open_call, remote, session, request)
            with self._lock:
                session.opened[remote.index] = future
                session.calls.append(future)

    def contribute(self, run_id: str, round: int, attempt: int, client_id: str, weight: int, payload: bytes,
                   signature: bytes, masked_sha256: bytes = b"") -> Future[list[DecryptorRefusal]]:
        """Forward one signed contribution to every live decryptor; returns at once.

        The returned future (ignore it, or `asyncio.wrap_future` it) resolves, once every live decryptor has
        answered, to the refusals received (empty: accepted by all that are alive). It never raises.
        """
        session = self._session((run_id, round, attempt))
        header = pb.ContributionHeader(run_id=run_id, round=round, attempt=attempt, client_id=client_id,
                                       weight=weight, signature=signature, payload_bytes=len(payload),
                                       masked_sha256=masked_sha256)
        data = bytes(payload)
        futures = []
        for remote in self._live():
            with self._lock:
                opened = session.opened.get(remote.index)
            future = remote.executor.submit(self._contribute_call, remote, session, opened, header, data)
            futures.append(future)
            with self._lock:
                session.calls.append(future)
        return _gather(futures)

    def refusals(self, run_id: str, round: int, attempt: int) -> list[tuple[int, str, DecryptorRefusal]]:
        """(decryptor index, client id or "open", refusal) for everything refused in this session so far, after
        waiting for its queued calls."""
        session = self._session((run_id, round, attempt))
        wait(list(session.calls))
        with self._lock:
            return list(session.refusals)

    def release(self, run_id: str, round: int, attempt: int, contributors: Sequence[str],
                ciphertexts: Sequence[int]) -> list[int]:
        """The plaintexts of `ciphertexts` (the coordinator's own product of `contributors`' payloads), from at
        least t verified partial decryptions; `ReleaseFailed` otherwise. Blocks: call from a worker thread."""
        key = (run_id, round, attempt)
        session = self._session(key)
        wait(list(session.calls))
        live = self._live()
        threshold = self.key_set.threshold
        if len(live) < threshold:
            raise ReleaseFailed(f"run {run_id!r} round {round}: only {len(live)} decryptor(s) alive, "
                                f"{threshold} needed ({self._dead_summary()})")
        request = pb.ReleaseRequest(run_id=run_id, round=round, attempt=attempt, contributors=list(contributors))
        with self._lock:
            self._sessions.pop(key, None)
            refused_contributions = [f"decryptor {i} refused {what}" for i, what, _ in session.refusals]
        # Ask t decryptors, not all k: each partial decryption is the round's dominant cost. The first ones asked
        # rotate with the round so that the work spreads over the decryptors; more are asked only when some fail
        # or send partials whose proofs do not verify.
        start = round % len(live)
        pending = live[start:] + live[:start]
        responses: dict[int, tuple[list[int], PartialProof]] = {}
        problems: list[str] = []
        deadline_s = self.release_deadline_s(len(ciphertexts))
        while pending:
            wave, pending = pending[:max(1, threshold - len(responses))], pending[max(1, threshold - len(responses)):]
            futures = {remote.index: self._release_executor.submit(self._release_call, remote, request, deadline_s)
                       for remote in wave}
            for remote in wave:
                try:
                    responses[remote.index] = futures[remote.index].result()
                except grpc.RpcError as error:
                    refusal = self._failed(remote, f"release of round {round}", error)
                    problems.append(str(refusal) if refusal else
                                    f"decryptor {remote.index} died ({remote.failure})" if not remote.alive else
                                    f"decryptor {remote.index} was slower than its {deadline_s:.0f} s deadline")
                except CryptoError as exc:
                    log.warning("decryptor %d sent a malformed release: %s", remote.index, exc)
                    problems.append(f"decryptor {remote.index}: {exc}")
            if len(responses) < threshold:
                continue
            try:
                combine_started = time.perf_counter()
                plaintexts, bad = combine_verified(self.key_set, list(ciphertexts), responses)
                combine_s = time.perf_counter() - combine_started
            except CryptoError as exc:
                problems.append(str(exc))
                for index in list(responses):  # keep asking: the proofs of some did not verify
                    problems.append(f"decryptor {index}'s partials were not usable")
                continue
            for index in bad:
                log.warning("decryptor %d returned partial decryptions that fail their proof (round %d); not used",
                            index, round)
            with self._lock:
                replies = self._timings.pop(key, [])
            self.release_stats[key] = {
                "decryptors_asked": float(len(responses)),
                **{name: max((reply[name] for reply in replies), default=0.0)
                   for name in ("verify_s", "partial_s", "prove_s")},
                "combine_s": combine_s}
            return plaintexts
        detail = "; ".join(problems + refused_contributions[:3])
        raise ReleaseFailed(f"run {run_id!r} round {round}: {len(responses)} of {len(live)} live decryptor(s) "
                            f"released partial decryptions, {threshold} verified needed: {detail}")

    def _dead_summary(self) -> str:
        with self._lock:
            dead = [f"decryptor {r.index} at {r.address}: {r.failure}" for r in self._remotes if not r.alive]
        return "; ".join(dead) or "none dead"

    def close(self) -> None:
        """Cancel queued calls and close the channels (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for remote in self._remotes:
            remote.executor.shutdown(wait=False, cancel_futures=True)
            remote.channel.close()
        self._release_executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> DecryptorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gather(futures: Sequence[Future[DecryptorRefusal | None]]) -> Future[list[DecryptorRefusal]]:
    """One future for all of `futures`: the refusals among their results, once all are done."""
    out: Future[list[DecryptorRefusal]] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def done(_: Future[DecryptorRefusal | None]) -> None:
        with lock:
            remaining[0] -= 1
            finished = remaining[0] == 0
        if finished:
            refusals = []
            for future in futures:
                if not future.cancelled() and future.exception() is None and future.result() is not None:
                    refusals.append(future.result())
            out.set_result([r for r in refusals if r is not None])

    if not futures:
        out.set_result([])
    for future in futures:
        future.add_done_callback(done)
    return out


__all__ = ["DecryptorPool", "DecryptorRefusal", "ReleaseFailed"]
