"""Flows and tasks run in-process against a real Redis: states, events, results, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from flowbus import (
    Cancelling,
    FlowRunContext,
    State,
    StateType,
    TaskRunContext,
    TaskRunFuture,
    flow,
    get_client,
    get_run_logger,
    task,
)
from flowbus._core.bridge import run_blocking
from flowbus._core.codec import decode, encode
from flowbus._engine.engine import FlowEngine
from flowbus._redis.queue_indexes import read_runs
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import MissingContext, SerializationError
from flowbus.models import FlowRun
from flowbus.states import Failed, Pending, Running, Scheduled
from tests.runs import history_entries

LIFECYCLE = [
    ("SCHEDULED", "Scheduled"),
    ("PENDING", "Pending"),
    ("RUNNING", "Running"),
    ("COMPLETED", "Completed"),
]


class Point(BaseModel):
    x: int
    y: int


class Opaque:
    """Neither msgpack nor pydantic can encode it; pickle can."""

    def __init__(self, value: int) -> None:
        self.value = value


async def only_run(flow_name: str) -> FlowRun:
    """The one run of ``flow_name`` in this test's namespace."""
    [run] = await read_runs((await get_runtime()).store, flow_name=flow_name)
    return run


async def run_events(flow_name: str) -> list[dict[str, str]]:
    """The state changes of the one run of ``flow_name``, oldest first (its history)."""
    store = (await get_runtime()).store
    run = await only_run(flow_name)
    history = store.keys.queue(run.queue).run(run.id).history
    return history_entries(await store.redis.lrange(history, 0, -1))


async def task_results(flow_name: str) -> dict[str, Any]:
    """The decoded task results persisted for the one run of ``flow_name``."""
    store = (await get_runtime()).store
    run = await only_run(flow_name)
    raw = await store.load_task_results(run.id)
    return {key: decode(data, allow_pickle=True) for key, data in raw.items()}


def kinds(events: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(e["type"], e["name"]) for e in events]


# -- flows called in-process ------------------------------------------------------------------


def test_a_sync_flow_completes_and_publishes_its_lifecycle(
    background_runtime_closed: None,
) -> None:
    @flow
    def add_numbers(a: int, b: int = 2) -> int:
        return a + b

    # When a sync flow is called from sync code
    result = add_numbers(1)

    # Then it returns its value, and its run COMPLETED through the four published states
    assert result == 3
    run = run_blocking(only_run, "add-numbers")
    assert run.state.type is StateType.COMPLETED
    assert (run.run_count, run.parameters) == (1, {"a": 1})
    assert kinds(run_blocking(run_events, "add-numbers")) == LIFECYCLE


@pytest.mark.anyio
async def test_an_async_flow_completes_and_publishes_its_lifecycle(
    runtime_closed: None,
) -> None:
    @flow(name="async-adder")
    async def adder(a: int, b: int) -> int:
        await anyio.lowlevel.checkpoint()
        return a + b

    state = await adder(2, 3, return_state=True)

    assert isinstance(state, State) and state.is_completed()
    assert (await state.result()) == 5
    run = await only_run("async-adder")
    assert run.state.type is StateType.COMPLETED
    assert await (await get_runtime()).store.read_result(run.id) == 5
    assert kinds(await run_events("async-adder")) == LIFECYCLE


def test_flow_parameters_are_validated_into_their_annotated_types(
    background_runtime_closed: None,
) -> None:
    @flow
    def area(p: Point) -> int:
        assert isinstance(p, Point)
        return p.x * p.y

    # (a dict where a Point is declared: validation coerces it, which the types cannot see)
    assert area({"x": 2, "y": 3}) == 6  # type: ignore[call-overload]


# -- tasks ---------------------------------------------------------------------------------------


def test_sync_tasks_run_inline_in_a_sync_flow(background_runtime_closed: None) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def doubles() -> list[int]:
        return [double(1), double(2)]

    assert doubles() == [2, 4]
    assert run_blocking(task_results, "doubles") == {"double-1": 2, "double-2": 4}


@pytest.mark.anyio
async def test_sync_and_async_tasks_run_inline_in_an_async_flow(runtime_closed: None) -> None:
    @task
    async def slow_double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow
    async def mixed() -> int:
        value: int = inc(await slow_double(3))
        return value

    assert await mixed() == 7
    assert await task_results("mixed") == {"slow_double-1": 6, "inc-1": 7}


