"""Pause, resume, suspend and wait for flow runs — event-driven, never polling.

The ``a``-prefixed functions are async; the plain names are awaitable from async code and
blocking from sync code (one implementation behind both, see :func:`bridge.sync_or_async`).
``poll_interval`` parameters exist for Prefect compatibility and do nothing.
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any, Literal
from uuid import UUID

import anyio

from flowbus._core.bridge import on_loop, sync_or_async
from flowbus._core.codec import decode, loads_json, ms_to_datetime
from flowbus._engine.context import FlowRunContext, TaskRunContext
from flowbus._engine.run_logs import LifecycleLog
from flowbus._engine.suspension import request_suspension
from flowbus._redis.events import RunEvent
from flowbus._redis.keys import RunKeys
from flowbus._redis.pauses import ResumeView, resumed_input
from flowbus._redis.replies import PauseReply, Reply, Status
from flowbus._redis.runtime import get_runtime
from flowbus._redis.waiters import Subscription
from flowbus.exceptions import (
    FlowPauseTimeout,
    FlowRunCancelled,
    FlowRunWaitTimeout,
    MissingContext,
    Pause,
    PauseNotAllowed,
    PauseRefused,
    SerializationError,
    StaleExecution,
)
from flowbus.input.early import judge
from flowbus.input.expected import NO_INPUT, Expected, check_same_type
from flowbus.input.judging import (
    has_custom_validators,
    judge_and_resume,
)
from flowbus.input.resuming import aresume_flow_run as aresume_flow_run  # its public path
from flowbus.input.run_input import accepts_empty
from flowbus.models import FlowRun
from flowbus.settings import Settings
from flowbus.states import Paused, Running, StateType, Suspended

logger = LifecycleLog(logging.getLogger("flowbus.flow_runs"))

#: What the paused flow raises then (Prefect's message).
PAUSE_EXPIRED = "Flow run was paused and never resumed."


OnTimeout = Literal["fail", "resume"]


async def apause_flow_run(
    wait_for_input: Any = None,
    timeout: float | None = 3600,
    poll_interval: int = 10,
    key: str | None = None,
    on_timeout: OnTimeout = "fail",
) -> Any:
    """Pause the current flow run until it is resumed; return the run input, if any.

    The pause is a one-shot checkpoint under ``key`` (default: the run's pause counter "1",
    "2", …, so pauses must happen in a deterministic order): a key that already fired returns
    its input at once, and so does a key whose input was delivered early. Raises
    :class:`FlowPauseTimeout` (the run is FAILED) if no resume comes within ``timeout``
    seconds, unless ``on_timeout="resume"``: then the deadline resumes the run with the
    input's defaults (``None`` without input). :class:`FlowRunCancelled` if the run is
    cancelled meanwhile. ``wait_for_input`` may be a union of ``RunInput`` models.
    """
    if TaskRunContext.get() is not None:
        raise PauseNotAllowed("Cannot pause task runs.")
    ctx = FlowRunContext.get()
    if ctx is None:
        raise MissingContext("Flow runs can only be paused from within a flow run.")
    pause = _pause(ctx, wait_for_input, timeout, key, reschedule=False, on_timeout=on_timeout)
    return await on_loop(ctx.loop, pause)


async def asuspend_flow_run(
    wait_for_input: Any = None,
    flow_run_id: UUID | str | None = None,
    timeout: float | None = 3600,
    key: str | None = None,
    client: Any = None,
    on_timeout: OnTimeout = "fail",
) -> Any:
    """Suspend a run: it leaves its process and a resume re-enqueues it to a worker.

    In the current run this raises :class:`~flowbus.exceptions.Pause` (the engine catches it);
    when the run re-executes, the same call (same key) returns the resume input. The run must
    come from a deployment, and this cannot be called from inside a task. With a
    ``flow_run_id`` (even the current run's) it returns at once and that run stops at its next
    task boundary. ``client`` is accepted for Prefect compatibility and not needed.
    ``on_timeout`` as for :func:`pause_flow_run` (not for a request by ``flow_run_id``).
    """
    ctx = FlowRunContext.get()
    if flow_run_id is not None:
        if on_timeout != "fail":
            raise ValueError("on_timeout applies to a run's own suspension only")
        await request_suspension(flow_run_id, timeout)
        if ctx is not None and str(ctx.flow_run.id) == str(flow_run_id):
            ctx.interrupt = "suspend"  # its own next task boundary, without waiting for the event
        return None
    if TaskRunContext.get() is not None:
        raise PauseNotAllowed("Cannot suspend task runs.")
    if ctx is None:
        raise MissingContext("Flow runs can only be suspended from within a flow run.")
    if ctx.flow_run.parent_flow_run_id is not None and ctx.flow_run.deployment_id is None:
        # a subflow runs inside its parent's process; a deployment's run has its own
        raise PauseNotAllowed("Cannot suspend subflows.")
    if ctx.flow_run.deployment_id is None:
        raise PauseNotAllowed("Cannot suspend flows without a deployment.")
    pause = _pause(ctx, wait_for_input, timeout, key, reschedule=True, on_timeout=on_timeout)
    return await on_loop(ctx.loop, pause)


async def _pause(
    ctx: FlowRunContext,
    wait_for_input: Any,
    timeout: float | None,
    key: str | None,
    *,
    reschedule: bool,
    on_timeout: OnTimeout,
) -> Any:
    expected = Expected.of(wait_for_input)
    key = key or ctx.next_pause_key()
    prefix = f"{'suspended' if reschedule else 'paused'}-{key}" if expected else ""
    await ctx.flush()  # a re-execution must find every task result finished so far
    keys = await ctx.runtime.store.run_keys(ctx.flow_run.id)
    async with ctx.runtime.waiters.subscribe(keys.queue, keys.run_id, control=True) as sub:
        fired, found = await _enter_pause(
            ctx, keys, expected, key, prefix, timeout, reschedule=reschedule, on_timeout=on_timeout
        )
        if fired:
            return found
        # while it waits (a process may hold 100,000 pauses) this frame keeps only what the
        # wait needs: the script's arguments and reply went with _enter_pause's frame
        ctx.paused_key = key
        try:
            value = await _wait_until_resumed(ctx, keys, sub, key, prefix, expected, found)
        finally:
            ctx.paused_key = None
    if ctx.on_transition is not None:
        ctx.transitioned(Running(message="Resumed"))
    return value


async def _enter_pause(
    ctx: FlowRunContext,
    keys: RunKeys,
    expected: Expected | None,
    key: str,
    prefix: str,
    timeout: float | None,
    *,
    reschedule: bool,
    on_timeout: OnTimeout,
) -> tuple[bool, Any]:
    """Move the run to PAUSED: ``(False, deadline_ms)``; or ``(True, input)`` when the pause
    already fired (or input came early); :class:`Pause` for a suspension."""
    run_id = ctx.flow_run.id
    schema = expected.schema() if expected else ""
    optional = bool(expected) and accepts_empty(schema)
    _check_on_timeout(on_timeout, expected, optional)
    pause = partial(
        ctx.runtime.store.scripts.pause,
        keys,
        key=key,
        timeout_ms=None if timeout is None else math.ceil(timeout * 1000),
        reschedule=reschedule,
        state_name="Suspended" if reschedule else "Paused",
        input_prefix=prefix,
        schema=schema,
        description=expected.description() if expected else "",
        optional=optional,
        input_type=expected.identity if expected else NO_INPUT,
        resume_on_timeout=on_timeout == "resume",
        attempt=ctx.attempt,
        judged=has_custom_validators(expected),
    )
    reply = await pause()
    if reply.status is Status.EARLY:
        value, refusal = judge(expected, reply.response, key)
        reply = await pause(early="refuse" if refusal else "take", early_refusal=refusal)
        if reply.status is Status.ALREADY_FIRED and not refusal:
            logger.info("Flow run %s took input delivered early (key %s)", run_id, key)
            return True, value
    if reply.status is Status.ALREADY_FIRED:
        check_same_type(key, reply.input_type, expected)
        return True, expected.load(_response(reply), key) if expected else None
    if reply.status is Status.STALE:
        raise StaleExecution(run_id, reply.detail)
    if not reply.accepted:
        raise PauseRefused(run_id, f"the run cannot be paused: {reply.detail}")
    deadline_ms = reply.deadline_ms
    logger.info("Flow run %s paused (key %s)", run_id, key)
    if reschedule or ctx.on_transition is not None:
        expires = None if deadline_ms is None else ms_to_datetime(deadline_ms)
        state = (Suspended if reschedule else Paused)(pause_key=key, pause_expiration_time=expires)
        if reschedule:
            raise Pause(state)
        ctx.transitioned(state)
    return False, deadline_ms


def _check_on_timeout(on_timeout: str, expected: Expected | None, optional: bool) -> None:
    if on_timeout not in ("fail", "resume"):
        raise ValueError(f"on_timeout must be 'fail' or 'resume', not {on_timeout!r}")
    if on_timeout == "resume" and expected is not None and not optional:
        raise ValueError(
            f"on_timeout='resume' needs an input whose every field has a default "
            f"({expected.identity} has required fields)"
        )


def _response(reply: PauseReply) -> Any:
    """The input stored by the resume of a pause that already fired (``None``: none)."""
    return None if reply.response is None else decode(reply.response)


async def _wait_until_resumed(
    ctx: FlowRunContext,
    keys: RunKeys,
    sub: Subscription,
    key: str,
    prefix: str,
    expected: Expected | None,
    deadline_ms: int | None,
) -> Any:
    store = ctx.runtime.store
    run_id = ctx.flow_run.id
    while True:
        left = None if deadline_ms is None else max(0.0, deadline_ms / 1000 - time.time())
        try:
            event = await sub.next(within=left)
        except TimeoutError:
            reply = await store.scripts.expire_pause(keys, key=key)
            if reply.accepted:
                return _timed_out(run_id, reply, key, expected)
            if reply.left_ms is not None:  # Redis's clock is behind ours: wait out the rest
                deadline_ms = int(time.time() * 1000) + reply.left_ms
                continue
            event = None  # someone else ended the pause: the run says how
        if event is not None and event.action == "judge" and event.pause_key == key:
            won, value = await judge_and_resume(ctx.runtime, event, expected, key)
            if won:
                logger.info("Flow run %s resumed with judged input (key %s)", run_id, key)
                return value
            continue
        if event is not None and event.type is StateType.PAUSED:
            event = None  # not held through the next wait (a process may hold 100,000)
            continue
        carried, value = _carried(event, key, expected, ctx.runtime.settings)
        if carried:  # the event is the proof, and says what the pause returns: nothing to read
            logger.info("Flow run %s resumed (key %s)", run_id, key)
            return expected.load(value, key) if expected else None
        view = await resumed_input(store, run_id, key, prefix)
        if view.state_type != StateType.PAUSED:
            return _outcome(run_id, view, key, expected)


def _carried(
    event: RunEvent | None, key: str, expected: Expected | None, settings: Settings
) -> tuple[bool, Any]:
    """``(True, input)`` when ``event`` is a resume of the pause under ``key`` that says what
    the pause returns: nothing, for a pause without input; else the input the resume stored,
    if the event carries it (JSON text, ``null`` for none). ``(False, None)``: read the run."""
    if event is None or not _resumes(event, key):
        return False, None
    if expected is None:
        return True, None
    if not event.input:
        return False, None
    try:
        return True, loads_json(event.input, limit=settings.max_payload_bytes, what="input")
    except SerializationError:
        return False, None


def _timed_out(run_id: UUID, reply: Reply, key: str, expected: Expected | None) -> Any:
    """What a pause whose deadline came returns: its input's defaults if the deadline resumed
    it (``on_timeout="resume"``); else :class:`FlowPauseTimeout` (the run is FAILED)."""
    if reply.state_type == StateType.FAILED:
        raise FlowPauseTimeout(PAUSE_EXPIRED)
    logger.info("Flow run %s resumed at its deadline (key %s)", run_id, key)
    return expected.load(None, key) if expected else None


def _outcome(run_id: UUID, view: ResumeView, key: str, expected: Expected | None) -> Any:
    """What a pause returns (or raises) once its run left PAUSED."""
    if view.state_type == StateType.RUNNING and view.fired:
        logger.info("Flow run %s resumed (key %s)", run_id, key)
        return expected.load(view.response, key) if expected else None
    if view.state_type in (StateType.CANCELLED, StateType.CANCELLING):
        raise FlowRunCancelled(f"Flow run {run_id} was cancelled while paused")
    if view.expired:
        raise FlowPauseTimeout(PAUSE_EXPIRED)
    raise FlowRunCancelled(
        f"Flow run {run_id} left its pause for {view.state_type} {view.state_name!r}"
    )


def _resumes(event: RunEvent, key: str) -> bool:
    """True for the event of a resume of the pause under ``key``."""
    return (
        event.type is StateType.RUNNING
        and event.from_type == StateType.PAUSED
        and event.pause_key == key
    )


async def await_for_flow_run(
    flow_run_id: UUID | str,
    timeout: float | None = 10800,
    poll_interval: int = 5,
    client: Any = None,
    log_states: bool = False,
) -> FlowRun:
    """Block until the run reaches a final state and return it.

    Subscribes to the run's events first, then reads the run (so no event can slip between),
    then waits on the push stream. :class:`FlowRunWaitTimeout` after ``timeout`` seconds.
    """
    runtime = await get_runtime()
    store = runtime.store
    queue = await store.queue_of(flow_run_id)
    async with runtime.waiters.subscribe(queue, str(flow_run_id)) as sub:
        run = await store.read_run(flow_run_id)
        with anyio.move_on_after(timeout):
            while not run.state.is_final():
                event = await sub.next()
                if event is not None and log_states:
                    logger.info("Flow run %s is %s", flow_run_id, event.name)
                if event is None:  # reconnected: the stream may have moved on unseen
                    run = await store.read_run(flow_run_id)
                elif event.is_final:
                    # a final state changes only state and run_count: no need to read back
                    update = {"state": event.state(), "run_count": event.run_count}
                    run = run.model_copy(update=update)
            return store.with_result_source(run)
    raise FlowRunWaitTimeout(
        f"Flow run with ID {flow_run_id} exceeded watch timeout of {timeout} seconds"
    )


pause_flow_run = sync_or_async(apause_flow_run)
suspend_flow_run = sync_or_async(asuspend_flow_run)
resume_flow_run = sync_or_async(aresume_flow_run)
wait_for_flow_run = sync_or_async(await_for_flow_run)
