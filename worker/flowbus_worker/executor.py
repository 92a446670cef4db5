"""Executing runs taken from a queue stream: a slot, a cancel scope and one ack per run.

An entry is acknowledged once its run rests: final, suspended, handed off as a suspension at
shutdown, or found to belong to nobody (a duplicate, a run another worker owns). A run whose
execution is abandoned (shutdown past the grace period, Redis lost) stays pending, for the
reclaimer of a live worker to take over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import anyio
from redis.exceptions import RedisError, ResponseError

from flowbus._core.supervisor import spawn
from flowbus._engine.engine import FlowEngine
from flowbus._redis.runtime import Runtime
from flowbus._redis.store import Delivery
from flowbus.exceptions import (
    FlowRunNotFound,
    InvalidStateTransition,
    MalformedEntry,
    SerializationError,
    StaleExecution,
)
from flowbus.flows import Flow
from flowbus.models import FlowRun
from flowbus.states import Cancelled, Crashed, Failed, Scheduled, State, StateType
from flowbus_worker import groups
from flowbus_worker.config import WorkerConfig
from flowbus_worker.logs import log_transition, runs_logger
from flowbus_worker.routing import Router

logger = logging.getLogger("flowbus.worker")

#: States of a run a worker may start.
_CLAIMABLE = frozenset({StateType.SCHEDULED, StateType.PENDING})
#: States of a run whose entry goes to a worker that runs its flow, when this one does not.
_PLACEABLE = frozenset({StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING})

#: Message of the Suspended state a paused run gets when its worker stops.
HANDED_OFF = "The worker stopped; the pause became a suspension (resume re-enqueues the run)"


def _about(run: FlowRun) -> dict[str, str]:
    """Log record fields naming the run a line is about."""
    return {"run_id": str(run.id), "flow": run.flow_name}


def parse_run_id(fields: Mapping[str, str]) -> UUID | str:
    """The entry's run id, or the reason the entry is malformed."""
    raw = fields.get("run_id")
    if not raw:
        return "the entry has no run_id"
    try:
        return UUID(raw)
    except ValueError:
        return f"run_id {raw[:80]!r} is not a UUID"


class Execution:
    """One run executing on this worker."""

    def __init__(self, queue: str, entry_id: str, run: FlowRun, is_async: bool) -> None:
        self.queue = queue
        self.entry_id = entry_id
        self.run_id = str(run.id)
        self.flow_name = run.flow_name
        self.is_async = is_async
        self.scope = anyio.CancelScope()
        self.started = time.monotonic()
        self.engine: FlowEngine | None = None
        #: The pause was turned into a suspension at shutdown: ack, although cancelled.
        self.handed_off = False

    @property
    def paused_key(self) -> str | None:
        """The key of the pause the run is blocked in here (pause_flow_run), if any."""
        ctx = self.engine.ctx if self.engine is not None else None
        return ctx.paused_key if ctx is not None else None


class Slot:
    """A run's place among the worker's ``concurrency``, freed once: when the run's code is
    done (its final state being written, which needs no place), or when its handling ends."""

    __slots__ = ("limiter", "token")

    def __init__(self, limiter: anyio.CapacityLimiter, token: object) -> None:
        self.limiter = limiter
        self.token: object | None = token

    def free(self) -> None:
        if self.token is not None:
            self.limiter.release_on_behalf_of(self.token)
            self.token = None


