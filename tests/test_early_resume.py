"""Resume before the pause, by key: the input waits under the key, the pause takes it at once,
once per key; concurrent early resumers and a resumer racing the pause have one winner."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest
from flowbus_worker.resume_requests import ResumeRequests

from flowbus import Flow, RunInput, StateType, aresume_flow_run, flow, pause_flow_run
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import NotPausedError
from tests.runs import (
    current_run_id,
    gather_outcomes,
    launch,
    read,
    run_events,
    wait_for_ids,
    wait_until,
)

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]


class Approval(RunInput):
    approved: bool
    note: str = ""


def gated(
    kind: str, ids: list[str], gate: threading.Event, *, pause: bool = True
) -> Flow[..., Any]:
    """Reports its run id, waits for ``gate``, then pauses under "approval" (if ``pause``)."""
    if kind == "sync":

        @flow(name="gated-approval")
        def sync_body() -> Any:
            ids.append(current_run_id())
            gate.wait(10)
            if not pause:
                return None
            got = pause_flow_run(wait_for_input=Approval, key="approval", timeout=30)
            return [got.approved, got.note]

        return sync_body

    @flow(name="gated-approval")
    async def async_body() -> Any:
        ids.append(current_run_id())
        await anyio.to_thread.run_sync(gate.wait, 10)
        if not pause:
            return None
        got = await pause_flow_run(wait_for_input=Approval, key="approval", timeout=30)
        return [got.approved, got.note]

    return async_body


async def started(kind: str, gate: threading.Event, *, pause: bool = True) -> tuple[Any, str]:
    ids: list[str] = []
    handle = launch(gated(kind, ids, gate, pause=pause))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.RUNNING)
    return handle, run_id


@pytest.mark.parametrize("kind", KINDS)
async def test_input_delivered_early_is_returned_by_the_pause_without_pausing(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a running flow that has not reached its pause under "approval"
    gate = threading.Event()
    handle, run_id = await started(kind, gate)

    # When it is resumed early under that key, then reaches the pause
    await aresume_flow_run(run_id, {"approved": True, "note": "early"}, key="approval")
    gate.set()

    # Then the pause returns that input at once: the run never entered PAUSED
    assert (await (await handle).aresult()) == [True, "early"]
    assert not [e for e in await run_events(run_id) if e["type"] == "PAUSED"]


@pytest.mark.parametrize("kind", KINDS)
async def test_of_concurrent_early_resumers_for_one_key_exactly_one_wins(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a running flow before its pause
    gate = threading.Event()
    handle, run_id = await started(kind, gate)

    # When 50 resumers deliver different inputs early for the same key
    calls: list[Callable[[], Any]] = [
        partial(aresume_flow_run, run_id, {"approved": True, "note": str(i)}, key="approval")
        for i in range(50)
    ]
    outcomes = await gather_outcomes(calls)

    # Then one is stored, the 49 others get NotPausedError, and the pause returns the winner's
    assert outcomes.count(None) == 1
    refusals = [o for o in outcomes if isinstance(o, NotPausedError)]
    assert len(refusals) == 49
    assert all("already delivered early" in o.reason for o in refusals)
    gate.set()
    assert (await (await handle).aresult()) == [True, str(outcomes.index(None))]


@pytest.mark.parametrize("kind", KINDS)
async def test_resumers_racing_the_pause_itself_have_one_winner(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    for _ in range(5):
        # Given a flow that pauses under "approval" right now
        gate = threading.Event()
        gate.set()
        ids: list[str] = []
        handle = launch(gated(kind, ids, gate))
        [run_id] = await wait_for_ids(ids, 1)

        # When resumers with key="approval" race the pause (some early, some after it)
        calls: list[Callable[[], Any]] = [
            partial(aresume_flow_run, run_id, {"approved": True, "note": str(i)}, key="approval")
            for i in range(30)
        ]
        outcomes = await gather_outcomes(calls)

        # Then exactly one input won, and it is the one the pause returned
        assert outcomes.count(None) == 1, outcomes
        assert all(isinstance(o, NotPausedError) for o in outcomes if o is not None)
        assert (await (await handle).aresult()) == [True, str(outcomes.index(None))]


@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_early_input_is_refused_by_the_pause_which_then_waits(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given input delivered early that the pause's type rejects (approved is not a bool)
    gate = threading.Event()
    handle, run_id = await started(kind, gate)
    await aresume_flow_run(run_id, {"approved": "perhaps"}, key="approval")

    # When the flow reaches the pause
    gate.set()
    paused = await wait_until(run_id, StateType.PAUSED, key="approval")

    # Then it pauses as usual, its message saying why the early input was refused
    assert (paused.state.message or "").startswith("early input refused: approved")
    await aresume_flow_run(run_id, {"approved": False, "note": "later"})
    assert (await (await handle).aresult()) == [False, "later"]


@pytest.mark.parametrize("kind", KINDS)
async def test_early_input_a_run_never_reached_is_named_in_its_final_event(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given input delivered early for a pause the flow never reaches
    gate = threading.Event()
    handle, run_id = await started(kind, gate, pause=False)
    await aresume_flow_run(run_id, {"approved": True}, key="approval")

    # When the run completes
    gate.set()
    assert (await (await handle).aresult()) is None

    # Then its final event lists the key whose input nobody took
    final = (await run_events(run_id))[-1]
    assert final["type"] == "COMPLETED"
    assert json.loads(final["early_unclaimed"]) == ["approval"]


async def test_an_early_resume_of_a_fired_key_or_a_final_run_is_refused(
    runtime_closed: None, background_closed: None
) -> None:
    # Given a run whose pause under "approval" fired, and which then completed
    gate = threading.Event()
    handle, run_id = await started("async", gate)
    gate.set()
    await wait_until(run_id, StateType.PAUSED, key="approval")
    await aresume_flow_run(run_id, {"approved": True}, key="approval")
    await handle

    # When input for that key is delivered again
    # Then it is refused: the run is final (and the key fired)
    with pytest.raises(NotPausedError) as refused:
        await aresume_flow_run(run_id, {"approved": True}, key="approval")
    assert "COMPLETED" in refused.value.reason


async def test_without_a_key_a_resume_before_the_pause_is_still_refused(
    runtime_closed: None, background_closed: None
) -> None:
    gate = threading.Event()
    handle, run_id = await started("async", gate)
    with pytest.raises(NotPausedError):
        await aresume_flow_run(run_id, {"approved": True})
    gate.set()
    await wait_until(run_id, StateType.PAUSED, key="approval")
    await aresume_flow_run(run_id, {"approved": True, "note": "on time"})
    assert (await (await handle).aresult()) == [True, "on time"]


async def test_a_raw_resume_request_with_a_key_delivers_early(
    runtime_closed: None, background_closed: None
) -> None:
    # Given a running flow before its pause, and the queue's resume-request handler
    gate = threading.Event()
    handle, run_id = await started("async", gate)
    runtime = await get_runtime()
    requests = ResumeRequests(runtime, (await read(run_id)).queue)

    # When a request names the key and carries JSON input
    fields = {"run_id": run_id, "key": "approval", "input": '{"approved": true, "note": "raw"}'}
    await requests.handle("1-1", fields)

    # Then it is accepted, and the pause returns that input
    outcomes: Any = await runtime.redis.xrange(requests.keys.resume_outcomes())
    assert [o[1][b"status"] for o in outcomes] == [b"accepted"]
    gate.set()
    assert (await (await asyncio.wait_for(handle, 10)).aresult()) == [True, "raw"]
