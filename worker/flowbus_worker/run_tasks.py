"""The tasks that handle runs: plain asyncio tasks, owned by the worker.

An anyio task costs a cancel scope, an event and a handle each (a twentieth of a trivial
run's CPU); a run's handling needs none of them: it catches its own failures and its
execution has a cancel scope of its own. The worker holds the tasks here, logs any failure
that still escapes one, and cancels and awaits those left when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger("flowbus.worker")


class RunTasks:
    """Starts and holds the tasks of the runs being handled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("Handling a run failed", exc_info=exc)

    async def join(self) -> None:
        """Wait until no task is left (each ends with its entry's ack or a hand-off)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        """Cancel the tasks still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
