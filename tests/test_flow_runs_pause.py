"""pause_flow_run against a real Redis: keyed one-shot pauses, atomic publication, deadlines,
cancellation and early resumes, for sync and async flows; no polling while paused."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import anyio
import pytest
from redis.crc import key_slot

from flowbus import (
    Cancelled,
    Cancelling,
    Completed,
    Flow,
    RunInput,
    Running,
    StateType,
    aresume_flow_run,
    flow,
    get_client,
    pause_flow_run,
)
from flowbus._redis.keys import Keys
from flowbus._redis.pauses import pause_view
from flowbus._redis.replies import Status
from flowbus.exceptions import FlowRunCancelled, MissingContext, NotPausedError
from flowbus.input.run_input import run_input_subclass_from_type, schema_json
from flowbus.settings import get_settings
from flowbus.states import Pending
from tests.conftest import on_cluster
from tests.redis_clients import summed
from tests.runs import (
    close_background_runtime,
    current_run_id,
    fired_keys,
    input_hash,
    launch,
    read,
    run_events,
    run_keys,
    running_run,
    store,
    wait_for_ids,
    wait_until,
)

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]


class Approval(RunInput):
    approved: bool
    reviewer: str = "anyone"


# -- keys ----------------------------------------------------------------------------------------


def two_default_pauses(kind: str, ids: list[str]) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="two-pauses")
        def sync_body() -> list[Any]:
            ids.append(current_run_id())
            return [pause_flow_run(), pause_flow_run()]

        return sync_body

    @flow(name="two-pauses")
    async def async_body() -> list[Any]:
        ids.append(current_run_id())
        return [await pause_flow_run(), await pause_flow_run()]

    return async_body


@pytest.mark.parametrize("kind", KINDS)
async def test_default_pause_keys_count_pauses_of_the_run(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow that pauses twice without a key
    ids: list[str] = []
    handle = launch(two_default_pauses(kind, ids))
    [run_id] = await wait_for_ids(ids, 1)

    # When each pause is resumed in turn
    # Then they were keyed "1" then "2", both fired, and the flow finished
    await wait_until(run_id, StateType.PAUSED, key="1")
    await aresume_flow_run(run_id)
    await wait_until(run_id, StateType.PAUSED, key="2")
    await aresume_flow_run(run_id)
    state = await handle
    assert state.type is StateType.COMPLETED
    assert (await state.result()) == [None, None]
    assert await fired_keys(run_id) == {"1", "2"}


def same_key_twice(kind: str, ids: list[str]) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="same-key")
        def sync_body() -> list[int]:
            ids.append(current_run_id())
            first = pause_flow_run(wait_for_input=int, key="approval")
            return [first, pause_flow_run(wait_for_input=int, key="approval")]

        return sync_body

    @flow(name="same-key")
    async def async_body() -> list[int]:
        ids.append(current_run_id())
        first = await pause_flow_run(wait_for_input=int, key="approval")
        return [first, await pause_flow_run(wait_for_input=int, key="approval")]

    return async_body


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fired_key_returns_its_stored_input_at_once_and_resets_on_retry(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow that pauses twice under the same custom key
    ids: list[str] = []
    handle = launch(same_key_twice(kind, ids))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="approval")

    # When the first pause is resumed with an input
    await aresume_flow_run(run_id, {"value": 7})
    state = await handle

    # Then the second pause returned the same input without pausing again (sync = async)
    assert (await state.result()) == [7, 7]
    paused = [e for e in await run_events(run_id) if e["type"] == "PAUSED"]
    assert [e["pause_key"] for e in paused] == ["approval"]
    assert await fired_keys(run_id) == {"approval"}

    # When the finished run is retried from its final state
    async with get_client() as client:
        await client.set_flow_run_state(run_id, Running(), force=True)

    # Then its fired keys are gone: a re-execution asks for its input again
    assert not await (await store()).redis.exists((await run_keys(run_id)).fired)


async def test_only_a_running_run_can_be_paused(runtime_closed: None) -> None:
    # Given runs in every non-RUNNING kind the pause script may meet
    s = await store()
    scheduled = await s.create_run("bare")
    pending = await s.create_run("bare")
    assert (await s.set_state(pending.id, Pending())).accepted
    paused = await running_run()
    assert (
        await s.scripts.pause(
            await run_keys(paused.id),
            key="a",
            timeout_ms=None,
            reschedule=False,
            state_name="Paused",
        )
    ).accepted
    cancelling = await running_run()
    assert (await s.set_state(cancelling.id, Cancelling())).accepted
    completed = await running_run()
    assert (await s.set_state(completed.id, Completed())).accepted

    for run in (scheduled, pending, paused, cancelling, completed):
        before = (await read(run.id)).state
        # When it is asked to pause (with an input schema)
        reply = await s.scripts.pause(
            await run_keys(run.id),
            key="b",
            timeout_ms=1000,
            reschedule=False,
            state_name="Paused",
            input_prefix="paused-b",
            schema="{}",
        )
        # Then it is refused, and neither the state nor the input hash changed
        assert reply.status is Status.REFUSED, (before.type, reply)
        after = (await read(run.id)).state
        assert (after.type, after.name, after.state_details.pause_key) == (
            before.type,
            before.name,
            before.state_details.pause_key,
        )
        assert "paused-b-schema" not in await input_hash(run.id)
        assert await fired_keys(run.id) == set()


async def test_pausing_outside_a_flow_is_refused(runtime_closed: None) -> None:
    # When pause_flow_run is called outside any flow run, from async and from sync code
    # Then both refuse with MissingContext
    with pytest.raises(MissingContext):
        await pause_flow_run()
    with pytest.raises(MissingContext):
        await anyio.to_thread.run_sync(pause_flow_run)


# -- atomic publication and the absolute deadline ------------------------------------------------


def waits_for_approval(kind: str, ids: list[str], model: type[RunInput]) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="approval")
        def sync_body() -> bool:
            ids.append(current_run_id())
            answer = pause_flow_run(wait_for_input=model, timeout=60)
            assert isinstance(answer, Approval)
            return answer.approved

        return sync_body

    @flow(name="approval")
    async def async_body() -> bool:
        ids.append(current_run_id())
        answer = await pause_flow_run(wait_for_input=model, timeout=60)
        assert isinstance(answer, Approval)
        return answer.approved

    return async_body


@pytest.mark.parametrize("kind", KINDS)
async def test_paused_state_schema_and_deadline_are_published_together(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow that waits for an Approval with a description, for at most 60 s
    model = Approval.with_initial_data(description="Ship **v2**?", reviewer="ops")
    ids: list[str] = []
    handle = launch(waits_for_approval(kind, ids, model))
    [run_id] = await wait_for_ids(ids, 1)

    # When the run is seen PAUSED (first look)
    run = await wait_until(run_id, StateType.PAUSED)

    # Then the schema and description were already there, under the pause's keyset
    details = run.state.state_details
    assert details.pause_key == "1"
    assert details.run_input_keyset == {
        "schema": "paused-1-schema",
        "response": "paused-1-response",
        "description": "paused-1-description",
    }
    stored = await input_hash(run_id)
    assert json.loads(stored["paused-1-schema"]) == json.loads(
        schema_json(run_input_subclass_from_type(model))
    )
    assert stored["paused-1-description"] == b"Ship **v2**?"
    assert "paused-1-response" not in stored

    # And the deadline is absolute: pause time + 60 s, indexed in the queue's deadline set
    assert details.pause_timeout is not None
    ahead = (details.pause_timeout - run.state.timestamp).total_seconds()
    assert abs(ahead - 60) < 0.05
    keys = await run_keys(run_id)
    score = await (await store()).redis.zscore(keys.deadlines, str(run_id))
    assert score == pytest.approx(details.pause_timeout.timestamp() * 1000, abs=1)
    await asyncio.sleep(0.05)
    assert (await read(run_id)).state.state_details.pause_timeout == details.pause_timeout

    # When it is resumed, the flow gets the input; the deadline leaves the index
    await aresume_flow_run(run_id, {"approved": True})
    assert (await (await handle).result()) is True
    assert await (await store()).redis.zscore(keys.deadlines, str(run_id)) is None


async def test_a_reader_never_sees_paused_without_its_schema(runtime_closed: None) -> None:
    # Given 30 runs about to pause with an input schema, and a reader watching them
    runs = [await running_run() for _ in range(30)]
    s = await store()
    seen_paused: set[str] = set()
    done = False

    async def reader() -> None:
        while not done:
            for run in runs:
                view = await pause_view(s, run.id)
                if view.state_type == "PAUSED":
                    # Then a PAUSED run always shows its schema
                    assert view.input_prefix == "paused-k"
                    assert view.schema == "{}"
                    seen_paused.add(str(run.id))
            await asyncio.sleep(0)

    # When they pause concurrently with the reader
    task = asyncio.ensure_future(reader())
    for run in runs:
        reply = await s.scripts.pause(
            await run_keys(run.id),
            key="k",
            timeout_ms=None,
            reschedule=False,
            state_name="Paused",
            input_prefix="paused-k",
            schema="{}",
            description="d",
        )
        assert reply.accepted
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    done = True
    await task
    assert len(seen_paused) == len(runs)


# -- cancellation and early resume ---------------------------------------------------------------


def long_pause(kind: str, ids: list[str]) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="long-pause")
        def sync_body() -> str:
            ids.append(current_run_id())
            pause_flow_run(timeout=30)
            return "resumed"

        return sync_body

    @flow(name="long-pause")
    async def async_body() -> str:
        ids.append(current_run_id())
        await pause_flow_run(timeout=30)
        return "resumed"

    return async_body


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelling_a_paused_run_wakes_it_at_once(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow paused for up to 30 s
    ids: list[str] = []
    handle = launch(long_pause(kind, ids))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)

    # When the run is cancelled from outside
    started = time.monotonic()
    async with get_client() as client:
        await client.set_flow_run_state(run_id, Cancelled())
    state = await handle

    # Then the flow ends CANCELLED well before its timeout
    assert time.monotonic() - started < 2
    assert state.type is StateType.CANCELLED
    with pytest.raises(FlowRunCancelled):
        (await state.result())
    assert (await read(run_id)).state.type is StateType.CANCELLED


async def test_resuming_a_run_that_is_not_paused_is_refused(runtime_closed: None) -> None:
    # Given a RUNNING run that has not paused
    run = await running_run()

    # When it is resumed
    # Then the resume is refused (policy: early resumes are not buffered), nothing changed
    with pytest.raises(NotPausedError):
        await aresume_flow_run(run.id)
    assert (await read(run.id)).state.type is StateType.RUNNING
    assert await fired_keys(run.id) == set()


def gated_pause(kind: str, ids: list[str], gate: threading.Event) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="gated")
        def sync_body() -> str:
            ids.append(current_run_id())
            gate.wait(10)
            pause_flow_run(timeout=30)
            return "resumed"

        return sync_body

    @flow(name="gated")
    async def async_body() -> str:
        ids.append(current_run_id())
        await anyio.to_thread.run_sync(gate.wait, 10)
        await pause_flow_run(timeout=30)
        return "resumed"

    return async_body


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resume_before_the_pause_is_refused_and_not_remembered(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a running flow that has not reached its pause yet
    ids: list[str] = []
    gate = threading.Event()
    handle = launch(gated_pause(kind, ids, gate))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.RUNNING)

    # When it is resumed early
    # Then the resume is refused with NotPausedError
    with pytest.raises(NotPausedError):
        await aresume_flow_run(run_id)

    # And the later pause still waits (nothing was buffered) until a real resume
    gate.set()
    await wait_until(run_id, StateType.PAUSED)
    await asyncio.sleep(0.1)
    assert (await read(run_id)).state.type is StateType.PAUSED
    await aresume_flow_run(run_id)
    assert (await (await handle).result()) == "resumed"


# -- no polling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_paused_run_costs_one_bounded_blocking_read(
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    flowbus_env: str,
    runtime_closed: None,
    background_closed: None,
) -> None:
    # Given runtimes built with a 1 s recheck, and a flow paused on them
    await close_background_runtime()
    monkeypatch.setenv("FLOWBUS_RECHECK_INTERVAL", "1")
    get_settings.cache_clear()
    ids: list[str] = []
    handle = launch(long_pause(kind, ids))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)
    before = summed("commandstats")

    # When the run stays paused for 3 s
    await asyncio.sleep(3)
    after = summed("commandstats")

    # Then the server saw only the watcher's re-blocks (≤ 1 XREAD per second) and the
    # process's heartbeat (one script per second writing its lease in the run's queue and
    # in the registry of holders: one script per slot of the two on a cluster), no state reads
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    keys = Keys(flowbus_env)
    held = (keys.queue("default").holders(), keys.holders())
    scripts = len({key_slot(k.encode()) for k in held}) if on_cluster() else 1
    heartbeat = {"cmdstat_eval": 4 * scripts, "cmdstat_time": 4 * scripts, "cmdstat_hset": 8}
    # (on a cluster a beat's two scripts may meet on one node and open its second connection)
    connects = {"cmdstat_hello"} if on_cluster() else set()
    assert set(delta) <= {"cmdstat_xread", "cmdstat_info", *connects, *heartbeat}, delta
    assert 1 <= delta.get("cmdstat_xread", 0) <= 4, delta
    assert all(delta.get(name, 0) <= most for name, most in heartbeat.items()), delta

    await aresume_flow_run(run_id)
    assert (await (await handle).result()) == "resumed"
