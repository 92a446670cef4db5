"""Given workers with different code on one queue, each run goes to a worker that has its flow."""

from __future__ import annotations

import pytest

from flowbus import StateType, get_client
from flowbus.flow_runs import await_for_flow_run
from flowbus.models import FlowRun
from tests.e2e.conftest import StartWorker
from tests.e2e.support import wait_for_log

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]

OTHER = ("--unknown-flow-timeout", "120")


async def add_runs(n: int) -> list[FlowRun]:
    async with get_client() as client:
        dep = await client.create_deployment("add", "d")
        return [
            await client.create_flow_run_from_deployment(dep, {"x": i, "y": 1}) for i in range(n)
        ]


async def test_a_run_waits_for_a_worker_with_its_flow(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given only a worker that lacks flow "add", and a run of it
    lacking = start_worker("lacking", *OTHER, module="tests.e2e.other_flows")
    (run,) = await add_runs(1)
    await wait_for_log(lacking, "is not known to this worker")
    # When a worker that has the flow starts later
    start_worker("having")
    # Then the run completes there, started once, and the first worker only warned about it
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.run_count == 1
    await wait_for_log(lacking, "handed to worker having")


async def test_runs_taken_by_a_worker_without_their_flow_are_handed_over(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker with the flow and one without, both reading the queue
    start_worker("having")
    lacking = start_worker("lacking", *OTHER, module="tests.e2e.other_flows")
    # When runs of the flow arrive
    runs = await add_runs(8)
    # Then every one completes, none failed, and each handed-over one was handed, not run
    for run in runs:
        done = await await_for_flow_run(run.id, timeout=90)
        assert done.state.type is StateType.COMPLETED, done.state
        assert done.run_count == 1
    assert lacking.proc.poll() is None