def test_submitted_tasks_give_futures_in_a_sync_flow(background_runtime_closed: None) -> None:
    @task
    def square(x: int) -> int:
        time.sleep(0.01)
        return x * x

    @flow
    def squares() -> list[Any]:
        futures = [square.submit(i) for i in range(4)]
        assert all(isinstance(f, TaskRunFuture) for f in futures)
        futures[0].wait()
        first_state = futures[0].state
        values = [f.result() for f in futures]
        return [first_state.type.value, [f.task_run_key for f in futures], values]

    state_type, keys, values = squares()

    assert state_type == "COMPLETED"
    assert sorted(keys) == ["square-1", "square-2", "square-3", "square-4"]
    assert values == [0, 1, 4, 9]
    results = run_blocking(task_results, "squares")
    assert sorted(results.values()) == [0, 1, 4, 9]


@pytest.mark.anyio
async def test_submitted_sync_and_async_tasks_give_futures_in_an_async_flow(
    runtime_closed: None,
) -> None:
    @task
    def triple(x: int) -> int:
        return 3 * x

    @task
    async def negate(x: int) -> int:
        await asyncio.sleep(0)
        return -x

    @flow
    async def submitting() -> list[int]:
        futures = [triple.submit(2), negate.submit(5)]
        await asyncio.to_thread(futures[1].wait)
        assert futures[1].done() and futures[1].state.is_completed()
        return [await asyncio.to_thread(f.result) for f in futures]

    assert await submitting() == [6, -5]
    assert await task_results("submitting") == {"triple-1": 6, "negate-1": -5}


def test_future_state_is_pending_until_the_task_finishes(
    background_runtime_closed: None,
) -> None:
    @task
    def sleepy() -> int:
        time.sleep(0.2)
        return 1

    @flow
    def watcher() -> list[str]:
        future = sleepy.submit()
        before = future.state.type.value
        future.wait()
        return [before, future.state.type.value]

    assert watcher() == ["PENDING", "COMPLETED"]


def test_return_state_gives_states_for_called_and_submitted_tasks(
    background_runtime_closed: None,
) -> None:
    @task
    def one() -> int:
        return 1

    @task
    def broken() -> int:
        raise ValueError("task boom")

    @flow
    def stateful() -> list[Any]:
        called = one(return_state=True)
        submitted = one.submit(return_state=True)
        failed = broken(return_state=True)
        assert isinstance(called, State) and isinstance(submitted, State)
        assert failed.is_failed() and "ValueError: task boom" in (failed.message or "")
        with pytest.raises(ValueError, match="task boom"):
            failed.result()
        return [called.type.value, called.result(), submitted.type.value, submitted.result()]

    assert stateful() == ["COMPLETED", 1, "COMPLETED", 1]


def test_a_failing_task_fails_the_flow(background_runtime_closed: None) -> None:
    @task
    def explode() -> None:
        raise ValueError("boom")

    @flow
    def doomed() -> None:
        explode()

    # When the flow is called, Then the task's exception propagates
    with pytest.raises(ValueError, match="boom"):
        doomed()

    # And with return_state the flow's state is FAILED, naming the exception
    state = doomed(return_state=True)
    assert state.is_failed()
    assert "ValueError: boom" in (state.message or "")
    with pytest.raises(ValueError, match="boom"):
        state.result()


@pytest.mark.anyio
async def test_a_failing_async_flow_is_failed_in_redis(runtime_closed: None) -> None:
    @flow
    async def async_doomed() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await async_doomed()

    run = await only_run("async-doomed")
    assert run.state.type is StateType.FAILED
    assert "KeyError" in (run.state.message or "")
    assert kinds(await run_events("async-doomed"))[-1] == ("FAILED", "Failed")


# -- retries ---------------------------------------------------------------------------------------


def test_flow_retries_succeed_on_the_second_attempt(background_runtime_closed: None) -> None:
    attempts: list[int] = []

    @flow(retries=1)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time fails")
        return "ok"

    assert flaky() == "ok"

    run = run_blocking(only_run, "flaky")
    events = run_blocking(run_events, "flaky")
    assert run.run_count == 2 and run.state.type is StateType.COMPLETED
    assert kinds(events) == [
        *LIFECYCLE[:3],
        ("SCHEDULED", "AwaitingRetry"),
        ("RUNNING", "Retrying"),
        ("COMPLETED", "Completed"),
    ]
    assert events[3]["message"] == "first time fails"
    assert [e["run_count"] for e in events] == ["0", "0", "1", "1", "2", "2"]


