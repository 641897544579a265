"""Wake-ups without polling: :class:`Signal` (wake every waiter when something changed), :class:`Mailbox`
(the newest task for one client) and :class:`Waiter` (one parked GetTask call, for many clients).

Task delivery is push-style: the round loop posts a task into a client's mailbox and the GetTask
call parked on that mailbox (one call per client process, for all its clients) wakes at once. Nothing polls on
a timer; a parked call only times out (answering WAIT) so that the clients learn the coordinator is still alive.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from server.tasks import Delivery


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


class Waiter:
    """The wake-up of one parked GetTask call, shared by the mailboxes of every client the call asks for: an idle
    client costs no event or call of its own, only its mailbox's reference to its process's waiter."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until woken (True, and ready for the next wake-up) or ``timeout`` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Mailbox:
    """The newest task for one client. A newer task replaces an older one that was never fetched."""

    __slots__ = ("task", "_waiters")

    def __init__(self) -> None:
        self.task: Delivery | None = None
        self._waiters: tuple[Waiter, ...] = ()  # the calls parked on it, usually none or one

    def post(self, task: Delivery) -> None:
        self.task = task
        for waiter in self._waiters:
            waiter.wake()

    def withdraw(self, task_id: int) -> None:
        """Drop task ``task_id`` if it is still waiting here (its round closed before it was fetched)."""
        if self.task is not None and self.task.task_id == task_id:
            self.task = None

    def newer_than(self, task_id: int) -> Delivery | None:
        """The posted task if it is newer than ``task_id``."""
        return self.task if self.task is not None and self.task.task_id > task_id else None

    def listen(self, waiter: Waiter) -> None:
        self._waiters = (*self._waiters, waiter)

    def leave(self, waiter: Waiter) -> None:
        self._waiters = tuple(other for other in self._waiters if other is not waiter)
