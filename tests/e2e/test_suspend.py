"""Given real worker processes, suspended and paused runs move between workers and time out."""

from __future__ import annotations

import signal

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import InvalidRunInput
from flowbus.flow_runs import aresume_flow_run, asuspend_flow_run, await_for_flow_run
from flowbus.models import FlowRun
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key
from tests.e2e.support import is_suspended, wait_for_run

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_suspend_then_resume_with_input_on_another_worker(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run suspended (waiting for input) by worker A, and A stopped
    worker_a = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("approval", "d")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "s"})
    suspended = await wait_for_run(run.id, is_suspended, within=90)
    assert suspended.state.state_details.pause_reschedule
    assert worker_a.terminate() == 0
    # When worker B starts and the run is resumed with input
    start_worker("b")
    await aresume_flow_run(run.id, {"approved": True, "note": "ship it"})
    # Then B re-runs it to completion; each completed task ran exactly once
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert await get_result(run.id) == "True:ship it"
    assert await rclient.get(key("count:s-before")) == "1"
    assert await rclient.get(key("count:s-after")) == "1"


async def test_suspension_expires_with_no_process(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a run suspended with a 2 s timeout (no process holds it; a worker sweeps)
    start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("suspend-briefly", "d")
        run = await client.create_flow_run_from_deployment(dep, {"timeout": 2})
    suspended = await wait_for_run(run.id, is_suspended, within=90)
    deadline = suspended.state.state_details.pause_timeout
    assert deadline is not None
    # When nobody resumes it
    done = await await_for_flow_run(run.id, timeout=90)
    # Then the sweeper fails it within 2 s of its deadline
    assert done.state.type is StateType.FAILED
    assert done.state.message == "The flow was paused and never resumed."
    late = (done.state.timestamp - deadline).total_seconds()
    assert 0 <= late <= 2.0, late


async def test_sigterm_turns_in_process_pause_into_suspension(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run paused in-process on worker A
    worker_a = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("pause-in-process", "d")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "t"})
    paused = await wait_for_run(
        run.id, lambda r: r.state.is_paused() and r.state.name == "Paused", within=90
    )
    assert not paused.state.state_details.pause_reschedule
    # When A gets SIGTERM
    worker_a.proc.send_signal(signal.SIGTERM)
    assert worker_a.proc.wait(30) == 0
    # Then the run is Suspended, and a resume completes it on worker B
    suspended = await get_run(run.id)
    assert is_suspended(suspended), suspended.state
    assert suspended.state.state_details.pause_key == "approval"
    start_worker("b")
    await aresume_flow_run(run.id, {"approved": False, "note": "later"})
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert await get_result(run.id) == "False:later"
    assert await rclient.get(key("count:t-before")) == "1"
    assert await rclient.get(key("count:t-after")) == "1"


async def test_suspend_by_id_during_a_long_task(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run in a long task on worker A
    worker_a = start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("long-running", "d")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "i"})
    assert await rclient.blpop([key("started:i-gate")], timeout=90) is not None
    # When it is asked to suspend, it is Suspending until the task ends, then Suspended
    await asuspend_flow_run(flow_run_id=run.id, timeout=600)
    suspending = await get_run(run.id)
    assert suspending.state.is_paused() and suspending.state.name == "Suspending"
    await rclient.rpush(key("open:i-gate"), "1")
    await wait_for_run(run.id, is_suspended, within=90)
    assert worker_a.terminate() == 0
    # And a resume re-runs it on worker B to completion, each task once
    start_worker("b")
    await aresume_flow_run(run.id)
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    for name in ("i-one", "i-gate", "i-two"):
        assert await rclient.get(key(f"count:{name}")) == "1", name


async def get_run(run_id: object) -> FlowRun:
    runtime = await get_runtime()
    return await runtime.store.read_run(str(run_id))


async def get_result(run_id: object) -> object:
    runtime = await get_runtime()
    return await runtime.store.read_result(str(run_id))


async def test_an_idle_sweeper_does_not_tick(
    start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a worker and a run suspended for an hour (its deadline is far away)
    start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("suspend-briefly", "d")
        run = await client.create_flow_run_from_deployment(dep, {"timeout": 3600})
    await wait_for_run(run.id, is_suspended, within=90)
    # When three seconds pass with nothing happening
    await rclient.config_resetstat()
    await anyio.sleep(3)
    stats = await rclient.info("commandstats")
    # Then the sweeper read the deadline set at most once (it sleeps until a deadline or event)
    zrange = stats.get("cmdstat_zrange", {}).get("calls", 0)
    assert zrange <= 1, stats


async def test_a_worker_judges_resume_input_of_a_suspended_run_with_its_validators(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a run suspended for input whose validator no JSON schema expresses, and a worker
    # that imported the flow's module
    start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("suspend-checked", "d")
        run = await client.create_flow_run_from_deployment(dep, {})
    await wait_for_run(run.id, is_suspended, within=90)

    # When it is resumed with input the validator refuses
    # Then the resumer gets the validator's message, and the run stays suspended
    with pytest.raises(InvalidRunInput, match="amount must be even"):
        await aresume_flow_run(run.id, {"amount": 3})
    assert is_suspended(await get_run(run.id))

    # And valid input resumes it to completion
    await aresume_flow_run(run.id, {"amount": 4})
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert await get_result(run.id) == 4
