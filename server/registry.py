"""Joined clients, each with a mailbox holding its newest task, and the signal long polls wait on.

Task delivery is push-style: the round loop posts a task into a client's mailbox and every GetTask
call parked on that mailbox wakes at once. Nothing polls on a timer; a parked call only times out
(answering WAIT) so that the client learns the coordinator is still alive.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from fedgrad.transport import fedgrad_pb2 as pb
from server.tasks import Task
from server.validation import Rejected


class Signal:
    """Wakes every waiter when something changed; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return condition()
        return True


class Mailbox:
    """The newest task for one client. A newer task replaces an older one that was never fetched."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self._posted = Signal()

    def post(self, task: Task) -> None:
        self.task = task
        self._posted.fire()

    def withdraw(self, task_id: int) -> None:
        """Drop task ``task_id`` if it is still waiting here (its round closed before it was fetched)."""
        if self.task is not None and self.task.task_id == task_id:
            self.task = None

    async def newer_than(self, task_id: int, timeout: float) -> Task | None:
        """The posted task if it is newer than ``task_id``, waiting up to ``timeout`` for one."""
        arrived = await self._posted.wait_for(lambda: self.task is not None and self.task.task_id > task_id, timeout)
        return self.task if arrived else None


@dataclass
class ClientRecord:
    client_id: str
    token: str
    n_examples: int
    mailbox: Mailbox = field(default_factory=Mailbox)
    shut_down: bool = False  # has received the SHUTDOWN task


class ClientRegistry:
    """The clients that joined this run, by id; ``changed`` fires on every join or shutdown delivery."""

    def __init__(self, expected_ids: Collection[str]) -> None:
        self.expected_ids = frozenset(expected_ids)
        self._clients: dict[str, ClientRecord] = {}
        self.changed = Signal()

    def join(self, request: pb.JoinRequest) -> ClientRecord:
        """Register a client, or refresh it when it rejoins (a restarted process keeps its mailbox)."""
        if request.client_id not in self.expected_ids:
            raise Rejected.unauthenticated(f"unknown client id {request.client_id!r} (this run has "
                                           f"{len(self.expected_ids)} clients: {_id_range(self.expected_ids)})")
        record = self._clients.get(request.client_id)
        if record is None:
            record = self._clients[request.client_id] = ClientRecord(request.client_id, request.token, request.n_examples)
        else:
            record.token, record.n_examples, record.shut_down = request.token, request.n_examples, False
        self.changed.fire()
        return record

    def get(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def clients(self) -> list[ClientRecord]:
        """Joined clients in id order (the order sampling draws from, so it is deterministic)."""
        return [self._clients[client_id] for client_id in sorted(self._clients, key=_id_order)]

    def trainable(self) -> list[ClientRecord]:
        """Joined clients with at least one training example."""
        return [record for record in self.clients() if record.n_examples > 0]

    def mark_shut_down(self, record: ClientRecord) -> None:
        record.shut_down = True
        self.changed.fire()


def _id_order(client_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order ("2" before "10"), then any others alphabetically."""
    return (0, int(client_id)) if client_id.isdigit() else (1, client_id)


def _id_range(ids: Collection[str]) -> str:
    ordered = sorted(ids, key=_id_order)
    return ", ".join(ordered) if len(ordered) <= 4 else f"{ordered[0]} .. {ordered[-1]}"