def test_a_flow_out_of_retries_fails(background_runtime_closed: None) -> None:
    @flow(retries=2)
    def hopeless() -> None:
        raise RuntimeError("always")

    state = hopeless(return_state=True)

    assert state.is_failed()
    assert run_blocking(only_run, "hopeless").run_count == 3


def test_task_retries(background_runtime_closed: None) -> None:
    calls: list[int] = []

    @task(retries=2)
    def wobbly() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("flaky network")
        return len(calls)

    @task(retries=1)
    def doomed_task() -> int:
        raise ConnectionError("down")

    @flow
    def retrying() -> list[Any]:
        return [wobbly(), doomed_task(return_state=True).type.value]

    assert retrying() == [3, "FAILED"]


# -- result persistence and reuse ------------------------------------------------------------------


def test_a_rerun_of_the_same_flow_run_reuses_persisted_task_results(
    background_runtime_closed: None,
) -> None:
    # Given a flow whose first attempt fails after its first task
    calls = {"fetch": 0, "attempts": 0}

    @task
    def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x * 10

    @flow(retries=1)
    def pipeline() -> int:
        calls["attempts"] += 1
        first: int = fetch(1)
        if calls["attempts"] == 1:
            raise RuntimeError("crash after task 1")
        second: int = fetch(2)
        return first + second

    # When it is retried, Then task 1's result is reused, not recomputed
    assert pipeline() == 30
    assert calls == {"fetch": 2, "attempts": 2}
    assert run_blocking(task_results, "pipeline") == {"fetch-1": 10, "fetch-2": 20}


@pytest.mark.anyio
async def test_the_engine_reuses_a_stored_result_when_it_reruns_a_run(
    runtime_closed: None,
) -> None:
    calls: list[int] = []

    @task
    def compute() -> int:
        calls.append(1)
        return 1

    @flow
    async def rerun() -> int:
        value: int = compute()
        return value + 1

    # Given a run that failed once and whose results hash holds compute-1 = 41
    runtime = await get_runtime()
    store = runtime.store
    run = await store.create_run("rerun")
    for state in (Pending(), Running(), Failed()):
        assert (await store.set_state(run.id, state)).accepted
    assert (await store.set_state(run.id, Scheduled(), retry=True)).accepted
    await store.save_task_results(run.id, {"compute-1": encode(41)})

    # When the engine runs it again
    final = await FlowEngine(rerun, await store.read_run(run.id), runtime).run({})

    # Then the task did not run and its stored value was used
    assert final.is_completed() and (await final.result()) == 42
    assert calls == []
    assert (await store.read_run(run.id)).run_count == 2


def test_cache_key_names_the_result_and_deduplicates_calls(
    background_runtime_closed: None,
) -> None:
    calls: list[int] = []

    @task
    def lookup(x: int) -> int:
        calls.append(x)
        return x

    keyed = lookup.with_options(cache_key="k")

    @flow
    def cached_flow() -> list[int]:
        return [keyed(1), keyed(2), lookup(3)]

    # The second call under the same key returns the first result without running
    assert cached_flow() == [1, 1, 3]
    assert calls == [1, 3]
    assert run_blocking(task_results, "cached-flow") == {"k": 1, "lookup-1": 3}


def test_an_unencodable_task_result_fails_the_task(background_runtime_closed: None) -> None:
    @task
    def make_opaque() -> Opaque:
        return Opaque(1)

    @flow
    def opaque_flow() -> str:
        state = make_opaque(return_state=True)
        assert state.is_failed()
        return state.message or ""

    message = opaque_flow()

    assert "SerializationError" in message and "serializer='pickle'" in message
    assert run_blocking(task_results, "opaque-flow") == {}


def test_an_unencodable_task_result_raises_serialization_error_in_the_flow(
    background_runtime_closed: None,
) -> None:
    @task
    def make_opaque() -> Opaque:
        return Opaque(1)

    @flow
    def opaque_raiser() -> None:
        make_opaque()

    with pytest.raises(SerializationError, match="Cannot encode"):
        opaque_raiser()
    state = opaque_raiser(return_state=True)
    assert "SerializationError" in (state.message or "")


