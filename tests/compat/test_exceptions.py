"""Prefect's exception types and messages: code that catches them ports unchanged."""

from __future__ import annotations

import pydantic
import pytest

from flowbus import flow, task
from flowbus.exceptions import FlowPauseTimeout, NotPausedError
from flowbus.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from flowbus.input import RunInput

pytestmark = pytest.mark.anyio


async def test_pausing_or_suspending_outside_a_run_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"^Flow runs can only be paused from within a flow run\.$"):
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
    with pytest.raises(NotPausedError, match=r"^Cannot resume a run that isn't paused!$"):
        await resume_flow_run(run_id)


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


async def test_the_documented_validation_loop_pauses_again(runtime_closed: None) -> None:
    import anyio

    from flowbus.context import FlowRunContext

    run_ids: list[str] = []
    asked = anyio.Event()

    @flow
    async def validating() -> tuple[int, int]:
        ctx = FlowRunContext.get()
        assert ctx is not None
        run_ids.append(str(ctx.flow_run.id))
        attempts = 0
        while True:
            attempts += 1
            asked.set()
            try:
                got = await pause_flow_run(wait_for_input=Range, key=f"try-{attempts}")
                return got.low, got.high
            except pydantic.ValidationError:
                continue

    async def resumer() -> None:
        from flowbus.client.orchestration import get_client

        async with get_client() as client:
            for answer in ({"low": 5, "high": 1}, {"low": 1, "high": 5}):
                while True:
                    run = await client.read_flow_run(run_ids[0]) if run_ids else None
                    if run is not None and run.state.is_paused():
                        break
                    await anyio.sleep(0.01)
                await resume_flow_run(run_ids[0], run_input=answer)
                await anyio.sleep(0)
                while (await client.read_flow_run(run_ids[0])).state.is_paused():
                    await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(resumer)
        result = await validating()
    assert result == (1, 5)