class Executor:
    """Runs queue entries with at most ``concurrency`` runs' code executing at once."""

    def __init__(
        self,
        runtime: Runtime,
        flows: Mapping[str, Flow[..., Any]],
        config: WorkerConfig,
        left_pending: Callable[[float], None] = lambda _at: None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.flows = flows
        self.config = config
        self.limiter = anyio.CapacityLimiter(config.concurrency)
        self.router = Router(runtime.redis, runtime.store.keys, config, flows)
        self.active: dict[tuple[str, str], Execution] = {}
        self.stopping = False
        #: A sync flow's thread was left running (the process should not wait for it at exit).
        self.abandoned_threads = False
        self._changed = anyio.Event()
        #: Told (with the time) when an entry stays pending here, for the reclaimer to retake.
        self._left_pending = left_pending

    # -- entry handling --------------------------------------------------------------------

    async def handle(
        self, queue: str, entry_id: str, fields: dict[str, str], token: object, reclaimed: bool
    ) -> None:
        """Process one entry of ``queue``'s stream in the slot ``token`` holds (see :class:`Slot`).

        Nothing in an entry may end the worker: an entry that makes its handling fail is
        dead-lettered; only a Redis that is unreachable or busy leaves it pending.
        """
        slot = Slot(self.limiter, token)
        try:
            await self._handle(queue, entry_id, fields, reclaimed, slot)
        except ResponseError as exc:
            if groups.is_entry_error(exc):
                await self._reject(queue, entry_id, fields, exc)
            else:
                logger.error("Entry %s of queue %s stays pending: %s", entry_id, queue, exc)
                self._left_pending(anyio.current_time())
        except RedisError as exc:
            logger.error(
                "Entry %s of queue %s stays pending: Redis failed (%s)", entry_id, queue, exc
            )
            self._left_pending(anyio.current_time())
        except Exception as exc:
            logger.exception("Handling entry %s of queue %s failed", entry_id, queue)
            await self._reject(queue, entry_id, fields, exc)
        finally:
            slot.free()

    async def _reject(
        self, queue: str, entry_id: str, fields: dict[str, str], exc: Exception
    ) -> None:
        qkeys = self.store.keys.queue(queue)
        reason = f"the worker failed on it: {exc!r}"
        logger.warning("Dead-lettering entry %s of queue %s: %s", entry_id, queue, reason)
        try:
            await groups.dead_letter(
                self.runtime.redis, qkeys.stream(), qkeys.dead_letter(), entry_id, fields, reason
            )
        except RedisError as failed:
            logger.error("Entry %s of queue %s stays pending: %s", entry_id, queue, failed)

    async def _handle(
        self, queue: str, entry_id: str, fields: dict[str, str], reclaimed: bool, slot: Slot
    ) -> None:
        stream = self.store.keys.queue(queue).stream()
        run, started = await self._take(queue, entry_id, fields)
        if run is None:
            return
        state = run.state
        flow = self.flows.get(run.flow_name)
        if flow is None and state.type in _PLACEABLE:
            await self._place(queue, entry_id, run)
            return
        if started and flow is not None:
            if not await self._execute(queue, entry_id, run, flow, slot):
                return  # abandoned (left pending), or acknowledged by the final transition
        elif state.is_running() and reclaimed and flow is not None:  # its worker died mid-run
            rescheduled = Scheduled(name="Rescheduled", message="Its worker stopped; re-running")
            reply = await self.store.set_state(run.id, rescheduled, expect=StateType.RUNNING)
            if reply.accepted:
                run.state = rescheduled
                if not await self._execute(queue, entry_id, run, flow, slot):
                    return
        elif state.is_running():
            logger.warning(
                "Run %s is RUNNING already; entry %s is a duplicate",
                run.id,
                entry_id,
                extra=_about(run),
            )
        else:
            await self._settle(run, reclaimed)
        await groups.ack(self.runtime.redis, stream, entry_id)

    async def _take(
        self, queue: str, entry_id: str, fields: dict[str, str]
    ) -> tuple[FlowRun | None, bool]:
        """The entry's run, started when its flow is here; ``None`` once dead-lettered."""
        run, started = await self._claim(queue, fields)
        if run is None:
            run = await self._load(queue, entry_id, fields)  # dead-letters what is malformed
            if run is None:
                return None, False
        if not started and run.flow_name in self.flows and run.state.type in _CLAIMABLE:
            # the entry's flow hint was missing or wrong: the run's own flow decides
            claimed, started = await self.store.claim_run(run.id, queue, flow=run.flow_name)
            run = claimed or run
        return run, started

    async def _claim(self, queue: str, fields: dict[str, str]) -> tuple[FlowRun | None, bool]:
        """Start the entry's run, if it waits and its flow is here, reading it in the same step.

        ``(None, False)`` when the entry needs a closer look (malformed, unknown flow or run).
        The entry's ``flow`` is a hint only: the script starts no run of another flow.
        """
        run_id = parse_run_id(fields)
        flow_name = fields.get("flow", "")
        if isinstance(run_id, str) or flow_name not in self.flows:
            return None, False
        try:
            return await self.store.claim_run(run_id, queue, flow=flow_name)
        except (MalformedEntry, SerializationError):
            return None, False

    async def _place(self, queue: str, entry_id: str, run: FlowRun) -> None:
        """A run of a flow not here: handed to a worker that has it, kept, or failed at last."""
        stream = self.store.keys.queue(queue).stream()
        failed = await self.router.place(queue, stream, entry_id, run.id, run.flow_name)
        if failed is not None:
            logger.error("Run %s: %s", run.id, failed.message)
            await self._end(run.id, failed)
            await groups.ack(self.runtime.redis, stream, entry_id)

    async def recheck_held(self, queue: str) -> None:
        """Place again the entries kept here for a worker that runs their flow."""
        for (q, entry_id), held in list(self.router.held.items()):
            if q != queue:
                continue
            try:
                run: FlowRun | None = await self.store.read_run(held.run_id, queue=queue)
            except (FlowRunNotFound, MalformedEntry, SerializationError):
                run = None
            if run is None or run.state.type not in _PLACEABLE:  # ended or taken meanwhile
                del self.router.held[(q, entry_id)]
                await groups.ack(self.runtime.redis, self.store.keys.queue(q).stream(), entry_id)
            else:
                await self._place(queue, entry_id, run)

    async def _load(self, queue: str, entry_id: str, fields: dict[str, str]) -> FlowRun | None:
        """The entry's run, or ``None`` once a malformed entry went to the dead letters."""
        qkeys = self.store.keys.queue(queue)
        run_id = parse_run_id(fields)
        reason: str | None = run_id if isinstance(run_id, str) else None
        run: FlowRun | None = None
        if isinstance(run_id, UUID):
            try:
                run = await self.store.read_run(run_id, queue=queue)
            except FlowRunNotFound:
                reason = f"unknown run {run_id}"
            except (MalformedEntry, SerializationError) as exc:
                reason = f"unreadable run {run_id}: {exc}"
                await self._end(run_id, Failed(message=f"The worker cannot read it: {exc}"))
        if run is not None and run.queue != queue:
            reason, run = f"run {run.id} belongs to queue {run.queue!r}", None
        if run is None:
            logger.warning("Dead-lettering entry %s of queue %s: %s", entry_id, queue, reason)
            await groups.dead_letter(
                self.runtime.redis,
                qkeys.stream(),
                qkeys.dead_letter(),
                entry_id,
                fields,
                str(reason),
            )
        return run

    async def _settle(self, run: FlowRun, reclaimed: bool) -> None:
        """A run that needs no execution; a reclaimed one is moved on from its dead worker."""
        state = run.state
        if not reclaimed or state.is_final():
            return
        if state.is_cancelling():
            await self._end(run.id, Cancelled(message=state.message))
            return
        keys = await self.store.run_keys(run.id)
        if state.name == "Suspending":
            await self.store.scripts.complete_suspension(keys)
        elif not state.state_details.pause_reschedule:
            await self.store.scripts.pause_to_suspension(keys, message=HANDED_OFF)

    async def _end(self, run_id: UUID, state: State) -> None:
        try:
            reply = await self.store.set_state(run_id, state)
        except FlowRunNotFound:
            return
        if not reply.accepted:
            logger.warning("Run %s could not become %s: %s", run_id, state.type, reply.detail)

    async def crash(
        self, queue: str, entry_id: str, fields: dict[str, str], deliveries: int
    ) -> None:
        """End a run whose workers keep dying: CRASHED, and its entry acknowledged."""
        run = await self._load(queue, entry_id, fields)
        if run is not None:
            if not run.state.is_final():
                logger.error(
                    "Run %s crashed %d workers; it ends CRASHED",
                    run.id,
                    deliveries,
                    extra=_about(run),
                )
                message = f"Its worker died {deliveries} times while running it; giving up"
                await self._end(run.id, Crashed(message=message))
            await groups.ack(self.runtime.redis, self.store.keys.queue(queue).stream(), entry_id)

    # -- execution ---------------------------------------------------------------------------

    async def _execute(
        self, queue: str, entry_id: str, run: FlowRun, flow: Flow[..., Any], slot: Slot
    ) -> bool:
        """Run the flow in ``slot``; True when the entry is still to be acknowledged."""
        execution = Execution(queue, entry_id, run, flow.is_async)
        key = (queue, entry_id)
        self.active[key] = execution
        engine = FlowEngine(
            flow,
            run,
            self.runtime,
            Delivery(groups.GROUP, entry_id),
            on_transition=lambda state: self._transitioned(execution, state),
            on_code_done=slot.free,
        )
        execution.engine = engine
        if run.state.is_running():  # claimed and started in one step: the engine will not say
            self._transitioned(execution, run.state)
        superseded = False
        try:
            with execution.scope:
                superseded = await self._run_engine(engine)
        finally:
            del self.active[key]
            self._changed.set()
        if execution.handed_off:
            return True
        # a superseded execution leaves the entry alone: it is the newer execution's now
        return not (superseded or execution.scope.cancelled_caught or engine.acked)

    async def _run_engine(self, engine: FlowEngine) -> bool:
        """Run the engine; True when a newer execution took the run over meanwhile."""
        run = engine.flow_run
        try:
            await engine.run(run.parameters)
        except StaleExecution as stale:  # taken for dead (stopped, paused, cut off) and re-run
            logger.warning(
                "Run %s: this execution (attempt %s) stops without changing anything: %s",
                run.id,
                engine.attempt,
                stale.reason,
            )
            return True
        except InvalidStateTransition as refused:  # another worker or a user moved it first
            logger.info("Run %s not executed: %s", run.id, refused, extra=_about(run))
        except RedisError:
            raise
        except Exception as exc:  # a bug below the flow: do not let it loop through workers
            logger.exception("Run %s crashed the engine", run.id, extra=_about(run))
            await self._end(run.id, Crashed(message=f"The worker's engine failed: {exc!r}"))
        return False

    def _transitioned(self, execution: Execution, state: State) -> None:
        """Log the transition; a pause that starts while stopping is handed off at once."""
        if runs_logger.isEnabledFor(logging.INFO):
            log_transition(
                run_id=execution.run_id,
                flow=execution.flow_name,
                queue=execution.queue,
                state=state.type.value,
                state_name=state.name,
                duration=time.monotonic() - execution.started,
                message=state.message or "",
            )
        if self.stopping and state.is_paused() and not state.is_suspended():
            spawn(self.hand_off(execution), name=f"hand-off of run {execution.run_id}")

    # -- shutdown ----------------------------------------------------------------------------

    async def hand_off(self, execution: Execution) -> None:
        """Turn the run's in-process pause into a suspension and stop executing it here."""
        if execution.handed_off:
            return
        keys = await self.store.run_keys(execution.run_id)
        # the key, when known, guards against a pause that ended meanwhile
        key = execution.paused_key or ""
        attempt = execution.engine.attempt if execution.engine is not None else None
        reply = await self.store.scripts.pause_to_suspension(
            keys, key=key, message=HANDED_OFF, attempt=attempt
        )
        if reply.accepted:
            execution.handed_off = True
            self.abandoned_threads |= not execution.is_async
            execution.scope.cancel()

    async def hand_off_paused(self) -> None:
        for execution in list(self.active.values()):
            if execution.paused_key is not None:
                await self.hand_off(execution)

    async def wait_idle(self) -> None:
        """Return once no run executes here."""
        while self.active:
            self._changed = anyio.Event()
            await self._changed.wait()

    def abandon_all(self) -> None:
        """Stop every execution; their entries stay pending for another worker."""
        for execution in self.active.values():
            self.abandoned_threads |= not execution.is_async
            execution.scope.cancel()
