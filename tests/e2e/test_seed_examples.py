"""Prefect's two flow_runs examples, run as written against flowbus and a real worker.

The example from ``prefect.flow_runs.wait_for_flow_run``'s docstring ("Trigger multiple flow
runs and wait for them to finish") with only its imports changed, and the literal
``"my-deployment-id"`` replaced by the id of a deployment this test registers. Ten runs go
to a worker process; ten concurrent waits return them all COMPLETED. (The ``pause_flow_run``
example also runs on a worker here, and in-process in tests/test_flow_runs_resume.py.)
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import anyio
import pytest

from flowbus import StateType, get_client, run_deployment
from flowbus._redis.runtime import get_runtime
from flowbus._redis.watch import history
from flowbus.flow_runs import aresume_flow_run, wait_for_flow_run
from flowbus.models import FlowRun
from tests.e2e.conftest import StartWorker

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(180)]

#: Seconds the ten runs get to finish on a loaded machine.
WITHIN = 120.0

DEPLOYMENT_ID = ""  # set by the test to the deployment it registers


# -- the example, verbatim but for the imports above and the deployment id -----------------------


async def main(num_runs: int) -> None:
    async with get_client() as client:
        flow_runs = [
            await client.create_flow_run_from_deployment(deployment_id=DEPLOYMENT_ID)
            for _
            in range(num_runs)
        ]  # fmt: skip
        coros = [wait_for_flow_run(flow_run_id=flow_run.id) for flow_run in flow_runs]
        finished_flow_runs = await asyncio.gather(*coros)
        print([flow_run.state for flow_run in finished_flow_runs])  # noqa: T201 - as written


# ------------------------------------------------------------------------------------------------


async def deploy_add(name: str) -> UUID:
    async with get_client() as client:
        return await client.create_deployment("add", name, parameters={"x": 20, "y": 22})


async def runs_of(deployment_id: UUID) -> list[FlowRun]:
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_name="add")
    return [r for r in runs if r.deployment_id == deployment_id]


async def test_ten_runs_from_a_deployment_and_ten_gathered_waits(
    start_worker: StartWorker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    runtime_closed: None,
) -> None:
    # Given a deployment of the e2e `add` flow and a worker serving its queue
    start_worker("seed")
    deployment_id = await deploy_add("my-deployment")
    monkeypatch.setattr(f"{__name__}.DEPLOYMENT_ID", str(deployment_id))

    # When the example runs: ten runs created, ten waits gathered
    with anyio.fail_after(WITHIN):
        await main(num_runs=10)

    # Then it printed ten COMPLETED states
    printed = capsys.readouterr().out
    assert printed.count("StateType.COMPLETED") == 10, printed
    # And the store agrees: ten runs of the deployment, each completed once, each result 42
    runs = await runs_of(deployment_id)
    assert len(runs) == 10
    assert len({r.id for r in runs}) == 10
    async with get_client() as client:
        for run in runs:
            assert run.state.type is StateType.COMPLETED, run.state
            assert run.run_count == 1
            assert await client.store.read_result(run.id) == 42


async def test_run_deployment_without_waiting_then_gathered_waits(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a deployment of `add` and a worker
    start_worker("seed")
    deployment_id = await deploy_add("no-wait")

    # When ten runs are started with run_deployment(timeout=0) (it returns at once)
    started = [
        await run_deployment("add/no-wait", parameters={"x": i, "y": 1}, timeout=0)
        for i in range(10)
    ]
    assert all(isinstance(r, FlowRun) for r in started)
    # And ten waits are gathered
    with anyio.fail_after(WITHIN):
        finished: list[FlowRun] = await asyncio.gather(
            *(wait_for_flow_run(flow_run_id=r.id) for r in started)
        )

    # Then every run completed with its own result
    assert [r.id for r in finished] == [r.id for r in started]
    assert all(r.state.type is StateType.COMPLETED for r in finished), [r.state for r in finished]
    async with get_client() as client:
        results = [await client.store.read_result(r.id) for r in finished]
    assert results == [i + 1 for i in range(10)]
    assert {r.deployment_id for r in finished} == {deployment_id}


async def test_the_pause_example_on_a_worker_fails_unresumed_and_completes_resumed(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given Prefect's pause example deployed, and a worker
    start_worker("seed")
    async with get_client() as client:
        deployment = await client.create_deployment("my-flow", "pause-example")
        unresumed = await client.create_flow_run_from_deployment(deployment)
        resumed = await client.create_flow_run_from_deployment(deployment)
    # When one run is resumed once it pauses, and the other is left alone
    with anyio.fail_after(WITHIN):
        while not (await read_run(resumed.id)).state.is_paused():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await aresume_flow_run(resumed.id)
    # Then the resumed run completes, and the other fails 2 s (+1) after it paused
    done = await wait_for_flow_run(resumed.id, timeout=WITHIN)
    assert done.state.type is StateType.COMPLETED, done.state
    failed = await wait_for_flow_run(unresumed.id, timeout=WITHIN)
    assert failed.state.type is StateType.FAILED
    assert failed.state.message == "The flow was paused and never resumed."
    paused_at = await paused_time(unresumed.id)
    assert 2.0 <= (failed.state.timestamp - paused_at).total_seconds() <= 3.0


async def read_run(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def paused_time(run_id: UUID) -> datetime:
    runtime = await get_runtime()
    [paused] = [e for e in await history(runtime, run_id) if e.type is StateType.PAUSED]
    return paused.timestamp
