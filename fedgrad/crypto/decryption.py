"""Decrypting an aggregate on every core: the key holder's (or a threshold decryptor's) own worker processes.

One home for the pool logic: :class:`ParallelWorkers` runs a module-level ``work(secret, chunk)`` function over
contiguous chunks of a batch in ``spawn``ed worker processes that received ``secret`` once at start.
:class:`ParallelDecryptor` is that with phe's CRT decryption and the trusted key holder's private key;
:class:`ParallelPartialDecryptor` is that with :func:`fedgrad.crypto.threshold.partial_decrypt` and one
decryptor's :class:`~fedgrad.crypto.threshold.KeyShare` (a partial decryption is a ~25-30 ms powmod mod n² at
2048 bits, ~10× a CRT decryption, so its chunks may be much smaller: ``PARTIAL_MIN_CHUNK``). Everything below
about the key holder's workers holds for a decryptor's workers and its share alike.

Why processes. One 2048-bit Paillier decryption is two modular exponentiations (phe's ``raw_decrypt``, CRT on
gmpy2), about 2.6 ms, and an aggregate holds one ciphertext per ~100 packed values, so a 12.9k-parameter model
costs ~0.4 s of one core per round while the clients wait. gmpy2 holds the GIL while it computes (releasing it
is an experimental, off-by-default gmpy2 context flag, not something to rest a private key's memory safety on),
so threads would take turns; processes do not. Every ciphertext costs the same, so the batch is cut into
``parts`` equal contiguous chunks, one per worker process, and the key holder only waits (decrypting a chunk
itself would hold the GIL that the pool's feeder threads need to hand the other chunks out).

Why the workers are still the key holder. They are part of that component, not new parties:

* only a :class:`ParallelDecryptor`, owned by the :class:`~fedgrad.crypto.KeyHolder`, starts them and talks to
  them, and it hands them ciphertexts only after the key holder's refusals have all passed;
* each receives the private key once, through the pipe that starts it (never a file), and is started with
  ``spawn``, so it inherits none of the coordinator's memory, sockets or threads (a fork would copy them all);
* a worker only turns ciphertexts into plaintext integers and sends them back to the key holder, which checks
  them against the encoding's bound before anything leaves it, exactly as with in-process decryption;
* workers end with their owner: :meth:`ParallelDecryptor.close` (also run on garbage collection and at
  interpreter exit) shuts them down, and a worker whose parent died without closing it (SIGKILL) exits at once
  rather than linger holding the key. They ignore SIGINT, so a Ctrl-C reaches the coordinator, which unwinds.

Break-even (measured on 2 cores, 2048-bit key). Once the workers run, splitting costs under a millisecond per
call, so even two ciphertexts go faster on two cores. What costs is starting them: ~0.4-0.6 s, once, in the
first decryption (each worker is a fresh interpreter importing numpy and phe). Parts of at least ``MIN_CHUNK``
ciphertexts save ≥ 80 ms a round, which repays the start within ~6 rounds (spam_fedavg's 146 ciphertexts: in
its second round); smaller aggregates (toy models, tests) are decrypted in process and never start a worker.
``spawn`` re-imports the main module in each worker, so a script that decrypts needs the ``__main__`` guard.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

import phe

from fedgrad.crypto.threshold import KeyShare, partial_decrypt

log = logging.getLogger("fedgrad.crypto")

#: Fewest ciphertexts (~2.6 ms each at 2048 bits) worth a part of their own (see the module docstring).
MIN_CHUNK = 32
#: The same for partial decryptions (~25-30 ms each at 2048 bits): a few already repay the split.
PARTIAL_MIN_CHUNK = 4

Secret = TypeVar("Secret")

_worker_secret: Any = None  # set once in each worker process by _start_worker
_worker_work: Callable[[Any, Sequence[int]], list[int]] | None = None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_parts(batch: int, cores: int, min_chunk: int = MIN_CHUNK) -> int:
    """How many parts to cut a ``batch`` of ciphertexts into: one per core, each of at least ``min_chunk``."""
    return max(1, min(cores, batch // min_chunk))


def split(items: Sequence[int], parts: int) -> list[Sequence[int]]:
    """``items`` in ``parts`` contiguous chunks whose lengths differ by at most one."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[start:stop] for start, stop in itertools.pairwise(bounds)]


