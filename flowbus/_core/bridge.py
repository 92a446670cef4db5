"""One bridge from sync code to flowbus's async core.

Every operation is written once, as a coroutine function. Sync callers run it on the loop
of the flow run they are in (a sync flow's body runs in a worker thread of that loop), or,
outside any run, on one background loop owned by this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
#: Tasks started for sync callers, held until done (else the garbage collector may end them).
_running: set[asyncio.Task[Any]] = set()
_lock = threading.Lock()
#: The loop a run executes on; set for the run's tasks and threads.
run_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "flowbus_run_loop", default=None
)


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's background loop for sync callers, started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="flowbus-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def has_background_loop() -> bool:
    """True once a sync caller has started the background loop."""
    return _loop is not None


def in_async_context() -> bool:
    """True when this thread runs an event loop (the caller can and must ``await``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def submit(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
) -> concurrent.futures.Future[T]:
    """Start ``coro`` on ``loop`` with the caller's context variables; return its future."""
    ctx = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(coro, context=ctx)
        _running.add(task)  # the loop keeps only weak references to tasks

        def done(t: asyncio.Task[T]) -> None:
            _running.discard(t)
            if t.cancelled():
                future.cancel()
            elif (exc := t.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(t.result())

        task.add_done_callback(done)

    loop.call_soon_threadsafe(start)
    return future


def target_loop() -> asyncio.AbstractEventLoop:
    """The loop that sync calls from this thread should run on."""
    return run_loop.get() or background_loop()


def run_blocking(fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` on the right loop and block this thread for its result."""
    loop = target_loop()
    if _is_loop_thread(loop):
        raise RuntimeError("A blocking flowbus call was made on its own event loop: await it")
    return submit(loop, fn(*args, **kwargs)).result()


def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """``coro`` to await on ``loop`` from another loop (an async task body runs on its own);
    on ``loop`` itself, ``coro`` as it is (no coroutine frame of its own while it waits)."""
    if asyncio.get_running_loop() is loop:
        return coro
    return asyncio.wrap_future(submit(loop, coro))


def _is_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def sync_or_async(afn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Any]:
    """The plain-named twin of ``afn``: awaitable in async code, blocking in sync code.

    One implementation behind both, so the two can never drift apart. As in Prefect,
    ``_sync=True`` forces the blocking call and ``_sync=False`` the awaitable.
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> Any:
        forced = kwargs.pop("_sync", None)  # Prefect's override: True blocks, False awaits
        if forced is False or (forced is None and in_async_context()):
            return afn(*args, **kwargs)
        return run_blocking(afn, *args, **kwargs)

    call.__name__ = afn.__name__.removeprefix("a")
    call.__qualname__ = call.__name__
    call.__doc__ = afn.__doc__
    call.__wrapped__ = afn  # type: ignore[attr-defined]
    return call
