"""The worker service: one anyio task group holding every part of the worker but the runs.

Children: the heartbeat; the intake (one reader of all the queue streams, one of all the
resume-request streams, and the reclaimer), which shutdown cancels first; a deadline sweeper
per queue (sharing one watcher of the control streams); and the signal watcher. Each run is
handled in a plain asyncio task held by :class:`RunTasks`, with one cancel scope. Whatever
the number of queues, a worker blocks on three connections (on a cluster, three per hash
slot of its queues), and an idle one sends no command per queue but a deadline sweep per
``sweep_interval`` and a pending-list scan per ``RECLAIM_SAFETY`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError

from flowbus._core.supervisor import supervise
from flowbus._redis.connect import by_slot, close_client
from flowbus._redis.heartbeat import heartbeat
from flowbus._redis.orphans import end_orphans
from flowbus._redis.runtime import Runtime, close_runtime, get_runtime, open_redis
from flowbus.flows import Flow
from flowbus_worker import groups
from flowbus_worker.config import WorkerConfig
from flowbus_worker.consumer import GroupReader, RunIntake, consume_each
from flowbus_worker.executor import Executor
from flowbus_worker.heartbeat import liveness
from flowbus_worker.judges import judge_forever
from flowbus_worker.reclaim import forget_dead, orphans
from flowbus_worker.reclaim_schedule import ReclaimSchedule
from flowbus_worker.resume_requests import ResumeRequests
from flowbus_worker.run_tasks import RunTasks
from flowbus_worker.timers import sweep_forever

logger = logging.getLogger("flowbus.worker")

#: Seconds a stopping worker waits for the acks of runs that ended, before leaving.
ACK_GRACE = 2.0
#: Seconds between scans of the pending lists when no worker's beat lapsed or vanished.
RECLAIM_SAFETY = 300.0


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
        self._runs = RunTasks()
        self._intakes: list[RunIntake] = []
        #: The streams of each blocking read: of runs, then of resume requests.
        self._readers: list[list[list[str]]] = []
        self._reclaims = ReclaimSchedule(config.lease_ms, RECLAIM_SAFETY)

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
        keys = runtime.store.keys
        # one blocking read for all runs, one for all resume requests (per slot on a cluster)
        queues = [keys.queue(q) for q in self.config.queues]
        self._readers = [
            by_slot(runtime.redis, [q.stream() for q in queues]),
            by_slot(runtime.redis, [q.resume_requests() for q in queues]),
        ]
        # each read holds its connection while it blocks, apart from the command pool
        blocking = open_redis(
            runtime.url, runtime.settings, max_connections=sum(map(len, self._readers))
        )
        self._executor = Executor(runtime, self.flows, self.config, self._reclaims.left_pending)
        self._intake = anyio.CancelScope()
        workers_key = runtime.store.keys.workers()
        try:
            await self._beat(runtime, workers_key)
            await runtime.redis.hset(
                runtime.store.keys.worker_info(), self.config.name, self.describe()
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._watch_signals)  # first: a stop during start-up is graceful
                await runtime.waiters.watch(
                    [runtime.store.keys.queue(q).control() for q in self.config.queues]
                )
                for queue in self.config.queues:
                    await tg.start(self._sweep_forever, runtime, queue)
                    tg.start_soon(self._judge_forever, runtime, queue)
                await tg.start(self._run_intake, runtime, blocking)
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
                await self._runs.aclose()
                await self._leave(runtime, blocking, workers_key)
        return self.exit_code

    async def _beat(self, runtime: Runtime, workers_key: str) -> None:
        """Join the process's heartbeat (a thread: a blocked loop does not lapse the lease) as
        this worker; the first beat is in Redis before the worker takes any work. A queue's
        lease is written by the first claim there (an idle queue is never beaten)."""
        beat = heartbeat()
        config = self.config
        beat.configure(name=config.name, lease_ms=config.lease_ms, interval=config.heartbeat)
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
        assert self._intake is not None
        executor, config = self.executor, self.config
        keys = runtime.store.keys
        queue_of = {keys.queue(q).stream(): q for q in config.queues}
        requests = {
            keys.queue(q).resume_requests(): ResumeRequests(runtime, q) for q in config.queues
        }

        async def handle_run(
            stream: str, entry_id: str, fields: dict[str, str], token: object
        ) -> None:
            await executor.handle(queue_of[stream], entry_id, fields, token, False)

        async def handle_request(stream: str, entry_id: str, fields: dict[str, str]) -> None:
            await requests[stream].handle(entry_id, fields)

        run_streams, request_streams = self._readers
        self._intakes = [
            RunIntake(
                GroupReader(
                    blocking, streams, config.name, config.block_ms, self._reclaims.left_pending
                ),
                executor.limiter,
                handle_run,
                self._runs,
            )
            for streams in run_streams
        ]
        started = False
        with self._intake:
            async with anyio.create_task_group() as intake:
                for run_intake in self._intakes:
                    await intake.start(run_intake.run)
                for streams in request_streams:
                    reader = GroupReader(blocking, streams, config.name, config.block_ms)
                    await intake.start(consume_each, reader, handle_request)
                await intake.start(self._reclaim_forever, runtime, requests)
                task_status.started()
                started = True
        if not started:  # stopped while starting
            task_status.started()

    async def _sweep_forever(
        self, runtime: Runtime, queue: str, *, task_status: TaskStatus[None]
    ) -> None:
        waiting = [task_status]  # ready after the first sweep (done or failed)

        def swept() -> None:
            if waiting:
                waiting.pop().started()

        async def sweeping() -> None:
            try:
                await sweep_forever(runtime, queue, self.config.sweep_interval, swept)
            except Exception:
                swept()  # a failed first sweep does not hold the worker's start
                raise

        await supervise(f"Deadline sweeper of {queue}", sweeping, expected=(RedisError,))

    async def _judge_forever(self, runtime: Runtime, queue: str) -> None:
        while True:
            try:
                await judge_forever(runtime, queue)
            except RedisError as exc:
                logger.warning("Judging resume input of %s failed: %s; retrying", queue, exc)
                await anyio.sleep(1)

    async def _reclaim_forever(
        self,
        runtime: Runtime,
        requests: Mapping[str, ResumeRequests],
        *,
        task_status: TaskStatus[None],
    ) -> None:
        """Tick by tick, read who is alive; scan every queue when something changed."""
        waiting = [task_status]  # ready after the first round (done or failed)

        def ready() -> None:
            if waiting:
                waiting.pop().started()

        async def rounds() -> None:
            try:
                await self._reclaim_rounds(runtime, requests, ready)
            except Exception:
                ready()
                raise

        await supervise("Reclaimer", rounds, expected=(RedisError,))

    async def _reclaim_rounds(
        self, runtime: Runtime, requests: Mapping[str, ResumeRequests], ready: Callable[[], None]
    ) -> None:
        keys, schedule = runtime.store.keys, self._reclaims
        # a lapsed lease is seen within a quarter lease (at most 1 s), whatever the queues
        interval = max(0.1, min(self.config.lease / 4, 1.0))
        while True:
            alive, handed = await liveness(
                runtime.redis, keys, self.config.name, self.config.lease_ms
            )
            schedule.observe(alive, anyio.current_time())
            schedule.handed(handed, anyio.current_time())
            if schedule.take(anyio.current_time()):
                await self._scan(runtime, requests, alive)
            for queue in self.config.queues:  # entries kept here for a worker with their flow
                await self.executor.recheck_held(queue)
            ready()
            await anyio.sleep(interval)

    async def _scan(
        self, runtime: Runtime, requests: Mapping[str, ResumeRequests], alive: Mapping[str, bool]
    ) -> None:
        """Take over what dead processes left in every queue served here, then forget them."""
        keys = runtime.store.keys
        for queue in self.config.queues:
            qkeys = keys.queue(queue)
            await self._reclaim_runs(runtime, queue, qkeys.stream())
            await self._reclaim_requests(
                runtime, qkeys.resume_requests(), requests[qkeys.resume_requests()]
            )
            await end_orphans(runtime.store, queue)
            holding = await forget_dead(
                runtime.redis,
                [qkeys.stream(), qkeys.resume_requests()],
                workers_key=keys.workers(),
                holders_key=qkeys.holders(),
                infos_key=keys.worker_info(),
                lease_ms=self.config.lease_ms,
            )
            if holding:  # e.g. a consumer that never beat: its entries idle a lease first
                self._reclaims.left_pending(anyio.current_time())
        gone = [name for name, live in alive.items() if not live and name.startswith("holder ")]
        if gone:  # their runs here are ended: out of the registry
            await runtime.redis.hdel(keys.holders(), *(n.removeprefix("holder ") for n in gone))

    async def _reclaim_runs(self, runtime: Runtime, queue: str, stream: str) -> None:
        """Take over the orphaned entries of ``stream``: each waits for a slot, all at once,
        so they queue together ahead of the consumer's next read (a saturated queue never
        starves them), then is claimed and run."""
        executor, config = self.executor, self.config
        mine = {entry_id for q, entry_id in executor.active if q == queue}
        mine.update(entry_id for q, entry_id in executor.router.held if q == queue)
        for run_intake in self._intakes:
            mine |= run_intake.held_in(stream)
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
        self._runs.start(executor.handle(queue, entry[0], entry[1], token, True))

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
        # a run that just ended (or was handed off) still acknowledges its entry
        with anyio.move_on_after(ACK_GRACE):
            await self._runs.join()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