def test_an_unencodable_flow_result_fails_the_flow(background_runtime_closed: None) -> None:
    @flow
    def returns_opaque() -> Opaque:
        return Opaque(1)

    state = returns_opaque(return_state=True)

    assert state.is_failed() and "SerializationError" in (state.message or "")


def test_pickle_serializer_persists_and_restores_arbitrary_results(
    background_runtime_closed: None,
) -> None:
    calls: list[int] = []
    attempts: list[int] = []

    @task(serializer="pickle")
    def make_opaque() -> Opaque:
        calls.append(1)
        return Opaque(7)

    @flow(retries=1)
    def pickling() -> int:
        attempts.append(1)
        value = make_opaque()
        assert isinstance(value, Opaque)
        if len(attempts) == 1:
            raise RuntimeError("retry to restore from Redis")
        return value.value

    assert pickling() == 7
    assert calls == [1]
    stored = run_blocking(task_results, "pickling")["make_opaque-1"]
    assert isinstance(stored, Opaque) and stored.value == 7


def test_a_pydantic_result_is_restored_into_its_model(background_runtime_closed: None) -> None:
    seen: list[Any] = []

    @task
    def locate() -> Point:
        return Point(x=1, y=2)

    @flow(retries=1)
    def locating() -> int:
        point: Point = locate()
        seen.append(point)
        if len(seen) == 1:
            raise RuntimeError("retry to restore from Redis")
        return point.x + point.y

    assert locating() == 3
    assert seen == [Point(x=1, y=2), Point(x=1, y=2)]
    assert all(isinstance(point, Point) for point in seen)
    assert run_blocking(task_results, "locating") == {"locate-1": {"x": 1, "y": 2}}


def test_a_result_typed_with_a_local_class_is_still_reused(
    background_runtime_closed: None,
) -> None:
    class Local(BaseModel):  # not resolvable by get_type_hints under postponed annotations
        v: int

    calls: list[int] = []

    @task
    def make_local() -> Local:
        calls.append(1)
        return Local(v=1)

    @flow(retries=1)
    def local_flow() -> Any:
        value = make_local()
        if len(calls) == 1 and not isinstance(value, dict):
            raise RuntimeError("retry to restore from Redis")
        return value

    # The restored value cannot be validated into Local, so it comes back as its JSON form
    assert local_flow() == {"v": 1}
    assert calls == [1]


# -- contexts, logging, timeouts -------------------------------------------------------------------


def test_contexts_and_logger_inside_and_outside_runs(
    background_runtime_closed: None, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}

    @task
    def inner(n: int) -> None:
        task_ctx = TaskRunContext.get()
        assert task_ctx is not None
        seen["task_key"] = task_ctx.task_run_key
        seen["task_params"] = task_ctx.parameters
        get_run_logger().info("from the task")

    @flow
    def contextual(n: int) -> None:
        ctx = FlowRunContext.get()
        assert ctx is not None
        seen["flow_run_id"] = str(ctx.flow_run.id)
        seen["task_outside_task"] = TaskRunContext.get()
        get_run_logger().info("from the flow")
        inner(n=n)

    # Outside any run: no contexts, and no logger
    assert FlowRunContext.get() is None and TaskRunContext.get() is None
    with pytest.raises(MissingContext):
        get_run_logger()

    with caplog.at_level(logging.INFO, logger="flowbus"):
        contextual(5)

    run = run_blocking(only_run, "contextual")
    assert seen == {
        "flow_run_id": str(run.id),
        "task_outside_task": None,
        "task_key": "inner-1",
        "task_params": {"n": 5},
    }
    records = {r.getMessage(): r for r in caplog.records if r.name.startswith("flowbus.")}
    flow_record, task_record = records["from the flow"], records["from the task"]
    assert flow_record.name == "flowbus.flow_runs"
    assert vars(flow_record)["flow_run_id"] == str(run.id)
    assert vars(flow_record)["flow_name"] == "contextual"
    assert task_record.name == "flowbus.task_runs"
    assert vars(task_record)["task_run_key"] == "inner-1"
    assert vars(task_record)["flow_run_id"] == str(run.id)
    assert FlowRunContext.get() is None


