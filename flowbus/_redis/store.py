"""The run store: a run's keys, its creation, reads, claim and state changes, and its task
results, in Redis."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from flowbus._core.codec import blob, datetime_to_ms, decode, encode, ms_to_datetime, text
from flowbus._redis.autopipeline import Commands
from flowbus._redis.heartbeat import Leases
from flowbus._redis.keys import Keys, RunKeys, is_queue_name
from flowbus._redis.pauses import SeenSchemas
from flowbus._redis.records import run_from_hash, task_results_of
from flowbus._redis.replies import Reply, Status
from flowbus._redis.run_ids import QueuesByHint, hint_of, new_run_id
from flowbus._redis.scripts import Scripts
from flowbus.exceptions import FlowRunNotFound, InvalidStateTransition
from flowbus.models import FlowRun
from flowbus.settings import Settings
from flowbus.states import FINAL_TYPES, State, StateDetails, StateType

logger = logging.getLogger("flowbus")

#: Approximate cap of the stream announcing queues (``Keys.queues_added``), in entries.
QUEUE_NEWS_MAXLEN = 1000

#: Run ids whose queue this process knows; a run never changes queue.
_QUEUE_CACHE_SIZE = 100_000
#: What a record built from a script's reply has set: every field. pydantic keeps a set per
#: record (700 bytes for these); built records share one, which already names every field,
#: so assigning a field later adds nothing to it.
_EVERY_RUN_FIELD = set(FlowRun.model_fields)
_EVERY_STATE_FIELD = set(State.model_fields)
_RUN_OF_DETAILS = {"flow_run_id"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """A worker's delivery of a queue entry, acknowledged by the run's final transition."""

    group: str
    entry_id: str


class ResultSource:
    """Reads a run's persisted result; equal for the same run, so states still compare."""

    __slots__ = ("run_id", "store")

    def __init__(self, store: RunStore, run_id: UUID) -> None:
        self.store = store
        self.run_id = run_id

    def __call__(self) -> Coroutine[Any, Any, Any]:
        return self.store.read_result(self.run_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultSource) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)


