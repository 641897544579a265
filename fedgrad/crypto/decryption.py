"""Decrypting an aggregate on every core: the key holder's own worker processes.

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

import logging
import multiprocessing
import os
import signal
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import phe

log = logging.getLogger("fedgrad.crypto")

#: Fewest ciphertexts (~2.6 ms each at 2048 bits) worth a part of their own (see the module docstring).
MIN_CHUNK = 32

_worker_key: phe.PaillierPrivateKey | None = None  # set once in each worker process by _start_worker


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_parts(batch: int, cores: int) -> int:
    """How many parts to cut a ``batch`` of ciphertexts into: one per core, each of at least ``MIN_CHUNK``."""
    return max(1, min(cores, batch // MIN_CHUNK))


def split(items: Sequence[int], parts: int) -> list[Sequence[int]]:
    """``items`` in ``parts`` contiguous chunks whose lengths differ by at most one."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[start:stop] for start, stop in zip(bounds, bounds[1:])]


def decrypt_chunk(priv: phe.PaillierPrivateKey, ciphertexts: Sequence[int]) -> list[int]:
    """phe's raw (CRT) decryption of each ciphertext, in this process."""
    return [priv.raw_decrypt(int(c)) for c in ciphertexts]


class ParallelDecryptor:
    """Raw decryption of batches of ``batch`` ciphertexts, spread over ``parts`` worker processes.

    The workers are started on the first :meth:`decrypt` and kept for the next ones (see the module docstring).
    """

    def __init__(self, priv: phe.PaillierPrivateKey, batch: int, *, cores: int | None = None) -> None:
        self._priv = priv
        self.parts = plan_parts(batch, available_cores() if cores is None else cores)
        self._pool: ProcessPoolExecutor | None = None
        self._shutdown_pool: weakref.finalize | None = None

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """The plaintexts of ``ciphertexts``, in order."""
        chunks = split(ciphertexts, min(self.parts, max(1, len(ciphertexts))))
        if len(chunks) == 1:
            return decrypt_chunk(self._priv, chunks[0])
        pool = self._pool or self._start_pool()
        try:
            return [plaintext for part in pool.map(_decrypt_in_worker, chunks) for plaintext in part]
        except BrokenProcessPool:  # a worker was killed (e.g. out of memory): carry on without workers
            log.warning("a decryption worker died; decrypting in the key holder's process from now on")
            self.close()
            self.parts = 1
            return decrypt_chunk(self._priv, ciphertexts)

    def close(self) -> None:
        """Stop the workers (idempotent); a later :meth:`decrypt` starts new ones."""
        if self._shutdown_pool is not None:
            self._shutdown_pool()
        self._pool = self._shutdown_pool = None

    def _start_pool(self) -> ProcessPoolExecutor:
        self._pool = ProcessPoolExecutor(self.parts, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker, initargs=(self._priv,))
        # The pool's method, not one of self's, so that the finalizer does not keep self alive; it runs at exit too.
        self._shutdown_pool = weakref.finalize(self, self._pool.shutdown, cancel_futures=True)
        return self._pool


def _start_worker(priv: phe.PaillierPrivateKey) -> None:
    """Runs once in each worker: keep the key in memory, leave Ctrl-C to the parent, die with the parent."""
    global _worker_key
    _worker_key = priv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()


def _exit_with_parent() -> None:
    multiprocessing.parent_process().join()  # returns once the parent is gone, however it ended
    os._exit(1)


def _decrypt_in_worker(ciphertexts: list[int]) -> list[int]:
    assert _worker_key is not None, "worker not initialised with the key"
    return decrypt_chunk(_worker_key, ciphertexts)