@pytest.mark.anyio
async def test_an_async_flow_over_its_timeout_fails_as_timed_out(runtime_closed: None) -> None:
    @flow(timeout_seconds=0.1)
    async def sleeper() -> None:
        await anyio.sleep(10)

    started = time.monotonic()
    state = await sleeper(return_state=True)

    assert time.monotonic() - started < 5
    assert state.is_failed() and state.name == "TimedOut"
    assert "exceeded timeout of 0.1 second(s)" in (state.message or "")
    run = await only_run("sleeper")
    assert (run.state.type, run.state.name) == (StateType.FAILED, "TimedOut")


def test_a_sync_flow_over_its_timeout_fails_as_timed_out(
    background_runtime_closed: None,
) -> None:
    @flow(timeout_seconds=0.1)
    def sync_sleeper() -> None:
        time.sleep(0.5)

    with pytest.raises(TimeoutError):
        sync_sleeper()
    assert run_blocking(only_run, "sync-sleeper").state.name == "TimedOut"


@pytest.mark.anyio
async def test_a_run_cancelled_while_it_finishes_ends_cancelled(runtime_closed: None) -> None:
    # Given a flow that is asked to cancel while it runs, and then returns
    release, started = asyncio.Event(), asyncio.Event()
    ids: list[str] = []

    @flow
    async def finishing() -> int:
        ctx = FlowRunContext.get()
        assert ctx is not None
        ids.append(str(ctx.flow_run.id))
        started.set()
        await release.wait()
        return 1

    running = asyncio.ensure_future(finishing(return_state=True))
    await started.wait()
    async with get_client() as client:
        await client.set_flow_run_state(ids[0], Cancelling())
    # When it returns after the request
    release.set()
    state = await running
    # Then the cancellation stands: CANCELLED, not COMPLETED
    assert state.is_cancelled()
    async with get_client() as client:
        assert (await client.read_flow_run(ids[0])).state.is_cancelled()


@pytest.mark.anyio
async def test_a_running_run_stops_at_its_next_task_boundary_when_cancelled(
    runtime_closed: None,
) -> None:
    # Given a flow between two tasks when a cancellation is asked
    release, started = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    contexts: list[FlowRunContext] = []

    @task
    def step(name: str) -> str:
        ran.append(name)
        return name

    @flow
    async def two_steps() -> None:
        ctx = FlowRunContext.get()
        assert ctx is not None
        contexts.append(ctx)
        step("one")
        started.set()
        await release.wait()
        step("two")

    running = asyncio.ensure_future(two_steps(return_state=True))
    await started.wait()
    async with get_client() as client:
        run_id = contexts[0].flow_run.id
        result = await client.set_flow_run_state(run_id, Cancelling())
        assert result.state is not None and result.state.is_cancelling()
    with anyio.fail_after(10):  # the request reaches the process through the control stream
        while contexts[0].interrupt != "cancel":  # noqa: ASYNC110 - a test-side wait
            await asyncio.sleep(0.01)
    # When the flow reaches its next task
    release.set()
    state = await running
    # Then it stops there: CANCELLED, and the second task never ran
    assert state.is_cancelled()
    assert ran == ["one"]


@pytest.mark.anyio
async def test_a_cancellation_whose_event_was_missed_is_found_by_a_re_read(
    runtime_closed: None,
) -> None:
    # Given a running flow whose run became CANCELLING without its process seeing the event
    # (as when a burst is trimmed from the capped control stream before it is read)
    started = asyncio.Event()
    contexts: list[FlowRunContext] = []

    @flow
    async def unaware() -> None:
        ctx = FlowRunContext.get()
        assert ctx is not None
        contexts.append(ctx)
        started.set()
        await asyncio.sleep(3600)

    running = asyncio.ensure_future(unaware(return_state=True))
    await started.wait()
    runtime = await get_runtime()
    run = contexts[0].flow_run
    keys = await runtime.store.run_keys(run.id)
    await runtime.redis.hset(keys.run, mapping={"state": "CANCELLING 0 1 - - 10 Cancelling"})
    # When its control watcher tells every waiter to re-read (what it does after such a loss)
    control = runtime.waiters.watchers[runtime.store.keys.queue(run.queue).control()]
    control.broadcast(None)
    # Then the run learns of the request
    with anyio.fail_after(10):
        while contexts[0].interrupt != "cancel":  # noqa: ASYNC110 - a test-side wait
            await asyncio.sleep(0.01)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
