"""The client calls around flow runs, as Prefect users make them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flowbus import flow, task
from flowbus.client.orchestration import get_client
from flowbus.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from flowbus.client.schemas.responses import SetStateStatus
from flowbus.exceptions import FlowRunNotFound, ObjectNotFound
from flowbus.flow_runs import pause_flow_run, resume_flow_run, wait_for_flow_run
from flowbus.states import Completed, Pending, Running, Scheduled, StateType, Suspended, now

pytestmark = pytest.mark.anyio


@flow
def target(x: int = 1) -> int:
    return x


async def test_methods_work_without_async_with(runtime_closed: None) -> None:
    client = get_client()
    run = await client.create_flow_run(target, parameters={"x": 2})
    assert (await client.read_flow_run(run.id)).parameters == {"x": 2}
    pending = await client.create_flow_run(flow=target, state=Pending())
    assert pending.state.is_pending()
    later = await client.create_flow_run(target, state=Scheduled(now() + timedelta(hours=1)))
    assert later.state.is_scheduled()


def test_the_sync_client() -> None:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(target)
        assert client.read_flow_run(run.id).state.is_scheduled()


async def test_force_skips_the_rules_even_into_suspended(runtime_closed: None) -> None:
    async with get_client() as client:
        dep = await client.create_deployment("target", "forced", queue="forced")
        run = await client.create_flow_run_from_deployment(dep)
        for state in (Pending(), Running(), Completed()):
            result = await client.set_flow_run_state(run.id, state, force=True)
            assert result.status is SetStateStatus.ACCEPT
        # a completed run forced back into Suspended, then resumed: rescheduled for workers
        await client.set_flow_run_state(run.id, Suspended(timeout_seconds=60), force=True)
        suspended = await client.read_flow_run(run.id)
        assert suspended.state.is_paused() and suspended.state.name == "Suspended"
        await resume_flow_run(run.id)
        assert (await client.read_flow_run(run.id)).state.type is StateType.SCHEDULED


async def test_deployments_by_name_and_from_deployment_with_a_state(runtime_closed: None) -> None:
    async with get_client() as client:
        dep_id = await client.create_deployment("target", "nightly", parameters={"x": 3})
        dep = await client.read_deployment_by_name("target/nightly")
        assert dep.id == dep_id
        soon = await client.create_flow_run_from_deployment(dep.id, state=Scheduled())
        later = await client.create_flow_run_from_deployment(
            dep.id, parameters={"x": 4}, state=Scheduled(now() + timedelta(hours=1))
        )
        assert (soon.parameters, later.parameters) == ({"x": 3}, {"x": 4})
        with pytest.raises(ObjectNotFound):
            await client.read_deployment_by_name("target/missing")


async def test_read_flow_runs_with_prefect_filters(runtime_closed: None) -> None:
    async with get_client() as client:
        dep = await client.create_deployment("target", "listed")
        a = await client.create_flow_run(target)
        b = await client.create_flow_run("other")
        c = await client.create_flow_run_from_deployment(dep)
        await client.set_flow_run_state(b.id, Pending())

        def ids(runs: list) -> set:  # type: ignore[type-arg]
            return {r.id for r in runs}

        by_flow = FlowFilter(name=FlowFilterName(any_=["target"]))
        assert ids(await client.read_flow_runs(flow_filter=by_flow)) == {a.id, c.id}
        pending = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))
        )
        assert ids(await client.read_flow_runs(flow_run_filter=pending)) == {b.id}
        by_id = FlowRunFilter(id=FlowRunFilterId(any_=[a.id, b.id]))
        assert ids(await client.read_flow_runs(flow_run_filter=by_id, limit=1)) <= {a.id, b.id}
        by_dep = DeploymentFilter(name=DeploymentFilterName(any_=["listed"]))
        assert ids(await client.read_flow_runs(deployment_filter=by_dep)) == {c.id}


async def test_flow_run_inputs_and_deleting_a_run(runtime_closed: None) -> None:
    async with get_client() as client:
        run = await client.create_flow_run(target)
        await client.create_flow_run_input(run.id, key="k", value='{"a": 1}', sender="s")
        assert await client.read_flow_run_input(run.id, "k") == '{"a": 1}'
        [found] = await client.filter_flow_run_input(run.id, "k", limit=5, exclude_keys=set())
        assert (found.key, found.sender, found.decoded_value) == ("k", "s", {"a": 1})
        await client.delete_flow_run_input(run.id, "k")
        with pytest.raises(ObjectNotFound):
            await client.read_flow_run_input(run.id, "k")
        await client.delete_flow_run(run.id)
        with pytest.raises(FlowRunNotFound):
            await client.read_flow_run(run.id)
        assert run.id not in {r.id for r in await client.read_flow_runs()}


async def test_client_resume_returns_an_orchestration_result(runtime_closed: None) -> None:
    from flowbus.flow_runs import pause_flow_run
    from tests.runs import current_run_id, wait_until

    ids: list[str] = []

    @flow
    async def pauses() -> str:
        ids.append(current_run_id())
        await pause_flow_run(timeout=30)
        return "done"

    handle = asyncio.ensure_future(pauses())
    while not ids:  # noqa: ASYNC110 - a test-side wait for the flow to start
        await asyncio.sleep(0.01)
    await wait_until(ids[0], StateType.PAUSED)
    result = await get_client().resume_flow_run(ids[0])
    assert result.status is SetStateStatus.ACCEPT
    assert await handle == "done"


async def _paused_for_approval() -> tuple[str, asyncio.Future[bool]]:
    """A flow run paused for an ``Approval`` (``approved: bool``), and its call's future."""
    from flowbus.input import RunInput
    from tests.runs import current_run_id, wait_until

    class Approval(RunInput):
        approved: bool

    ids: list[str] = []

    @flow
    async def asks() -> bool:
        ids.append(current_run_id())
        approval: Approval = await pause_flow_run(wait_for_input=Approval, timeout=30)
        return approval.approved

    handle = asyncio.ensure_future(asks())
    while not ids:  # noqa: ASYNC110 - a test-side wait for the flow to start
        await asyncio.sleep(0.01)
    await wait_until(ids[0], StateType.PAUSED)
    return ids[0], handle


