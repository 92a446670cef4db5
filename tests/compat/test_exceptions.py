"""Prefect's exception types and messages: code that catches them ports unchanged."""

from __future__ import annotations

import asyncio

import anyio
import pydantic
import pytest

from flowbus import flow, task
from flowbus.client.orchestration import get_client
from flowbus.exceptions import FlowPauseTimeout, NotPausedError
from flowbus.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from flowbus.input import RunInput, judging
from flowbus.states import StateType
from tests.runs import current_run_id, wait_until

pytestmark = pytest.mark.anyio


async def test_pausing_or_suspending_outside_a_run_is_a_runtime_error() -> None:
    with pytest.raises(
        RuntimeError, match=r"^Flow runs can only be paused from within a flow run\.$"
    ):
        await pause_flow_run()
    with pytest.raises(
        RuntimeError, match=r"^Flow runs can only be suspended from within a flow run\.$"
    ):
        await suspend_flow_run()


async def test_suspending_without_a_deployment_is_refused(runtime_closed: None) -> None:
    @flow
    async def lonely() -> None:
        await suspend_flow_run()

    with pytest.raises(RuntimeError, match=r"^Cannot suspend flows without a deployment\.$"):
        await lonely()


async def test_suspending_a_subflow_is_refused(runtime_closed: None) -> None:
    @flow
    async def child() -> None:
        await suspend_flow_run()

    @flow
    async def parent() -> None:
        await child()

    with pytest.raises(RuntimeError, match=r"^Cannot suspend subflows\.$"):
        await parent()


async def test_suspending_or_pausing_from_a_task_is_refused(runtime_closed: None) -> None:
    @task
    async def suspends() -> None:
        await suspend_flow_run()

    @task
    async def pauses() -> None:
        await pause_flow_run()

    @flow
    async def with_tasks() -> list[str]:
        messages = []
        for body in (suspends, pauses):
            try:
                await body()
            except RuntimeError as exc:
                messages.append(str(exc))
        return messages

    assert await with_tasks() == ["Cannot suspend task runs.", "Cannot pause task runs."]


async def test_resuming_a_run_that_is_not_paused(runtime_closed: None) -> None:
    @flow
    async def finishes() -> int:
        return 1

    state = await finishes(return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with pytest.raises(NotPausedError, match=r"^Cannot resume a run that isn't paused!$"):
        await resume_flow_run(run_id)


async def test_suspending_a_run_that_is_not_running_is_a_runtime_error(
    runtime_closed: None,
) -> None:
    # Prefect's server refuses to suspend a run that is not running, and suspend_flow_run
    # raises RuntimeError; the run is left as it was
    client = get_client()
    run = await client.create_flow_run("not-started")
    with pytest.raises(RuntimeError, match="cannot suspend"):
        await suspend_flow_run(flow_run_id=run.id)
    assert (await client.read_flow_run(run.id)).state.type is StateType.SCHEDULED


class Approval(RunInput):
    approved: bool


async def test_a_refused_resume_input_is_prefects_runtime_error(runtime_closed: None) -> None:
    # Prefect's server refuses input its schema does not accept, and resume_flow_run raises
    # RuntimeError("Cannot resume this run: Reason: ..."); the run stays paused
    started = anyio.Event()
    run_ids: list[str] = []

    @flow
    async def asks() -> bool:
        run_ids.append(current_run_id())
        started.set()
        approval: Approval = await pause_flow_run(wait_for_input=Approval)
        return approval.approved

    handle = asyncio.ensure_future(asks())
    await started.wait()
    await wait_until(run_ids[0], StateType.PAUSED)
    with pytest.raises(
        RuntimeError,
        match=r"^Cannot resume this run: Reason: .*'approved' is a required property",
    ):
        await resume_flow_run(run_ids[0])
    with pytest.raises(
        RuntimeError,
        match=r"^Cannot resume this run: Reason: .*'not a bool!' is not of type 'boolean'",
    ):
        await resume_flow_run(run_ids[0], run_input={"approved": "not a bool!"})
    assert (await wait_until(run_ids[0], StateType.PAUSED)).state.state_details.pause_key == "1"
    await resume_flow_run(run_ids[0], run_input={"approved": True})
    assert await handle is True


async def test_a_pause_nobody_resumes_raises_prefects_timeout(runtime_closed: None) -> None:
    @flow
    async def waits() -> None:
        await pause_flow_run(timeout=0.2)

    with pytest.raises(FlowPauseTimeout, match=r"^Flow run was paused and never resumed\.$"):
        await waits()


class Range(RunInput):
    low: int
    high: int

    @pydantic.model_validator(mode="after")
    def ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


async def test_the_documented_validation_loop_pauses_again(
    monkeypatch: pytest.MonkeyPatch, runtime_closed: None
) -> None:
    # Given Prefect's documented loop: pause again while the input fails its validator, and
    # no owner judging resume input in time (else the bad input is refused to the resumer)
    monkeypatch.setattr(judging, "OWNER_WAIT", 0)
    started = anyio.Event()
    run_ids: list[str] = []

    @flow
    async def validating() -> tuple[int, int]:
        run_ids.append(current_run_id())
        started.set()
        while True:
            try:
                got = await pause_flow_run(wait_for_input=Range)
                return got.low, got.high
            except pydantic.ValidationError:
                continue

    handle = asyncio.ensure_future(validating())
    await started.wait()
    # When a bad input and then a good one are sent to its first and second pause
    await wait_until(run_ids[0], StateType.PAUSED, key="1")
    await resume_flow_run(run_ids[0], run_input={"low": 5, "high": 1})
    await wait_until(run_ids[0], StateType.PAUSED, key="2")
    await resume_flow_run(run_ids[0], run_input={"low": 1, "high": 5})
    # Then the flow returns the good one
    assert await handle == (1, 5)
