"""``prefect.flow_engine``: running a flow run created elsewhere in this process."""

from __future__ import annotations

import pytest

from flowbus import flow
from flowbus.client.orchestration import get_client
from flowbus.exceptions import Pause
from flowbus.flow_engine import run_flow, run_flow_async, run_flow_sync
from flowbus.flow_runs import resume_flow_run, suspend_flow_run
from flowbus.states import StateType

pytestmark = pytest.mark.anyio


@flow(flow_run_name="doubling-{x}")
async def doubles(x: int) -> int:
    return 2 * x


@flow
def triples(x: int) -> int:
    return 3 * x


async def test_a_run_the_client_created_executes_here_with_its_parameters(
    runtime_closed: None,
) -> None:
    client = get_client()
    created = await client.create_flow_run(doubles, parameters={"x": 21}, name="mine")
    assert created.state.type is StateType.SCHEDULED
    assert await run_flow_async(doubles, flow_run=created) == 42
    again = await client.read_flow_run(created.id)
    assert (again.name, again.state.type, again.run_count) == ("mine", StateType.COMPLETED, 1)
    assert await again.state.aresult() == 42


async def test_without_a_run_it_is_a_plain_call_and_can_return_the_state(
    runtime_closed: None,
) -> None:
    state = await run_flow(doubles, parameters={"x": 4}, return_type="state")
    assert state.is_completed() and await state.aresult() == 8
    run = await get_client().read_flow_run(state.state_details.flow_run_id)
    assert run.name == "doubling-4"


def test_a_sync_flow_runs_blocking() -> None:
    created = get_client(sync_client=True).create_flow_run(triples, parameters={"x": 5})
    assert run_flow_sync(triples, flow_run=created) == 15
    assert run_flow(triples, parameters={"x": 2}) == 6


async def test_a_suspended_run_goes_on_here_once_resumed_with_its_input(
    runtime_closed: None,
) -> None:
    executions = []

    @flow
    async def asks_for_a_number() -> int:
        executions.append(1)
        number: int = await suspend_flow_run(int)
        return 10 * number

    client = get_client()
    deployment_id = await client.create_deployment(asks_for_a_number.name, "here")
    created = await client.create_flow_run_from_deployment(deployment_id)
    with pytest.raises(Pause):
        await run_flow_async(asks_for_a_number, flow_run=created)
    suspended = await client.read_flow_run(created.id)
    assert (suspended.state.type, suspended.state.name) == (StateType.PAUSED, "Suspended")
    await resume_flow_run(created.id, run_input={"value": 4})
    assert await run_flow_async(asks_for_a_number, flow_run=created, parameters={}) == 40
    assert len(executions) == 2
    assert (await client.read_flow_run(created.id)).state.type is StateType.COMPLETED