async def test_client_resume_returns_a_refusal_as_prefects_server_does(
    runtime_closed: None,
) -> None:
    client = get_client()
    run_id, handle = await _paused_for_approval()
    # input the pause's schema refuses: REJECT, the run still paused, and why
    refused = await client.resume_flow_run(run_id, run_input={"approved": "not a bool!"})
    assert refused.status is SetStateStatus.REJECT
    assert refused.state is not None and refused.state.is_paused()
    assert refused.details.reason is not None
    assert "'not a bool!' is not of type 'boolean'" in refused.details.reason
    accepted = await client.resume_flow_run(run_id, run_input={"approved": True})
    assert accepted.status is SetStateStatus.ACCEPT
    assert await handle is True
    # a run that is not paused: ABORT with no state
    aborted = await client.resume_flow_run(run_id)
    assert (aborted.status, aborted.state) == (SetStateStatus.ABORT, None)
    assert aborted.details.reason == "Cannot resume a flow run that is not paused."


async def test_a_resume_whose_pause_schema_is_gone_is_refused_as_prefect_refuses_it(
    runtime_closed: None,
) -> None:
    client = get_client()
    run_id, handle = await _paused_for_approval()
    schema = await client.read_flow_run_input(run_id, "paused-1-schema")
    await client.delete_flow_run_input(run_id, "paused-1-schema")
    with pytest.raises(RuntimeError, match="^Cannot resume this run: Run input schema not found.$"):
        await resume_flow_run(run_id, run_input={"approved": True})
    refused = await client.resume_flow_run(run_id, run_input={"approved": True})
    assert refused.status is SetStateStatus.REJECT
    assert refused.details.reason == "Run input schema not found."
    assert refused.state is not None and refused.state.is_paused()
    # a schema stored again by hand is read; one that is no JSON refuses the resume too
    await client.create_flow_run_input(run_id, "paused-1-schema", "{not json")
    with pytest.raises(
        RuntimeError, match="^Cannot resume this run: Run input schema is not valid"
    ):
        await resume_flow_run(run_id, run_input={"approved": True})
    await client.delete_flow_run_input(run_id, "paused-1-schema")
    await client.create_flow_run_input(run_id, "paused-1-schema", schema)
    await resume_flow_run(run_id, run_input={"approved": True})
    assert await handle is True


async def test_a_completed_state_read_back_gives_the_runs_result(runtime_closed: None) -> None:
    # as with Prefect's API, a state read from the store loads the persisted result
    @flow
    async def answers() -> dict[str, int]:
        return {"answer": 42}

    state = await answers(return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    read = await get_client().read_flow_run(run_id)
    waited = await wait_for_flow_run(run_id)
    assert await read.state.result() == {"answer": 42}
    assert await waited.state.aresult() == {"answer": 42}


async def test_waiting_for_a_run_created_final_returns_it_unchanged(runtime_closed: None) -> None:
    from flowbus.exceptions import FlowRunWaitTimeout

    client = get_client()
    done = await client.create_flow_run(target, state=Completed())
    assert done.state.is_final() and await wait_for_flow_run(done.id) == done
    waiting = await client.create_flow_run(target)
    with pytest.raises(FlowRunWaitTimeout, match="exceeded watch timeout of 0 seconds"):
        await wait_for_flow_run(waiting.id, timeout=0)


async def test_task_runs_read_back_are_the_tasks_that_completed(runtime_closed: None) -> None:
    @task
    async def step(n: int) -> int:
        return n

    @task
    async def breaks() -> None:
        raise ValueError("no record of me")

    @flow
    async def two_steps_then_a_pause() -> None:
        await step(1)
        await step(2)
        await breaks(return_state=True)
        await pause_flow_run(timeout=0.05)
        await step(3)  # never reached: nobody resumes

    state = await two_steps_then_a_pause(return_state=True)
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    client = get_client()
    task_runs = await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
    )
    assert [(t.name, t.flow_run_id, t.state_type) for t in task_runs] == [
        ("step-1", run_id, StateType.COMPLETED),
        ("step-2", run_id, StateType.COMPLETED),
    ]
    assert len({t.id for t in task_runs}) == 2
    by_state = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
    )
    assert [t.name for t in await client.read_task_runs(flow_run_filter=by_state, limit=1)] == [
        "step-1"
    ]
