"""Prefect 3's ``@flow``/``@task`` keywords, hooks, ``task.map``, ``wait_for`` and states."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import pytest

from flowbus import Flow, State, flow, get_run_logger, task, unmapped
from flowbus.context import FlowRunContext, TaskRunContext, get_run_context
from flowbus.exceptions import MissingContextError, PausedRun, UnfinishedRun, UpstreamTaskError
from flowbus.states import Completed, Paused, Pending, StateType

pytestmark = pytest.mark.anyio


def test_every_prefect_flow_keyword_is_accepted_and_the_ignored_ones_warn_once() -> None:
    def body() -> None:
        return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            flow(
                name="kw",
                version="1.2",
                flow_run_name="run-{x}",
                retries=1,
                retry_delay_seconds=[0, 0],
                task_runner=object(),
                description="d",
                timeout_seconds=5,
                validate_parameters=True,
                persist_result=True,
                result_storage=None,
                result_serializer="json",
                cache_result_in_memory=True,
                log_prints=True,
                on_completion=[],
                on_failure=[],
                on_cancellation=[],
                on_crashed=[],
                on_running=[],
            )(body)
    ignored = sorted(str(w.message).split("=")[0] for w in caught)
    assert ignored == [
        "cache_result_in_memory",
        "result_serializer",
        "result_storage",
        "task_runner",
    ]


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        flow(no_such_option=1)


def test_flow_options_are_honoured(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, str]] = []

    def on_completion(fl: Flow[..., Any], run: Any, state: State) -> None:
        seen.append(("completed", run.name))

    def on_failure(fl: Flow[..., Any], run: Any, state: State) -> None:
        seen.append(("failed", state.type.value))

    @flow(flow_run_name="greet-{who}", version="7", log_prints=True, on_completion=[on_completion])
    def greet(who: str) -> str:
        ctx = FlowRunContext.current()
        print(f"hello {who}")  # noqa: T201 - a run log line, not stdout
        return ctx.flow_run.name

    assert greet("ada") == "greet-ada"
    assert greet.version == "7"
    assert "hello ada" not in capsys.readouterr().out
    assert seen == [("completed", "greet-ada")]

    boom = greet.with_options(name="boom", on_failure=[on_failure], on_completion=[])

    @flow(on_failure=[on_failure])
    def fails() -> None:
        raise ValueError("no")

    fails(return_state=True)
    assert boom.name == "boom" and boom.version == "7"
    assert seen[-1] == ("failed", "FAILED")


def test_print_without_log_prints_stays_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    @flow
    def loud() -> None:
        print("plain")  # noqa: T201 - stays on stdout

    loud()
    assert "plain" in capsys.readouterr().out


def test_task_keywords_retries_timeout_hooks_and_cache_key_fn() -> None:
    calls: list[str] = []
    hooked: list[tuple[str, StateType]] = []

    def hook(tk: Any, task_run: Any, state: State) -> None:
        hooked.append((task_run.name, state.type))

    @task(retries=2, retry_delay_seconds=[0, 0], on_completion=[hook], tags=["a"])
    def flaky() -> int:
        calls.append("flaky")
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return 1

    @task(timeout_seconds=0.05, on_failure=[hook])
    def slow() -> None:
        time.sleep(0.5)

    @task(cache_key_fn=lambda context, parameters: f"sq-{parameters['n']}")
    def square(n: int) -> int:
        calls.append(f"square {n}")
        return n * n

    @flow
    def uses_tasks() -> tuple[int, StateType, int, int]:
        slow_state = slow(return_state=True)
        return flaky(), slow_state.type, square(3), square(3)

    assert uses_tasks() == (1, StateType.FAILED, 9, 9)
    assert hooked == [("slow-1", StateType.FAILED), ("flaky-1", StateType.COMPLETED)]
    assert calls.count("square 3") == 1  # the second call has the key's cached result


def test_task_map_unmapped_and_wait_for() -> None:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task
    def fails() -> None:
        raise ValueError("upstream")

    @flow
    def mapping() -> tuple[list[int], StateType, bool]:
        futures = add.map([1, 2, 3], unmapped(10))
        bad = fails.submit()
        after = add.submit(1, 1, wait_for=[bad], return_state=True)
        assert isinstance(after.result(raise_on_failure=False, _sync=True), UpstreamTaskError)
        ok = add(2, 2, wait_for=futures)
        return futures.result(), after.type, ok == 4

    assert mapping() == ([11, 12, 13], StateType.FAILED, True)


async def test_state_result_is_awaitable_in_async_code_and_names_its_runs(
    runtime_closed: None,
) -> None:
    @task
    async def double(n: int) -> int:
        return 2 * n

    @flow
    async def doubling() -> State:
        return await double(21, return_state=True)

    flow_state = await doubling(return_state=True)
    task_state = await flow_state.result()
    assert await task_state.result() == 42 and await task_state.aresult() == 42
    assert task_state.result(_sync=True) == 42
    assert flow_state.state_details.flow_run_id == task_state.state_details.flow_run_id
    assert task_state.state_details.task_run_id is not None


def test_result_of_unfinished_states_raises_prefects_errors() -> None:
    with pytest.raises(PausedRun):
        Paused().result()
    with pytest.raises(UnfinishedRun):
        Pending().result()
    assert Completed(data=3).result() == 3


def test_contexts_and_run_logger() -> None:
    @task
    def inner() -> str:
        ctx = get_run_context()
        assert isinstance(ctx, TaskRunContext)
        get_run_logger().info("from a task")
        assert ctx.task_run.id is not None and ctx.task_run.flow_run_id is not None
        return ctx.task_run.name

    @flow
    def outer() -> tuple[str, str]:
        ctx = get_run_context()
        assert isinstance(ctx, FlowRunContext) and ctx.parameters == {}
        return inner(), ctx.flow_run.flow_name

    assert outer() == ("inner-1", "outer")
    with pytest.raises(MissingContextError, match="No run context available"):
        get_run_context()
    with pytest.raises(RuntimeError):
        get_run_logger()


async def test_an_async_flow_waits_for_a_submitted_task(runtime_closed: None) -> None:
    @task
    def one() -> int:
        return 1

    @flow
    async def submits() -> int:
        future = one.submit()
        await asyncio.sleep(0)
        value: int = future.result()
        return value

    assert await submits() == 1


async def test_on_cancellation_runs_when_a_paused_flow_is_cancelled(runtime_closed: None) -> None:
    from flowbus.client.orchestration import get_client
    from flowbus.flow_runs import pause_flow_run
    from flowbus.states import Cancelling
    from tests.runs import current_run_id, wait_until

    seen: list[str] = []
    ids: list[str] = []

    @flow(on_cancellation=[lambda fl, run, state: seen.append(state.type.value)])
    async def waits() -> None:
        ids.append(current_run_id())
        await pause_flow_run(timeout=30)

    handle = asyncio.ensure_future(waits(return_state=True))
    while not ids:  # noqa: ASYNC110 - a test-side wait for the flow to start
        await asyncio.sleep(0.01)
    await wait_until(ids[0], StateType.PAUSED)
    await get_client().set_flow_run_state(ids[0], Cancelling())
    assert (await handle).is_cancelled() and seen == ["CANCELLED"]


async def test_a_failed_state_read_back_raises_failed_run(runtime_closed: None) -> None:
    from flowbus.client.orchestration import get_client
    from flowbus.exceptions import FailedRun

    @flow
    async def breaks() -> None:
        raise ValueError("broken")

    state = await breaks(return_state=True)
    with pytest.raises(ValueError, match="broken"):
        await state.result()  # the exception itself, in the process that ran it
    assert state.state_details.flow_run_id is not None
    read = await get_client().read_flow_run(state.state_details.flow_run_id)
    with pytest.raises(FailedRun, match="broken"):
        await read.state.result()


async def test_sync_overrides_the_dispatch() -> None:
    from flowbus.flow_runs import pause_flow_run

    pending = pause_flow_run(_sync=False)  # type: ignore[call-arg]  # Prefect's override
    assert asyncio.iscoroutine(pending)
    pending.close()


def test_serving_keywords_prefect_has_and_flowbus_ignores_warn() -> None:
    @flow
    def scheduled() -> None:
        return None

    with pytest.warns(UserWarning, match="cron= is accepted"):
        deployment = scheduled.to_deployment("nightly", cron="0 3 * * *", parameters={})
    assert (deployment.full_name, deployment.queue_name) == ("scheduled/nightly", "serve-scheduled")
