"""Writing task results of one run in batches: fewer round trips, durable within milliseconds.

A finished task's result waits at most ``BATCH_DELAY`` to be written together with the
results that finish meanwhile; the run's final transition carries whatever is still waiting,
so a flow of quick tasks writes its results in the same round trip as its final state. A
delay that ends while the run is finishing writes nothing: the final transition is about to
carry the results (a busy loop, whose turns take longer than the delay, would otherwise cost
a run one more script call, and more the busier it is).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from uuid import UUID

from flowbus._core.supervisor import spawn
from flowbus._redis.store import RunStore

#: Seconds a finished task's result may wait to be written with others.
BATCH_DELAY = 0.02


class ResultWriter:
    """Persists the task results of one run; ``persist`` may be called from any thread."""

    __slots__ = (
        "_draining",
        "_loop_thread",
        "_lock",
        "_pending",
        "_scheduled",
        "_timer",
        "_writes",
        "attempt",
        "loop",
        "on_fenced",
        "run_id",
        "store",
    )

    def __init__(
        self,
        store: RunStore,
        run_id: UUID,
        loop: asyncio.AbstractEventLoop,
        attempt: int | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.loop = loop
        #: The writing execution's token: a superseded one's writes are refused, and it is told.
        self.attempt = attempt
        self.on_fenced = on_fenced
        #: The thread of ``loop`` (the writer is made there); sync tasks persist from others.
        self._loop_thread = threading.get_ident()
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._scheduled = False
        #: :meth:`drain` is taking what waits: a delay ending meanwhile leaves it to it.
        self._draining = False
        #: Batches being written (made on the first: most runs write none before their end).
        self._writes: set[asyncio.Task[None]] | None = None

    def persist(self, task_key: str, data: bytes) -> None:
        """Queue a result; it is written within ``BATCH_DELAY`` (or with the final state)."""
        with self._lock:
            self._pending[task_key] = data
            if self._scheduled:
                return
            self._scheduled = True
        if threading.get_ident() == self._loop_thread:
            self._arm()
        else:  # a sync task in a worker thread
            self.loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        self._timer = self.loop.call_later(BATCH_DELAY, self._write_soon)

    def _write_soon(self) -> None:
        if self._draining:
            return
        write = spawn(self._write_kept(self._take()), name=f"results of run {self.run_id}")
        if self._writes is None:
            self._writes = set()
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write_kept(self, results: dict[str, bytes]) -> None:
        """Write a batch; one that failed waits again (the final transition carries it)."""
        try:
            await self._write(results)
        except Exception:
            with self._lock:
                self._pending = {**results, **self._pending}
            raise

    def _take(self) -> dict[str, bytes]:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return pending

    async def _write(self, results: dict[str, bytes]) -> None:
        if results:
            written = await self.store.save_task_results(self.run_id, results, attempt=self.attempt)
            if not written and self.on_fenced is not None:
                self.on_fenced()

    async def drain(self) -> dict[str, bytes]:
        """Wait for writes in flight; return what still waits (for the final transition)."""
        self._draining = True
        try:
            await asyncio.sleep(0)  # let a threadsafe _arm queued just before run first
            if self._writes:  # a write that failed put its results back: they are taken below
                await asyncio.gather(*self._writes, return_exceptions=True)
            return self._take()
        finally:
            self._draining = False

    async def flush(self) -> None:
        """Write everything now and wait until it is in Redis."""
        await self._write(await self.drain())
