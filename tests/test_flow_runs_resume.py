"""resume_flow_run against a real Redis: one compare-and-set among racing resumers, one winner
between a resume and the deadline, and Prefect's pause example resumed from another process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from time import sleep
from typing import Any
from uuid import UUID

import anyio
import pytest

from flowbus import Flow, State, StateType, aresume_flow_run, flow, pause_flow_run, task
from flowbus._core.bridge import run_blocking
from flowbus._redis.queue_indexes import read_runs
from flowbus.exceptions import FlowPauseTimeout, NotPausedError
from flowbus.models import FlowRun
from tests.conftest import env_for_subprocess
from tests.runs import (
    current_run_id,
    gather_outcomes,
    launch,
    read,
    run_events,
    run_keys,
    running_run,
    store,
    wait_for_ids,
    wait_until,
)

NEVER_RESUMED = "The flow was paused and never resumed."

#: A pause deadline shorter than Prefect's int seconds: flowbus honours it to the millisecond.
RACE_TIMEOUT: Any = 0.2

KINDS = ["sync", "async"]


# -- one compare-and-set -------------------------------------------------------------------------


def pausing_flow(kind: str, name: str, ids: list[str], timeout: Any) -> Flow[..., Any]:
    """A flow that reports its run id, pauses for ``timeout`` s and returns "resumed"."""
    if kind == "sync":

        @flow(name=name)
        def sync_body() -> str:
            ids.append(current_run_id())
            pause_flow_run(timeout=timeout)
            return "resumed"

        return sync_body

    @flow(name=name)
    async def async_body() -> str:
        ids.append(current_run_id())
        await pause_flow_run(timeout=timeout)
        return "resumed"

    return async_body


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_of_100_concurrent_resumers_exactly_one_wins(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    ids: list[str] = []
    race_target = pausing_flow(kind, "race-target", ids, 30)

    for _ in range(10):
        # Given a paused flow
        ids.clear()
        handle = launch(race_target)
        [run_id] = await wait_for_ids(ids, 1)
        await wait_until(run_id, StateType.PAUSED)

        # When 100 resumers race
        outcomes = await gather_outcomes([partial(aresume_flow_run, run_id) for _ in range(100)])

        # Then exactly one wins, every other gets NotPausedError, and the flow resumed once
        assert outcomes.count(None) == 1
        assert sum(isinstance(o, NotPausedError) for o in outcomes) == 99
        assert (await (await handle).result()) == "resumed"
        run = await read(run_id)
        assert (run.state.type, run.run_count) == (StateType.COMPLETED, 1)
        resumed = [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]
        assert len(resumed) == 1


async def paused_without_process(timeout_ms: int) -> FlowRun:
    run = await running_run()
    s = await store()
    reply = await s.scripts.pause(
        await run_keys(run.id),
        key="1",
        timeout_ms=timeout_ms,
        reschedule=False,
        state_name="Paused",
    )
    assert reply.accepted
    return await read(run.id)


@pytest.mark.anyio
async def test_a_resume_after_the_deadline_fails_the_run(runtime_closed: None) -> None:
    # Given a run paused for 50 ms with no process waiting on it (no timer fired yet)
    run = await paused_without_process(50)
    await asyncio.sleep(0.1)

    # When it is resumed after its deadline
    # Then the resumer gets FlowPauseTimeout and the run is FAILED "paused and never resumed"
    with pytest.raises(FlowPauseTimeout):
        await aresume_flow_run(run.id)
    state = (await read(run.id)).state
    assert (state.type, state.message) == (StateType.FAILED, NEVER_RESUMED)

    # And a later resumer gets FlowPauseTimeout too
    with pytest.raises(FlowPauseTimeout):
        await aresume_flow_run(run.id)


async def paused_at(run_id: str) -> float:
    """When the run paused (Redis's clock, s), from its PAUSED event: even if it expired since."""
    with anyio.fail_after(10):
        while True:
            for event in await run_events(run_id):
                if event["type"] == "PAUSED":
                    return int(event["ts"]) / 1000
            await asyncio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_resume_racing_the_deadline_has_one_winner(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    async def race(offset: float) -> tuple[str, BaseException | None, State]:
        # Given a flow paused for 0.2 s
        ids: list[str] = []
        handle = launch(pausing_flow(kind, "short-pause", ids, RACE_TIMEOUT))
        [run_id] = await wait_for_ids(ids, 1)
        # When a resume lands within ±15 ms of its deadline
        deadline = await paused_at(run_id) + RACE_TIMEOUT
        await asyncio.sleep(max(0.0, deadline - time.time() + offset))
        [outcome] = await gather_outcomes([partial(aresume_flow_run, run_id)])
        return run_id, outcome, await handle

    results = await asyncio.gather(*(race((i % 7 - 3) * 0.005) for i in range(20)))

    # Then each run has one winner, and its final state agrees with what the resumer heard
    for run_id, outcome, state in results:
        assert outcome is None or isinstance(outcome, FlowPauseTimeout), outcome
        final = (await read(run_id)).state
        if outcome is None:
            assert (state.type, final.type) == (StateType.COMPLETED, StateType.COMPLETED)
        else:
            assert (state.type, final.type) == (StateType.FAILED, StateType.FAILED)
            assert final.message == NEVER_RESUMED
            with pytest.raises(FlowPauseTimeout):
                (await state.result())


# -- Prefect's example, imports changed ----------------------------------------------------------


@task
def task_one() -> None:
    for i in range(3):  # noqa: B007 - Prefect's example, unchanged
        sleep(1)


@flow
def my_flow() -> None:
    terminal_state = task_one.submit(return_state=True)
    if terminal_state.type == StateType.COMPLETED:
        print("Task one succeeded! Pausing flow run..")  # noqa: T201
        pause_flow_run(timeout=2)
    else:
        print("Task one failed. Skipping pause flow run..")  # noqa: T201


async def paused_run_of(flow_name: str) -> str:
    s = await store()
    for _ in range(2000):
        runs = await read_runs(s, flow_name=flow_name, state_types=[StateType.PAUSED])
        if runs:
            return str(runs[0].id)
        await asyncio.sleep(0.005)
    raise AssertionError(f"no paused run of {flow_name}")


async def only_run(flow_name: str) -> FlowRun:
    [run] = await read_runs(await store(), flow_name=flow_name)
    return run


async def state_times(run_id: UUID) -> dict[str, float]:
    """When the run entered each kind (last time), in Redis's clock, seconds."""
    return {e["type"]: int(e["ts"]) / 1000 for e in await run_events(run_id)}


def test_the_example_fails_when_nobody_resumes_it(background_runtime_closed: None) -> None:
    # When Prefect's example runs and nobody resumes it
    with pytest.raises(FlowPauseTimeout):
        my_flow()

    # Then it fails "paused and never resumed" within 2 + 1 s of pausing
    run = run_blocking(only_run, "my-flow")
    assert (run.state.type, run.state.message) == (StateType.FAILED, NEVER_RESUMED)
    times = run_blocking(state_times, run.id)
    assert 2 <= times["FAILED"] - times["PAUSED"] <= 3


RESUMER = """
import sys
import flowbus
from flowbus._core.bridge import run_blocking
from flowbus._redis.runtime import get_runtime

run_blocking(get_runtime)  # connect before the pause starts: the pause lasts 2 s only
print("ready", flush=True)
flowbus.resume_flow_run(sys.stdin.readline().strip())
print("resumed", flush=True)
"""


def test_the_example_completes_when_another_process_resumes_it(
    flowbus_env: str, background_runtime_closed: None
) -> None:
    # Given a resumer process, connected and waiting for a run id
    env = env_for_subprocess(os.environ["FLOWBUS_REDIS_URL"], flowbus_env)
    resumer = subprocess.Popen(
        [sys.executable, "-c", RESUMER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert resumer.stdout is not None
        assert resumer.stdout.readline().strip() == "ready"

        # When Prefect's example pauses and the other process resumes it
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(my_flow, return_state=True)
            run_id = run_blocking(paused_run_of, "my-flow")
            out, _ = resumer.communicate(run_id + "\n", timeout=20)
            state = running.result(timeout=20)
    finally:
        if resumer.poll() is None:
            resumer.kill()
            resumer.wait()

    # Then the flow completes
    assert out.strip() == "resumed"
    assert resumer.returncode == 0
    assert state.type is StateType.COMPLETED
    assert run_blocking(read, run_id).state.type is StateType.COMPLETED
