"""on_timeout="resume": the deadline resumes the run with the input's defaults; the timer and a
resume never both win; durable sleeps (a suspension the sweeper resumes at its time)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from flowbus_worker.timers import sweep

from flowbus import (
    Flow,
    RunInput,
    StateType,
    aresume_flow_run,
    flow,
    pause_flow_run,
    sleep_for,
    sleep_until,
)
from flowbus._redis.replies import Status
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import FlowPauseTimeout, NotPausedError
from tests.runs import (
    current_run_id,
    fired_keys,
    gather_outcomes,
    launch,
    pause_deadline,
    read,
    run_events,
    run_keys,
    running_run,
    store,
    wait_for_ids,
)

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]


class Review(RunInput):
    approved: bool = False
    note: str = "no answer"


class Required(RunInput):
    approved: bool


def pausing(kind: str, ids: list[str], timeout: float, wait_for_input: Any) -> Flow[..., Any]:
    """Pauses once with on_timeout="resume" and returns what the pause returned."""

    def shown(got: Any) -> Any:
        return None if got is None else [got.approved, got.note]

    if kind == "sync":

        @flow(name="resume-at-deadline")
        def sync_body() -> Any:
            ids.append(current_run_id())
            got = pause_flow_run(wait_for_input, timeout=timeout, on_timeout="resume")
            return shown(got)

        return sync_body

    @flow(name="resume-at-deadline")
    async def async_body() -> Any:
        ids.append(current_run_id())
        got = await pause_flow_run(wait_for_input, timeout=timeout, on_timeout="resume")
        return shown(got)

    return async_body


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("wait_for_input", "expected"), [(Review, [False, "no answer"]), (None, None)]
)
async def test_the_deadline_resumes_the_run_with_the_inputs_defaults(
    kind: str, wait_for_input: Any, expected: Any, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow paused for 50 ms with on_timeout="resume"
    ids: list[str] = []
    handle = launch(pausing(kind, ids, 0.05, wait_for_input))
    [run_id] = await wait_for_ids(ids, 1)

    # When nobody resumes it
    # Then the pause returns the input's defaults (None without input) and the run completes
    assert (await (await handle).aresult()) == expected
    resumed = [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]
    assert [(e["type"], e["message"]) for e in resumed] == [("RUNNING", "Resumed at the deadline")]


async def test_on_timeout_resume_needs_an_input_with_defaults(
    runtime_closed: None, background_closed: None
) -> None:
    @flow(name="needs-defaults")
    async def body() -> None:
        await pause_flow_run(Required, timeout=1, on_timeout="resume")

    state = await body(return_state=True)
    with pytest.raises(ValueError, match="every field has a default"):
        await state.aresult()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resume_racing_the_resuming_deadline_has_one_winner(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    async def race(offset: float) -> tuple[str, BaseException | None, Any]:
        # Given a flow paused for 0.2 s that the deadline resumes with defaults
        ids: list[str] = []
        handle = launch(pausing(kind, ids, 0.2, Review))
        [run_id] = await wait_for_ids(ids, 1)
        deadline = await pause_deadline(run_id)
        # When a resume lands within ±15 ms of the deadline
        await asyncio.sleep(max(0.0, deadline - time.time() + offset))
        resume = partial(aresume_flow_run, run_id, {"approved": True, "note": "resumer"})
        [outcome] = await gather_outcomes([resume])
        return run_id, outcome, (await (await handle).aresult())

    results = await asyncio.gather(*(race((i % 7 - 3) * 0.005) for i in range(20)))

    # Then each run left its pause once, and the flow got what the winner gave
    for run_id, outcome, got in results:
        left = [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]
        assert len(left) == 1
        if outcome is None:
            assert got == [True, "resumer"]
            assert left[0]["message"] == "Resumed"
        else:
            assert isinstance(outcome, FlowPauseTimeout | NotPausedError), outcome
            assert got == [False, "no answer"]
            assert left[0]["message"] == "Resumed at the deadline"
        assert (await read(run_id)).state.type is StateType.COMPLETED


async def paused_without_process(*, reschedule: bool, timeout_ms: int) -> str:
    run = await running_run()
    s = await store()
    reply = await s.scripts.pause(
        await run_keys(run.id),
        key="nap",
        timeout_ms=timeout_ms,
        reschedule=reschedule,
        state_name="Suspended" if reschedule else "Paused",
        resume_on_timeout=True,
    )
    assert reply.accepted
    return str(run.id)


@pytest.mark.parametrize("reschedule", [False, True])
async def test_the_sweeper_resumes_a_pause_at_its_deadline(
    reschedule: bool, runtime_closed: None
) -> None:
    # Given a run paused (or suspended, with no process) for 20 ms with on_timeout="resume"
    run_id = await paused_without_process(reschedule=reschedule, timeout_ms=20)
    runtime = await get_runtime()
    queue = (await read(run_id)).queue
    await asyncio.sleep(0.05)

    # When two sweepers act on the deadline
    await asyncio.gather(sweep(runtime, queue), sweep(runtime, queue))

    # Then the run left its pause once: RUNNING, or SCHEDULED "Resuming" and enqueued once
    run = await read(run_id)
    left = [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]
    assert len(left) == 1
    assert await fired_keys(run_id) == {"nap"}
    queued: Any = await runtime.redis.xrange(runtime.store.keys.queue(queue).stream())
    if reschedule:
        assert (run.state.type, run.state.name) == (StateType.SCHEDULED, "Resuming")
        assert [e[1][b"run_id"].decode() for e in queued].count(run_id) == 1
    else:
        assert (run.state.type, run.state.name) == (StateType.RUNNING, "Running")


async def test_a_sweeper_behind_another_does_not_enqueue_the_resumed_run_again(
    runtime_closed: None,
) -> None:
    # Given a suspended run whose deadline both sweepers read, and one sweeper resumed it
    run_id = await paused_without_process(reschedule=True, timeout_ms=1)
    await asyncio.sleep(0.01)
    s = await store()
    keys = await run_keys(run_id)
    assert (await s.scripts.expire_pause(keys)).accepted

    # When the other sweeper acts on the deadline it read: refused by the SCHEDULED
    # "Resuming" run, it moves on to a scheduled start
    expired = await s.scripts.expire_pause(keys)
    started = await s.scripts.start_scheduled(keys)

    # Then nothing more is enqueued: the run is on its queue once
    assert (expired.status, expired.state_type) == (Status.REFUSED, StateType.SCHEDULED)
    assert started.status is Status.REFUSED
    assert await queued_entries(run_id) == 1


async def test_a_scheduled_start_is_enqueued_once_by_two_sweepers(runtime_closed: None) -> None:
    # Given a run scheduled to start in 20 ms, its deadline read by two sweepers
    s = await store()
    start = datetime.now(UTC) + timedelta(milliseconds=20)
    run = await s.create_run("later", enqueue=True, scheduled_time=start)
    assert await queued_entries(str(run.id)) == 0
    await asyncio.sleep(0.05)

    # When both start it, one after the other
    keys = await run_keys(run.id)
    first, second = [await s.scripts.start_scheduled(keys) for _ in range(2)]

    # Then the first enqueues it, the second finds it handed over already
    assert (first.status, first.detail) == (Status.ACCEPTED, "enqueued")
    assert second.status is Status.REFUSED
    assert await queued_entries(str(run.id)) == 1


async def queued_entries(run_id: str) -> int:
    """How many entries of ``run_id``'s queue stream name the run."""
    s = await store()
    queued: Any = await s.redis.xrange(s.keys.queue((await read(run_id)).queue).stream())
    return [e[1][b"run_id"].decode() for e in queued].count(run_id)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_run_without_a_deployment_sleeps_in_its_process(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    if kind == "sync":

        @flow(name="napper")
        def sync_body() -> str:
            sleep_for(0.05)
            sleep_until(time.time() + 0.05)
            return "awake"

        handle = launch(sync_body)
    else:

        @flow(name="napper")
        async def async_body() -> str:
            await sleep_for(0.05)
            await sleep_until(time.time() + 0.05)
            return "awake"

        handle = launch(async_body)
    state = await handle
    assert (await state.aresult()) == "awake"
