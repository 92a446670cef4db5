"""The worker service: one anyio task group holding every part of the worker.

Children: the heartbeat; the intake (a consumer per queue stream, a resume-request consumer
and a reclaimer per queue), which shutdown cancels first; a deadline sweeper per queue; the
signal watcher; and the executions, one task and one cancel scope per run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError

from flowbus._core.supervisor import supervise
from flowbus._redis.connect import close_client
from flowbus._redis.heartbeat import heartbeat
from flowbus._redis.orphans import end_orphans
from flowbus._redis.runtime import Runtime, close_runtime, get_runtime, open_redis
from flowbus.flows import Flow
from flowbus_worker import groups
from flowbus_worker.config import WorkerConfig
from flowbus_worker.consumer import EntryHandler, consume, consume_each
from flowbus_worker.executor import Executor
from flowbus_worker.reclaim import forget_dead, orphans
from flowbus_worker.resume_requests import ResumeRequests
from flowbus_worker.timers import sweep_forever

logger = logging.getLogger("flowbus.worker")

#: Longest seconds between two looks for orphaned entries of a queue.
RECLAIM_INTERVAL = 0.5


class Worker:
    """A worker process's service; :meth:`run` returns the exit code."""

    def __init__(self, config: WorkerConfig, flows: Mapping[str, Flow[..., Any]]) -> None:
        self.config = config
        self.flows = dict(flows)
        self.exit_code = 0
        self._intake: anyio.CancelScope | None = None
        self._stopping = False
        self._executor: Executor | None = None
        self._tg: TaskGroup | None = None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            raise RuntimeError("the worker is not running")
        return self._executor

    @property
    def abandoned_threads(self) -> bool:
        return self._executor is not None and self._executor.abandoned_threads

    async def run(self) -> int:
        """Serve until stopped by a signal (or :meth:`stop`); return the exit code."""
        # a sync flow holds a thread for its whole run (pauses included): one per slot
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, self.config.concurrency + 4)
        runtime = await get_runtime()
        # blocking reads hold their connection: two per queue, apart from the command pool
        blocking = open_redis(
            runtime.url, runtime.settings, max_connections=2 * len(self.config.queues) + 1
        )
        self._executor = Executor(runtime, self.flows, self.config)
        self._intake = anyio.CancelScope()
        workers_key = runtime.store.keys.workers()
        try:
            await self._beat(runtime, workers_key)
            await runtime.redis.hset(
                runtime.store.keys.worker_info(), self.config.name, self.describe()
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self._run_intake, runtime, blocking)
                for queue in self.config.queues:
                    tg.start_soon(self._sweep_forever, runtime, queue)
                tg.start_soon(self._watch_signals)
                logger.info(
                    "Worker %s ready: queues %s, flows %s, concurrency %d",
                    self.config.name,
                    ", ".join(self.config.queues),
                    ", ".join(sorted(self.flows)) or "none",
                    self.config.concurrency,
                    extra={"worker": self.config.name},
                )
        finally:
            with anyio.CancelScope(shield=True):
                await self._leave(runtime, blocking, workers_key)
        return self.exit_code

    async def _beat(self, runtime: Runtime, workers_key: str) -> None:
        """Join the process's heartbeat (a thread: a blocked loop does not lapse the lease) as
        this worker, holding runs of each queue it serves; the first beat is in Redis before
        the worker takes any work."""
        beat = heartbeat()
        config = self.config
        beat.configure(name=config.name, lease_ms=config.lease_ms, interval=config.heartbeat)
        for queue in config.queues:
            runtime.leases.first_lease(runtime.store.keys.queue(queue).holders())
        runtime.leases.beat_worker(workers_key)
        await anyio.to_thread.run_sync(beat.beat_once)

    def describe(self) -> str:
        """What ``flowbus workers ls`` shows of this worker (its runs held are its pending
        entries in ``group``)."""
        return json.dumps(
            {
                "queues": list(self.config.queues),
                "flows": sorted(self.flows),
                "concurrency": self.config.concurrency,
                "group": groups.GROUP,
            }
        )

    async def _leave(self, runtime: Runtime, blocking: Redis, workers_key: str) -> None:
        """Drop the heartbeat, so others may take what is left pending at once."""
        await anyio.to_thread.run_sync(heartbeat().release, runtime.url, [workers_key])
        try:
            await runtime.redis.hdel(runtime.store.keys.worker_info(), self.config.name)
        except RedisError as exc:
            logger.warning("Could not remove the worker's description: %s", exc)
        await close_client(blocking)
        await close_runtime()
        logger.info("Worker %s stopped", self.config.name, extra={"worker": self.config.name})

    async def _run_intake(
        self, runtime: Runtime, blocking: Redis, *, task_status: TaskStatus[None]
    ) -> None:
        runs = self._tg
        assert runs is not None
        executor = self.executor
        assert self._intake is not None
        with self._intake:
            async with anyio.create_task_group() as intake:
                for queue in self.config.queues:
                    qkeys = runtime.store.keys.queue(queue)
                    requests = ResumeRequests(runtime, queue)

                    async def handle(
                        entry_id: str, fields: dict[str, str], token: object, queue: str = queue
                    ) -> None:
                        await executor.handle(queue, entry_id, fields, token, False)

                    await intake.start(_consume_runs, blocking, qkeys.stream(), self, handle, runs)
                    await intake.start(
                        _consume_requests, blocking, qkeys.resume_requests(), self, requests
                    )
                    intake.start_soon(self._reclaim_forever, runtime, queue, requests)
                task_status.started()

    async def _sweep_forever(self, runtime: Runtime, queue: str) -> None:
        await supervise(
            f"Deadline sweeper of {queue}",
            lambda: sweep_forever(runtime, queue, self.config.sweep_interval),
            expected=(RedisError,),
        )

    async def _reclaim_forever(
        self, runtime: Runtime, queue: str, requests: ResumeRequests
    ) -> None:
        await supervise(
            f"Reclaimer of {queue}",
            lambda: self._reclaim_rounds(runtime, queue, requests),
            expected=(RedisError,),
        )

    async def _reclaim_rounds(self, runtime: Runtime, queue: str, requests: ResumeRequests) -> None:
        qkeys = runtime.store.keys.queue(queue)
        # a lapsed lease is seen within a fraction of a second: orphans re-run within lease + 1 s
        interval = max(0.1, min(self.config.lease / 5, RECLAIM_INTERVAL))
        per_recheck = max(1, round(max(0.2, min(self.config.lease / 2, 2.0)) / interval))
        per_sweep = max(1, round(self.config.lease / interval))
        rounds = 0
        while True:
            await anyio.sleep(interval)
            rounds += 1
            await self._reclaim_runs(runtime, queue, qkeys.stream())
            await self._reclaim_requests(runtime, qkeys.resume_requests(), requests)
            if rounds % per_recheck == 0:
                await self.executor.recheck_held(queue)
            if rounds % per_sweep == 0:  # what dead processes left: once per lease
                await self._sweep_the_dead(runtime, queue)

    async def _sweep_the_dead(self, runtime: Runtime, queue: str) -> None:
        """End the runs gone plain processes held; forget dead workers that hold nothing."""
        qkeys = runtime.store.keys.queue(queue)
        await end_orphans(runtime.store, queue)
        await forget_dead(
            runtime.redis,
            [qkeys.stream(), qkeys.resume_requests()],
            workers_key=runtime.store.keys.workers(),
            holders_key=qkeys.holders(),
            infos_key=runtime.store.keys.worker_info(),
            lease_ms=self.config.lease_ms,
        )

    async def _reclaim_runs(self, runtime: Runtime, queue: str, stream: str) -> None:
        """Take over the orphaned entries of ``stream``: each waits for a slot, all at once,
        so they queue together ahead of the consumer's next read (a saturated queue never
        starves them), then is claimed and run."""
        executor, config = self.executor, self.config
        mine = {entry_id for q, entry_id in executor.active if q == queue}
        mine.update(entry_id for q, entry_id in executor.router.held if q == queue)
        candidates = await orphans(
            runtime.redis,
            stream,
            workers_key=runtime.store.keys.workers(),
            me=config.name,
            lease_ms=config.lease_ms,
            mine_active=mine,
        )
        async with anyio.create_task_group() as takeovers:
            for candidate in candidates:
                if candidate.deliveries >= config.max_deliveries:
                    entry = await groups.claim(
                        runtime.redis,
                        stream,
                        config.name,
                        candidate.entry_id,
                        min_idle_ms=config.lease_ms,
                    )
                    if entry is not None:
                        await executor.crash(queue, *entry, candidate.deliveries)
                    continue
                takeovers.start_soon(self._take_over, runtime, queue, stream, candidate)

    async def _take_over(
        self, runtime: Runtime, queue: str, stream: str, candidate: groups.PendingEntry
    ) -> None:
        executor, config = self.executor, self.config
        token = object()
        await executor.limiter.acquire_on_behalf_of(token)
        try:
            entry = await groups.claim(
                runtime.redis, stream, config.name, candidate.entry_id, min_idle_ms=config.lease_ms
            )
        except BaseException:
            executor.limiter.release_on_behalf_of(token)
            raise
        if entry is None:  # another worker took it first
            executor.limiter.release_on_behalf_of(token)
            return
        logger.info(
            "Reclaimed entry %s of %s from %s (delivery %d)",
            candidate.entry_id,
            queue,
            candidate.consumer,
            candidate.deliveries + 1,
        )
        assert self._tg is not None
        self._tg.start_soon(executor.handle, queue, entry[0], entry[1], token, True)

    async def _reclaim_requests(
        self, runtime: Runtime, stream: str, requests: ResumeRequests
    ) -> None:
        candidates = await orphans(
            runtime.redis,
            stream,
            workers_key=runtime.store.keys.workers(),
            me=self.config.name,
            lease_ms=self.config.lease_ms,
            mine_active=(),
        )
        for candidate in candidates:
            entry = await groups.claim(
                runtime.redis,
                stream,
                self.config.name,
                candidate.entry_id,
                min_idle_ms=self.config.lease_ms,
            )
            if entry is not None:
                await requests.handle(*entry)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self._stopping:
                    logger.info("Got %s: stopping (a second signal exits at once)", signum.name)
                    assert self._tg is not None
                    self._tg.start_soon(self.stop)
                    continue
                logger.warning("Got %s again: exiting now, leaving runs pending", signum.name)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                sys.stderr.flush()
                os._exit(1)

    async def stop(self) -> None:
        """Stop taking work, hand in-process pauses off, let runs finish within the grace."""
        if self._stopping:
            return
        self._stopping = True
        executor = self.executor
        assert self._intake is not None
        self._intake.cancel()
        executor.stopping = True
        await executor.hand_off_paused()
        with anyio.move_on_after(self.config.grace):
            await executor.wait_idle()
        if executor.active:
            logger.warning(
                "%d run(s) still running after %.1fs; leaving them pending for another worker",
                len(executor.active),
                self.config.grace,
            )
            executor.abandon_all()
            with anyio.move_on_after(5):
                await executor.wait_idle()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()


async def _consume_runs(
    redis: Redis,
    stream: str,
    worker: Worker,
    handle: EntryHandler,
    runs: TaskGroup,
    *,
    task_status: TaskStatus[None],
) -> None:
    await consume(
        redis,
        stream,
        worker.config.name,
        worker.executor.limiter,
        handle,
        runs,
        block_ms=worker.config.block_ms,
        task_status=task_status,
    )


async def _consume_requests(
    redis: Redis,
    stream: str,
    worker: Worker,
    requests: ResumeRequests,
    *,
    task_status: TaskStatus[None],
) -> None:
    await consume_each(
        redis,
        stream,
        worker.config.name,
        requests.handle,
        block_ms=worker.config.block_ms,
        task_status=task_status,
    )