def decrypt_chunk(priv: phe.PaillierPrivateKey, ciphertexts: Sequence[int]) -> list[int]:
    """phe's raw (CRT) decryption of each ciphertext, in this process."""
    return [int(priv.raw_decrypt(int(c))) for c in ciphertexts]


class ParallelWorkers(Generic[Secret]):
    """``work(secret, chunk)`` over batches of ``batch`` items, spread over ``parts`` worker processes.

    ``work`` must be a module-level function (it is pickled by name). The workers are started on the first
    :meth:`run` and kept for the next ones (see the module docstring).
    """

    def __init__(self, secret: Secret, work: Callable[[Secret, Sequence[int]], list[int]], batch: int, *,
                 cores: int | None = None, min_chunk: int = MIN_CHUNK) -> None:
        self._secret = secret
        self._work = work
        self.parts = plan_parts(batch, available_cores() if cores is None else cores, min_chunk)
        self._pool: ProcessPoolExecutor | None = None
        self._shutdown_pool: weakref.finalize[Any, Any] | None = None

    def run(self, items: Sequence[int]) -> list[int]:
        """``work`` applied to ``items``, results in order."""
        chunks = split(items, min(self.parts, max(1, len(items))))
        if len(chunks) == 1:
            return self._work(self._secret, chunks[0])
        pool = self._pool or self._start_pool()
        try:
            return [result for part in pool.map(_run_in_worker, chunks) for result in part]
        except BrokenProcessPool:  # a worker was killed (e.g. out of memory): carry on without workers
            log.warning("a decryption worker died; decrypting in the owner's process from now on")
            self.close()
            self.parts = 1
            return self._work(self._secret, items)

    def close(self) -> None:
        """Stop the workers (idempotent); a later :meth:`run` starts new ones."""
        if self._shutdown_pool is not None:
            self._shutdown_pool()
        self._pool = self._shutdown_pool = None

    def _start_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.parts, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(self._secret, self._work))
        # The pool's method, not one of self's, so that the finalizer does not keep self alive; it runs at exit too.
        self._shutdown_pool = weakref.finalize(self, pool.shutdown, cancel_futures=True)
        self._pool = pool
        return pool


class ParallelDecryptor(ParallelWorkers[phe.PaillierPrivateKey]):
    """Raw (CRT) decryption with the trusted key holder's private key, on every core."""

    def __init__(self, priv: phe.PaillierPrivateKey, batch: int, *, cores: int | None = None) -> None:
        super().__init__(priv, decrypt_chunk, batch, cores=cores)

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """The plaintexts of ``ciphertexts``, in order."""
        return self.run(ciphertexts)


class ParallelPartialDecryptor(ParallelWorkers[KeyShare]):
    """A threshold decryptor's partial decryptions c^{2Δ s_i} mod n² with its key share, on every core."""

    def __init__(self, share: KeyShare, batch: int, *, cores: int | None = None,
                 min_chunk: int = PARTIAL_MIN_CHUNK) -> None:
        super().__init__(share, partial_decrypt, batch, cores=cores, min_chunk=min_chunk)

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """The partial decryptions of ``ciphertexts``, in order (each validated as in ``partial_decrypt``)."""
        return self.run(ciphertexts)


def _start_worker(secret: Any, work: Callable[[Any, Sequence[int]], list[int]]) -> None:
    """Runs once in each worker: keep the key in memory, leave Ctrl-C to the parent, die with the parent."""
    global _worker_secret, _worker_work
    _worker_secret, _worker_work = secret, work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns once the parent is gone, however it ended
    os._exit(1)


def _run_in_worker(chunk: Sequence[int]) -> list[int]:
    assert _worker_work is not None, "worker not initialised with its key"
    return _worker_work(_worker_secret, chunk)
