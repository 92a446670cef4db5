"""Background tasks nobody awaits: each owned here, its failure logged, loops restarted.

asyncio keeps only weak references to tasks and drops the exception of a task nobody
awaits; a loop that ends on an unexpected error then stops silently and everything that
relied on it hangs. :func:`spawn` owns one-shot tasks (and logs how they failed);
:func:`supervise` keeps a loop running: it logs each failure, waits (doubling, capped),
tells its dependants (``on_restart``) and starts the loop again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import anyio

logger = logging.getLogger("flowbus.supervisor")

T = TypeVar("T")

#: Tasks started by :func:`spawn` and not done yet (strong references).
_owned: set[asyncio.Task[Any]] = set()

#: First and longest wait (seconds) before a failed loop starts again.
BACKOFF_START, BACKOFF_MAX = 0.05, 2.0
#: A loop that ran this long before failing starts again after the shortest wait.
HEALTHY_SECONDS = 30.0


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Start ``coro`` as a task held until done; a failure is logged with its traceback."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _owned.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _owned.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("Background task %s failed", task.get_name(), exc_info=exc)


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[object]],
    *,
    on_restart: Callable[[], None] | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> NoReturn:
    """Run ``loop`` forever, starting it again after any exception but cancellation.

    ``expected`` failures (a lost connection) are logged in one line, others with their
    traceback. ``on_restart`` runs before each restart (e.g. "re-read what you follow").
    """
    delay = BACKOFF_START
    while True:
        began = time.monotonic()
        exc_info = False
        try:
            await loop()
            reason = "ended"
        except expected as exc:
            reason = f"failed ({exc!r})"
        except Exception as exc:
            reason, exc_info = f"failed ({exc!r})", True
        if time.monotonic() - began > HEALTHY_SECONDS:
            delay = BACKOFF_START
        logger.warning("%s %s; starting it again in %.2fs", name, reason, delay, exc_info=exc_info)
        await anyio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
        if on_restart is not None:
            on_restart()
