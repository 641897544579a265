"""Wake-ups without polling: :class:`Signal` (wake every waiter when something changed) and :class:`Mailbox`
(the newest task for one client).

Task delivery is push-style: the round loop posts a task into a client's mailbox and every GetTask
call parked on that mailbox wakes at once. Nothing polls on a timer; a parked call only times out
(answering WAIT) so that the client learns the coordinator is still alive.
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


class Mailbox:
    """The newest task for one client. A newer task replaces an older one that was never fetched."""

    def __init__(self) -> None:
        self.task: Delivery | None = None
        self._posted = Signal()

    def post(self, task: Delivery) -> None:
        self.task = task
        self._posted.fire()

    def withdraw(self, task_id: int) -> None:
        """Drop task ``task_id`` if it is still waiting here (its round closed before it was fetched)."""
        if self.task is not None and self.task.task_id == task_id:
            self.task = None

    async def newer_than(self, task_id: int, timeout: float) -> Delivery | None:
        """The posted task if it is newer than ``task_id``, waiting up to ``timeout`` for one."""
        arrived = await self._posted.wait_for(lambda: self.task is not None and self.task.task_id > task_id, timeout)
        return self.task if arrived else None
