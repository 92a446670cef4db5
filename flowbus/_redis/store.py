"""The run store: flow runs, their states, task results and deployments in Redis."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from redis.asyncio import Redis

from flowbus._core.codec import blob, datetime_to_ms, decode, encode, ms_to_datetime, text
from flowbus._redis.autopipeline import Commands
from flowbus._redis.connect import id_beside
from flowbus._redis.heartbeat import Leases
from flowbus._redis.keys import Keys, RunKeys
from flowbus._redis.replies import Reply, Status
from flowbus._redis.scripts import Scripts
from flowbus.exceptions import (
    FlowRunNotFound,
    InvalidStateTransition,
    MalformedEntry,
)
from flowbus.models import FlowRun
from flowbus.settings import Settings
from flowbus.states import FINAL_TYPES, State, StateDetails, StateType

#: Approximate cap of the stream announcing queues (``Keys.queues_added``), in entries.
QUEUE_NEWS_MAXLEN = 1000

#: The message of the FAILED state an expired pause leaves (Prefect's; NEVER_RESUMED in
#: lua/_prelude.lua, which writes it).
NEVER_RESUMED = "The flow was paused and never resumed."
#: Run ids whose queue this process knows; a run never changes queue.
_QUEUE_CACHE_SIZE = 100_000
#: Runs whose pause schema this process keeps (a resumer's guess at a run's next pause).
_SCHEMA_CACHE_SIZE = 1000
#: Most run ids read from a queue's index at once when listing runs.
_READ_PAGE = 1000
#: What a record built from a script's reply has set: every field. pydantic keeps a set per
#: record (700 bytes for these); built records share one, which already names every field,
#: so assigning a field later adds nothing to it.
_EVERY_RUN_FIELD = set(FlowRun.model_fields)
_EVERY_STATE_FIELD = set(State.model_fields)
_RUN_OF_DETAILS = {"flow_run_id"}


def _uuid_or_none(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def pause_expired(state_type: str, message: str) -> bool:
    """Whether a run in this state failed because its pause expired."""
    return state_type == StateType.FAILED and message == NEVER_RESUMED


def state_from_fields(fields: Mapping[str, str], run_id: UUID | None = None) -> State:
    """Build a :class:`State` from the run hash's (or an event's) flat fields (``run_id``:
    the run's id when the caller parsed it already).

    Every value is converted here; the models still validate them: pydantic's compiled
    validation of such small models is quicker than ``model_construct``, which loops over the
    fields in Python.
    """
    pause_key = fields.get("pause_key") or None
    timeout_ms = fields.get("pause_timeout_ms")
    prefix = fields.get("input_prefix")
    keyset = (
        {
            "schema": f"{prefix}-schema",
            "response": f"{prefix}-response",
            "description": f"{prefix}-description",
        }
        if prefix
        else None
    )
    scheduled_ms = fields.get("scheduled_ms")
    details = StateDetails(
        pause_key=pause_key,
        pause_timeout=ms_to_datetime(int(timeout_ms)) if timeout_ms else None,
        pause_reschedule=fields.get("pause_reschedule") == "1",
        run_input_keyset=keyset,
        scheduled_time=ms_to_datetime(int(scheduled_ms)) if scheduled_ms else None,
        flow_run_id=run_id or _uuid_or_none(fields.get("id") or fields.get("run_id")),
    )
    return State(
        type=StateType(fields["state_type"]),
        name=fields.get("state_name", ""),
        message=fields.get("state_message") or None,
        timestamp=ms_to_datetime(int(fields.get("state_ts") or 0)),
        state_details=details,
    )


#: Fields of a run hash that hold bytes, not text.
_BINARY_FIELDS = (b"parameters", b"result")


def _text_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """The hash's text fields, decoded (by ``text`` only if some value is not bytes)."""
    try:
        return {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in raw.items()
            if k not in _BINARY_FIELDS
        }
    except AttributeError:
        return {text(k): text(v) for k, v in raw.items() if k not in _BINARY_FIELDS}


def run_from_hash(raw: Mapping[Any, Any], keys: RunKeys) -> FlowRun:
    """Parse the hash of the run of ``keys`` (its id and queue are its key's; a hash written
    by an earlier version holds them as fields too); raise :class:`MalformedEntry` if it is
    not one of ours."""
    fields = _text_fields(raw)
    try:
        params = decode(blob(raw[b"parameters"])) if raw.get(b"parameters") else {}
        run_id = UUID(keys.run_id)
        return FlowRun(
            id=run_id,
            name=fields.get("name", ""),
            flow_name=fields["flow_name"],
            queue=keys.queue,
            deployment_id=UUID(fields["deployment_id"]) if fields.get("deployment_id") else None,
            parent_flow_run_id=UUID(fields["parent_id"]) if fields.get("parent_id") else None,
            parameters=params,
            state=state_from_fields(fields, run_id),
            run_count=int(fields.get("run_count") or 0),
            created=ms_to_datetime(int(fields.get("created_ms") or 0)),
        )
    except (KeyError, ValueError, OverflowError, OSError) as exc:  # OSError: a time too large
        raise MalformedEntry("run hash", str(exc), fields) from exc


def _is_uuid(raw: bytes) -> bool:
    try:
        UUID(text(raw))
    except ValueError:
        return False
    return True


def _ms(score: float) -> int:
    """A sorted set's score as milliseconds (scores may be ``inf``)."""
    return int(score) if math.isfinite(score) else (sys.maxsize if score > 0 else 0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A worker's delivery of a queue entry, acknowledged by the run's final transition."""

    group: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class PauseView:
    state_type: str
    state_name: str
    pause_key: str
    input_prefix: str
    schema: str
    message: str = ""
    #: The pause's input has validators the JSON schema cannot express: its owner judges it.
    judged: bool = False

    @property
    def expired(self) -> bool:
        return pause_expired(self.state_type, self.message)


@dataclass(frozen=True, slots=True)
class ResumeView:
    state_type: str
    state_name: str
    message: str
    fired: bool
    response: Any

    @property
    def expired(self) -> bool:
        return pause_expired(self.state_type, self.message)


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
        #: The schema of each run's pause this process saw last, by run id: what a resume
        #: checks its input against first (it names it, so a stale one costs a round trip).
        self._schemas: dict[str, str] = {}
        #: The queues of the runs this process found, while there is one (then two: a run it
        #: does not know is looked for in the one queue it ever found runs in, see guess_keys).
        self._queues_found: set[str] = set()

    # -- runs ---------------------------------------------------------------------------

    async def queue_of(self, run_id: UUID | str) -> str:
        """The queue a run lives in; :class:`FlowRunNotFound` if there is no such run."""
        return (await self.run_keys(run_id)).queue

    def _remember(self, run_id: str, keys: RunKeys) -> RunKeys:
        if len(self._runs) >= _QUEUE_CACHE_SIZE:
            self._runs.clear()
        self._runs[run_id] = keys
        if len(self._queues_found) < 2:
            self._queues_found.add(keys.queue)
        return keys

    def guess_keys(self, run_id: UUID | str) -> RunKeys | None:
        """For a run this process does not know, its keys in the one queue this process ever
        found runs in (most serve one): a guess that saves reading the run's index, which a
        script call tests (a wrong one finds no run and writes nothing; then :meth:`found`
        is not called). None when the run is known (:meth:`run_keys` has it) or no single
        queue is."""
        rid = str(run_id)
        if rid in self._runs or len(self._queues_found) != 1:
            return None
        (queue,) = self._queues_found
        return self.keys.queue(queue).run(rid)

    def found(self, keys: RunKeys) -> None:
        """A script call found the run at keys :meth:`guess_keys` guessed."""
        self._remember(keys.run_id, keys)

    async def run_keys(self, run_id: UUID | str) -> RunKeys:
        """The keys of a run; :class:`FlowRunNotFound` if there is no such run."""
        rid = str(run_id)
        keys = self._runs.get(rid)
        if keys is None:
            raw = await self.redis.get(self.keys.run_index(rid))
            if raw is None:
                raise FlowRunNotFound(rid)
            keys = self._remember(rid, self.keys.queue(text(raw)).run(rid))
        return keys

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
        rid = run_id or id_beside(self.redis, queue_keys.tag, self.keys.run_index)
        run_keys = queue_keys.run(rid)
        params = encode(
            dict(parameters or {}), limit=self.settings.max_payload_bytes, what="parameters"
        )
        new_queue = queue not in self._known_queues
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

        replies = await self.scripts.pipeline(build)
        indexed, reply = replies[0], call.reply(replies[-1:])
        self._known_queues.add(queue)
        if not reply.accepted:
            # the index was ours (set now, or by the first send of a pipeline resent after
            # NOSCRIPT) unless a run of that id exists: leave no trace of a run not created
            if indexed or not await self.redis.exists(run_keys.run):
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
        first, which saves the index lookup.
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
        return run_from_hash(reply.run_hash, keys), reply.accepted

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

    async def read_runs(
        self,
        *,
        queue: str | None = None,
        flow_name: str | None = None,
        state_types: Iterable[StateType] | None = None,
        limit: int = 100,
    ) -> list[FlowRun]:
        """Runs newest first, filtered by queue, flow and state kind."""
        queues = (
            [queue]
            if queue
            else sorted(text(q) for q in await self.redis.smembers(self.keys.queues()))
        )
        wanted = set(state_types) if state_types is not None else None

        def keep(run: FlowRun) -> bool:
            if flow_name and run.flow_name != flow_name:
                return False
            return wanted is None or run.state.type in wanted

        runs: list[FlowRun] = []
        for q in queues:
            runs += await self._newest_runs(q, keep, limit)
        runs.sort(key=lambda r: r.created, reverse=True)
        return runs[:limit]

    async def _newest_runs(
        self, queue: str, keep: Callable[[FlowRun], bool], limit: int
    ) -> list[FlowRun]:
        """Up to ``limit`` runs of ``queue`` that ``keep`` accepts, newest first, read page by
        page so a queue of millions of runs costs only the pages needed; ids of expired runs
        are dropped from the queue's index on the way."""
        qkeys = self.keys.queue(queue)
        page = min(max(limit, 100), _READ_PAGE)
        found: list[FlowRun] = []
        seen: set[str] = set()  # runs created meanwhile shift the pages: never list one twice
        start = 0
        while len(found) < limit:
            chunk = await self.redis.zrevrange(qkeys.runs(), start, start + page - 1)
            if not chunk:
                break
            start += len(chunk)
            ids = [rid for rid in map(text, chunk) if rid not in seen]
            seen.update(ids)
            pipe = self.redis.pipeline(transaction=False)
            listed = [qkeys.run(rid) for rid in ids]
            for keys in listed:
                pipe.hgetall(keys.run)
            gone: list[str] = []
            for keys, raw in zip(listed, await pipe.execute(), strict=True):
                if not raw:
                    gone.append(keys.run_id)
                elif keep(run := run_from_hash(raw, keys)):
                    found.append(self.with_result_source(run))
            if gone:
                await self.redis.zrem(qkeys.runs(), *gone)
                start -= len(gone)  # they no longer take places in the index
        return found[:limit]

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
        state's run keys expire; its index, in another slot, is expired in the same round trip.
        """
        keys = await self.run_keys(run_id)
        final = state.is_final()
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
            if final:
                pipe.execute_command("EXPIRE", keys.index, self.settings.retention_seconds)

        reply = call.reply(await self.scripts.pipeline(build))
        if reply.status is Status.NOT_FOUND:
            raise FlowRunNotFound(run_id)
        refused_while_live = final and not reply.accepted and reply.state_type not in FINAL_TYPES
        if (retry and reply.accepted) or refused_while_live:
            await self.redis.persist(keys.index)
        return reply

    def schema_seen(self, run_id: UUID | str) -> str | None:
        """The schema of the run's pause this process saw last (None: none seen)."""
        return self._schemas.get(str(run_id))

    def saw_schema(self, run_id: UUID | str, schema: str) -> None:
        if len(self._schemas) >= _SCHEMA_CACHE_SIZE:
            self._schemas.clear()
        self._schemas[str(run_id)] = schema

    async def pause_view(self, run_id: UUID | str) -> PauseView:
        """What a resumer must know: state, pause key and the schema stored by the pause."""
        keys = await self.run_keys(run_id)
        names = ["state_type", "state_name", "pause_key", "input_prefix", "state_message"]
        fields = await self.redis.hmget(keys.run, [*names, "input_judged"])
        if fields[0] is None:
            raise FlowRunNotFound(run_id)
        state_type, state_name, pause_key, prefix, message, judged = (text(f) for f in fields)
        schema = await self.redis.hget(keys.input, f"{prefix}-schema") if prefix else None
        if schema:
            self.saw_schema(run_id, text(schema))
        return PauseView(
            state_type,
            state_name,
            pause_key,
            prefix,
            text(schema) if schema else "",
            message,
            judged == "1",
        )

    async def resumed_input(self, run_id: UUID | str, pause_key: str, prefix: str) -> ResumeView:
        """After a wake-up: the run's state, whether ``pause_key`` fired, and its input."""
        keys = await self.run_keys(run_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.run, ["state_type", "state_name", "state_message"])
        pipe.sismember(keys.fired, pause_key)
        pipe.hget(keys.input, f"{prefix}-response")
        (state_type, state_name, message), fired, response = await pipe.execute()
        return ResumeView(
            text(state_type),
            text(state_name),
            text(message),
            bool(fired),
            None if response is None else decode(blob(response)),
        )

    async def earliest_deadlines(self, queue: str, count: int) -> list[tuple[str, int]]:
        """The ``count`` earliest (run id, deadline ms) of ``queue``'s deadline set.

        Members that are no run id (anyone can ``ZADD``) are dropped from the set on the way,
        so they cannot stay first forever; a deadline at infinity is the largest integer.
        """
        deadlines = self.keys.queue(queue).deadlines()
        raw = await self.redis.zrange(deadlines, 0, count - 1, withscores=True)
        pairs = cast("list[tuple[bytes, float]]", raw)  # withscores=True: (member, score)
        found = [(text(member), _ms(score)) for member, score in pairs if _is_uuid(member)]
        junk = [member for member, _score in pairs if not _is_uuid(member)]
        if junk:
            await self.redis.zrem(deadlines, *junk)
        return found

    # -- task results --------------------------------------------------------------------

    async def save_task_results(
        self, run_id: UUID | str, results: Mapping[str, bytes], *, attempt: int | None = None
    ) -> bool:
        """Write task results; False when the execution ``attempt`` was superseded (fenced:
        nothing written)."""
        if not results:
            return True
        keys = await self.run_keys(run_id)
        reply = await self.scripts.save_results(keys, results, attempt=attempt)
        return reply.status is not Status.STALE

    async def attempt_of(self, run_id: UUID | str) -> str:
        """The fencing token of the run's current execution ("" if none started)."""
        keys = await self.run_keys(run_id)
        return text(await self.redis.hget(keys.run, "attempt") or b"")

    async def load_task_results(self, run_id: UUID | str) -> dict[str, bytes]:
        keys = await self.run_keys(run_id)
        raw = await self.redis.hgetall(keys.results)
        return {text(k): blob(v) for k, v in raw.items()}
