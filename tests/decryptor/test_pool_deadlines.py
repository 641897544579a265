"""A release's deadline follows the work it asks for, and a decryptor past its deadline is slow, not dead
(issue 22: on spam_lstm every decryptor ran past a fixed 60 s deadline, was marked dead, and no round applied)."""
from __future__ import annotations

from typing import Any

import grpc
import pytest

from fedgrad.decryptor.pool import RELEASE_POWMODS, DecryptorPool, ReleaseFailed

UNUSED = ["127.0.0.1:53001", "127.0.0.1:53002", "127.0.0.1:53003"]  # channels connect lazily: never dialled


class _Status(grpc.RpcError, grpc.Call):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._code.name

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


class _Stub:
    """A decryptor whose release always fails with `code`; records the deadline it was given."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code
        self.deadlines: list[float] = []

    def Release(self, request: Any, timeout: float) -> Any:
        self.deadlines.append(timeout)
        raise _Status(self.code)


def _pool(setup: Any, code: grpc.StatusCode) -> tuple[DecryptorPool, list[_Stub]]:
    pool = DecryptorPool(UNUSED, setup.keys, timeout_s=5.0)
    stubs = [_Stub(code) for _ in UNUSED]
    for remote, stub in zip(pool._remotes, stubs, strict=True):
        remote.stub = stub  # type: ignore[assignment]
    return pool, stubs


def test_release_deadline_grows_with_the_ciphertexts_asked(setup: Any) -> None:
    pool, stubs = _pool(setup, grpc.StatusCode.DEADLINE_EXCEEDED)
    with pool:
        assert pool.powmod_s > 0
        for count in (10, 5000):
            with pytest.raises(ReleaseFailed, match="slower than its"):
                pool.release("run", count, 0, ["alice", "bob"], [2] * count)
        asked = sorted({d for stub in stubs for d in stub.deadlines})
        assert asked == [pool.release_deadline_s(10), pool.release_deadline_s(5000)]
        assert asked[1] - asked[0] == pytest.approx(4990 * RELEASE_POWMODS * pool.powmod_s)


def test_a_slow_decryptor_is_not_marked_dead(setup: Any) -> None:
    pool, stubs = _pool(setup, grpc.StatusCode.DEADLINE_EXCEEDED)
    with pool:
        for round_number in (1, 2):
            with pytest.raises(ReleaseFailed):
                pool.release("run", round_number, 0, ["alice", "bob"], [2])
        assert pool.alive == [1, 2, 3]
        assert all(len(stub.deadlines) == 2 for stub in stubs)  # every decryptor asked again in round 2


def test_an_unreachable_decryptor_is_still_marked_dead(setup: Any) -> None:
    pool, _ = _pool(setup, grpc.StatusCode.UNAVAILABLE)
    with pool:
        with pytest.raises(ReleaseFailed):
            pool.release("run", 1, 0, ["alice", "bob"], [2])
        assert pool.alive == []