class RunStore:
    """Reads and atomic writes of runs; every state change goes through a Lua script."""

    def __init__(self, redis: Redis, settings: Settings, leases: Leases | None = None) -> None:
        self.redis = redis
        self.settings = settings
        #: This process as the holder of the runs it starts (none: runs name no holder).
        self.leases = leases
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(redis, settings)
        #: Keys of the runs seen lately, by run id (a run never changes queue).
        self._runs: dict[str, RunKeys] = {}
        #: Queues this store has added to the set of queues (once is enough).
        self._known_queues: set[str] = set()
        #: The schema of each run's pause this process saw last.
        self.schemas = SeenSchemas()
        #: Every queue as last read, by hint: where a run this process does not know is.
        self._hinted = QueuesByHint()
        #: The id whose hint the set of queues, read for it just now, named no queue of (a
        #: guess read it: its lookup reads it no second time).
        self._unhinted: str | None = None

    # -- runs ---------------------------------------------------------------------------

    async def queue_of(self, run_id: UUID | str) -> str:
        """The queue a run lives in; :class:`FlowRunNotFound` if there is no such run."""
        return (await self.run_keys(run_id)).queue

    def _remember(self, run_id: str, keys: RunKeys) -> RunKeys:
        if len(self._runs) >= _QUEUE_CACHE_SIZE:
            self._runs.clear()
        self._runs[run_id] = keys
        return keys

    async def guess_keys(self, run_id: UUID | str) -> RunKeys | None:
        """For a run this process does not know, its keys in the one known queue its id's
        hint names: a guess that saves looking the run up, which a script call tests (a wrong
        one finds no run and writes nothing; then :meth:`found` is not called). The set of
        queues is read first when the hint names none (a process that knows none yet, or a
        queue born since). None when the run is known (:meth:`run_keys` has it) or its hint
        names no single queue."""
        rid = str(run_id)
        if rid in self._runs:
            return None
        hint = hint_of(rid)
        if hint is not None and not self._hinted.named(hint):
            await self._read_queues()
            self._unhinted = None if self._hinted.named(hint) else rid
        queues = self._hinted.named(hint)
        return self.keys.queue(queues[0]).run(rid) if len(queues) == 1 else None

    def found(self, keys: RunKeys) -> None:
        """A script call found the run at keys :meth:`guess_keys` guessed."""
        self._remember(keys.run_id, keys)

    async def run_keys(self, run_id: UUID | str) -> RunKeys:
        """The keys of a run; :class:`FlowRunNotFound` if there is no such run."""
        rid = str(run_id)
        keys = self._runs.get(rid)
        if keys is None:
            keys = self._remember(rid, await self._find(rid))
        return keys

    async def _find(self, rid: str) -> RunKeys:
        """The keys of a run this process does not know: in a known queue its id's hint names
        (the set of queues read again when it names none: a queue born since), else where
        its index says (an id its creator chose); :class:`FlowRunNotFound` if neither."""
        hint = hint_of(rid)
        if hint is not None:
            if not self._hinted.named(hint) and self._unhinted != rid:
                await self._read_queues()
            self._unhinted = None
            found = await self._holding(rid, self._hinted.named(hint))
            if found is not None:
                return found
        raw = await self.redis.get(self.keys.run_index(rid))
        if raw is None:
            raise FlowRunNotFound(rid)
        return self.keys.queue(text(raw)).run(rid)

    async def _read_queues(self) -> None:
        """Read the set of every queue (each is added by the first run created on it)."""
        names = (text(raw) for raw in await self.redis.smembers(self.keys.queues()))
        self._hinted.fill(name for name in names if is_queue_name(name))

    async def _holding(self, rid: str, queues: tuple[str, ...]) -> RunKeys | None:
        """The keys of ``rid`` in the first of ``queues`` that holds its hash (several only
        when their hints collide: all asked in one round trip)."""
        candidates = [self.keys.queue(queue).run(rid) for queue in queues]
        if not candidates:
            return None

        def build(pipe: Commands) -> None:
            for keys in candidates:
                pipe.execute_command("EXISTS", keys.run)

        held = await self.scripts.pipeline(build)
        return next((keys for keys, n in zip(candidates, held, strict=True) if n), None)

    async def create_run(
        self,
        flow_name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        name: str | None = None,
        deployment_id: UUID | None = None,
        parent_id: UUID | None = None,
        initial: StateType = StateType.SCHEDULED,
        enqueue: bool = False,
        scheduled_time: datetime | None = None,
        run_id: UUID | None = None,
        start: bool = False,
    ) -> FlowRun:
        """Create a run (and its first event); ``enqueue`` hands it to the queue's workers.

        ``start`` moves it on to RUNNING at once, for a run its creator executes.
        """
        queue_keys = self.keys.queue(queue)  # ValueError for a bad queue name
        rid = run_id or new_run_id(queue)
        run_keys = queue_keys.run(rid)
        # only an id chosen by the caller may lack its queue's hint: see run_ids
        indexed = run_id is not None and run_keys.indexed
        params = encode(
            dict(parameters or {}), limit=self.settings.max_payload_bytes, what="parameters"
        )
        # a queue is announced once by its first create: concurrent creates on it do not
        # announce it again (nor lose their merging with each other, see merged_calls)
        new_queue = queue not in self._known_queues
        self._known_queues.add(queue)
        holder, first_lease = self.holding(run_keys) if start else ("", "")
        call = self.scripts.create_run(
            run_keys,
            flow_name=flow_name,
            name=name or f"{flow_name}-{str(rid)[:8]}",
            deployment_id=str(deployment_id or ""),
            parameters=params,
            initial=initial.value,
            enqueue=enqueue,
            parent_id=str(parent_id or ""),
            scheduled_ms=None if scheduled_time is None else datetime_to_ms(scheduled_time),
            start=start,
            holder=holder,
            first_lease=first_lease,
        )

        def build(pipe: Commands) -> None:
            if indexed:
                pipe.execute_command("SET", run_keys.index, queue, "NX")
            if new_queue:
                pipe.execute_command("SADD", self.keys.queues(), queue)
                pipe.execute_command(
                    "XADD",
                    self.keys.queues_added(),
                    "MAXLEN",
                    "~",
                    QUEUE_NEWS_MAXLEN,
                    "*",
                    "queue",
                    queue,
                )
            call.add(pipe)

        try:
            replies = await self.scripts.pipeline(build)
        except BaseException:
            if new_queue:  # not announced: the next create on the queue announces it
                self._known_queues.discard(queue)
            raise
        reply = call.reply(replies[-1:])
        if not reply.accepted:
            # the index was ours (set now, or by the first send of a pipeline resent after
            # NOSCRIPT) unless a run of that id exists: leave no trace of a run not created
            if indexed and (replies[0] or not await self.redis.exists(run_keys.run)):
                await self.redis.delete(run_keys.index)
            raise InvalidStateTransition(rid, reply.detail)
        self._remember(run_keys.run_id, run_keys)
        run_name = name or f"{flow_name}-{str(rid)[:8]}"
        created = ms_to_datetime(reply.created_ms or 0)
        # what the script wrote (already valid): neither read back nor validated again
        run = FlowRun.model_construct(
            _EVERY_RUN_FIELD,
            id=rid,
            name=run_name,
            flow_name=flow_name,
            queue=queue,
            deployment_id=deployment_id,
            parent_flow_run_id=parent_id,
            parameters=dict(parameters or {}),
            state=State.model_construct(
                _EVERY_STATE_FIELD,
                type=StateType(reply.state_type),
                name=reply.state_name,
                message=None,
                timestamp=created,
                state_details=StateDetails.model_construct(_RUN_OF_DETAILS, flow_run_id=rid),
            ),
            run_count=reply.run_count,
            created=created,
        )
        return self.with_result_source(run)

    async def read_run(self, run_id: UUID | str, *, queue: str | None = None) -> FlowRun:
        """The run as stored now; :class:`FlowRunNotFound` if unknown or expired.

        ``queue`` is where the caller found the run (a worker, from a queue stream): trusted
        first, which saves looking the run up.
        """
        rid = str(run_id)
        if queue is not None and rid not in self._runs:
            found = self.keys.queue(queue).run(rid)
            raw = await self.redis.hgetall(found.run)
            if raw:
                self._remember(rid, found)
                return self.with_result_source(run_from_hash(raw, found))
        keys = await self.run_keys(rid)
        raw = await self.redis.hgetall(keys.run)
        if not raw:
            raise FlowRunNotFound(run_id)
        return self.with_result_source(run_from_hash(raw, keys))

    def with_result_source(self, run: FlowRun) -> FlowRun:
        """``run`` whose completed state's ``result()`` reads the persisted result, as a
        Prefect state read from the API does."""
        run.state.with_source(ResultSource(self, run.id))
        return run

    async def claim_run(
        self, run_id: UUID | str, queue: str, *, flow: str = ""
    ) -> tuple[FlowRun | None, bool]:
        """A worker's one step: start the run if it waits, and read it; ``(None, False)`` if
        ``queue`` holds no such run. The flag says whether this call started it; a run of
        another flow than ``flow`` (when given) is not started.
        """
        rid = str(run_id)
        keys = self._runs.get(rid)
        if keys is None or keys.queue != queue:
            keys = self.keys.queue(queue).run(rid)
        holder, first_lease = self.holding(keys)
        reply = await self.scripts.claim_run(
            keys, holder=holder, first_lease=first_lease, flow=flow
        )
        if reply.status is Status.NOT_FOUND:
            return None, False
        self._remember(rid, keys)
        return run_from_hash(reply.run_hash, keys, reply.started), reply.accepted

    def holding(self, keys: RunKeys) -> tuple[str, str]:
        """The holder name and first lease a script starting a run of ``keys`` writes."""
        if self.leases is None:
            return "", ""
        return self.leases.name, self.leases.first_lease(keys.holders)

    async def read_result(self, run_id: UUID | str) -> Any:
        """The decoded return value of a completed run (``None`` if it returned nothing)."""
        keys = await self.run_keys(run_id)
        raw = await self.redis.hget(keys.run, "result")
        return None if raw is None else decode(blob(raw))

    async def set_state(
        self,
        run_id: UUID | str,
        state: State,
        *,
        retry: bool = False,
        result: bytes | None = None,
        expect: StateType | None = None,
        enqueue: bool = False,
        ack: Delivery | None = None,
        attempt: int | None = None,
        task_results: Mapping[str, bytes] | None = None,
    ) -> Reply:
        """Propose ``state``; the reply says whether the rules accepted it (nothing raised).

        ``ack`` acknowledges a worker's queue delivery in the same step, and ``task_results``
        are written with it; ``attempt`` is the proposing execution's fencing token. A final
        state's run keys expire; the index of a run that has one (:attr:`RunKeys.indexed`), in
        another slot, is expired in the same round trip.
        """
        keys = await self.run_keys(run_id)
        final = state.is_final()
        indexed = (final or retry) and keys.indexed  # only those touch the index
        call = self.scripts.set_state(
            keys,
            kind=state.type.value,
            name=state.name,
            message=state.message or "",
            retry=retry,
            result=result,
            expect=expect.value if expect else None,
            enqueue=enqueue,
            ack_group=ack.group if ack else "",
            ack_entry_id=ack.entry_id if ack else "",
            attempt=attempt,
            task_results=task_results,
        )

        def build(pipe: Commands) -> None:
            call.add(pipe)
            if final and indexed:
                pipe.execute_command("EXPIRE", keys.index, self.settings.retention_seconds)

        reply = call.reply(await self.scripts.pipeline(build))
        if reply.status is Status.NOT_FOUND:
            raise FlowRunNotFound(run_id)
        refused_while_live = final and not reply.accepted and reply.state_type not in FINAL_TYPES
        if indexed and ((retry and reply.accepted) or refused_while_live):
            await self.redis.persist(keys.index)
        return reply

    # -- task results --------------------------------------------------------------------

    async def save_task_results(
        self, run_id: UUID | str, results: Mapping[str, bytes], *, attempt: int | None = None
    ) -> bool:
        """Write task results; False when the execution ``attempt`` was superseded (fenced:
        nothing written). A run that is gone (deleted while it executes) keeps nothing, which
        the log says: nothing else would."""
        if not results:
            return True
        keys = await self.run_keys(run_id)
        reply = await self.scripts.save_results(keys, results, attempt=attempt)
        if reply.status is Status.NOT_FOUND:
            logger.warning(
                "Flow run %s is gone: its %d task result(s) were not kept", run_id, len(results)
            )
        return reply.status is not Status.STALE

    async def attempt_of(self, run_id: UUID | str) -> str:
        """The fencing token of the run's current execution ("" if none started)."""
        keys = await self.run_keys(run_id)
        return text(await self.redis.hget(keys.run, "attempt") or b"")

    async def load_task_results(self, run_id: UUID | str) -> dict[str, bytes]:
        keys = await self.run_keys(run_id)
        return task_results_of(await self.redis.hgetall(keys.run))
