"""Custom validators judged before a resume is accepted: the paused process runs the real model
(field and model validators) for any resumer; invalid input is refused and the run stays
paused under the same key; with no owner answering, the JSON schema judges alone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pydantic
import pytest
from flowbus_worker.resume_requests import ResumeRequests
from pydantic import field_validator, model_validator

from flowbus import Flow, RunInput, StateType, aresume_flow_run, flow, pause_flow_run
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import FlowPauseTimeout, InvalidRunInput, NotPausedError
from flowbus.input import judging
from flowbus.input.run_input import schema_json
from tests.runs import (
    current_run_id,
    gather_outcomes,
    launch,
    pause_deadline,
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


class Order(RunInput):
    quantity: int
    note: str = ""

    @field_validator("quantity")
    @classmethod
    def even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("quantity must be even")
        return value

    @model_validator(mode="after")
    def explained(self) -> Order:
        if self.quantity > 100 and not self.note:
            raise ValueError("a large order needs a note")
        return self


def ordering(kind: str, ids: list[str], timeout: float = 30) -> Flow[..., Any]:
    if kind == "sync":

        @flow(name="ordering")
        def sync_body() -> Any:
            ids.append(current_run_id())
            return pause_flow_run(wait_for_input=Order, timeout=timeout).quantity

        return sync_body

    @flow(name="ordering")
    async def async_body() -> Any:
        ids.append(current_run_id())
        return (await pause_flow_run(wait_for_input=Order, timeout=timeout)).quantity

    return async_body


async def paused_order(kind: str, pause_for: float = 30) -> tuple[Any, str]:
    ids: list[str] = []
    handle = launch(ordering(kind, ids, pause_for))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)
    return handle, run_id


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("given", "message"),
    [({"quantity": 3}, "quantity must be even"), ({"quantity": 200}, "a large order needs a note")],
)
async def test_a_validator_refuses_the_resume_and_the_run_stays_paused(
    kind: str, given: dict[str, Any], message: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a run paused for Order, whose validators no JSON schema expresses
    handle, run_id = await paused_order(kind)

    # When it is resumed with input the schema accepts but a validator refuses
    # Then the resumer gets InvalidRunInput with the validator's message
    with pytest.raises(InvalidRunInput, match=message):
        await aresume_flow_run(run_id, given)

    # And the run is still paused under the same key, never having left it
    run = await read(run_id)
    assert (run.state.type, run.state.state_details.pause_key) == (StateType.PAUSED, "1")
    assert not [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]

    # And valid input then resumes it
    await aresume_flow_run(run_id, {"quantity": 4})
    assert (await (await handle).aresult()) == 4


@pytest.mark.parametrize("kind", KINDS)
async def test_of_concurrent_resumers_the_invalid_are_refused_and_one_valid_wins(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    handle, run_id = await paused_order(kind)
    inputs = [{"quantity": i} for i in range(20)]  # odd ones fail the validator
    calls: list[Callable[[], Any]] = [partial(aresume_flow_run, run_id, i) for i in inputs]
    outcomes = await gather_outcomes(calls)
    # an odd one is refused by the validator, or finds the run resumed already
    odds = [outcomes[i] for i in range(1, 20, 2)]
    assert all(isinstance(o, InvalidRunInput | NotPausedError) for o in odds), odds
    evens = [outcomes[i] for i in range(0, 20, 2)]
    assert evens.count(None) == 1
    assert sum(isinstance(o, NotPausedError) for o in evens) == 9
    assert (await (await handle).aresult()) == 2 * evens.index(None)


async def test_a_raw_resume_request_gets_the_validators_message(
    runtime_closed: None, background_closed: None
) -> None:
    handle, run_id = await paused_order("async")
    runtime = await get_runtime()
    requests = ResumeRequests(runtime, (await read(run_id)).queue)
    await requests.handle("1-1", {"run_id": run_id, "input": '{"quantity": 7}'})
    outcomes: Any = await runtime.redis.xrange(requests.keys.resume_outcomes())
    [(_, outcome)] = outcomes
    assert outcome[b"status"] == b"rejected"
    assert "quantity must be even" in json.loads(outcome[b"errors"])[0][1]
    assert (await read(run_id)).state.type is StateType.PAUSED
    await requests.handle("1-2", {"run_id": run_id, "input": '{"quantity": 8}'})
    assert (await (await handle).aresult()) == 8


@pytest.mark.parametrize("kind", KINDS)
async def test_prefects_validation_loop_still_works(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Prefect's documented pattern: pause again while the input does not validate
    ids: list[str] = []
    if kind == "sync":

        @flow(name="prefect-loop")
        def sync_body() -> int:
            ids.append(current_run_id())
            while True:
                try:
                    order: Order = pause_flow_run(wait_for_input=Order, timeout=30)
                    return order.quantity
                except pydantic.ValidationError:
                    continue

        handle = launch(sync_body)
    else:

        @flow(name="prefect-loop")
        async def async_body() -> int:
            ids.append(current_run_id())
            while True:
                try:
                    order: Order = await pause_flow_run(wait_for_input=Order, timeout=30)
                    return order.quantity
                except pydantic.ValidationError:
                    continue

        handle = launch(async_body)
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)
    with pytest.raises(InvalidRunInput):
        await aresume_flow_run(run_id, {"quantity": 5})
    await aresume_flow_run(run_id, {"quantity": 6})
    assert (await (await handle).aresult()) == 6


async def test_with_no_owner_answering_the_schema_judges_alone(
    monkeypatch: pytest.MonkeyPatch, runtime_closed: None
) -> None:
    # Given a pause whose input is judged by its owner, but no process holds it
    monkeypatch.setattr(judging, "OWNER_WAIT", 0.1)
    run = await running_run()
    s = await store()
    reply = await s.scripts.pause(
        await run_keys(run.id),
        key="1",
        timeout_ms=None,
        reschedule=False,
        state_name="Paused",
        input_prefix="paused-1",
        schema=schema_json(Order),
        judged=True,
    )
    assert reply.accepted

    # When it is resumed with input the schema accepts (the validator would not)
    # Then the resume goes through once the owner's time is up
    await aresume_flow_run(run.id, {"quantity": 3})
    assert (await read(run.id)).state.type is StateType.RUNNING


@pytest.mark.parametrize("kind", KINDS)
async def test_a_judged_resume_racing_the_deadline_has_one_winner(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    async def race(offset: float) -> tuple[str, BaseException | None]:
        ids: list[str] = []
        handle = launch(ordering(kind, ids, 0.3))
        [run_id] = await wait_for_ids(ids, 1)
        deadline = await pause_deadline(run_id)
        await asyncio.sleep(max(0.0, deadline - time.time() + offset))
        [outcome] = await gather_outcomes([partial(aresume_flow_run, run_id, {"quantity": 2})])
        state = await handle
        final = (await read(run_id)).state.type
        if outcome is None:
            assert (state.type, final) == (StateType.COMPLETED, StateType.COMPLETED)
        else:
            assert isinstance(outcome, FlowPauseTimeout | NotPausedError), outcome
            assert (state.type, final) == (StateType.FAILED, StateType.FAILED)
        return run_id, outcome

    results = await asyncio.gather(*(race((i % 5 - 2) * 0.005) for i in range(10)))
    for run_id, _ in results:
        left = [e for e in await run_events(run_id) if e["from_type"] == "PAUSED"]
        assert len(left) == 1


async def test_one_proposal_resumes_once_whether_its_owner_or_its_resumer_sends_it(
    runtime_closed: None,
) -> None:
    # Given a judged pause
    run = await running_run()
    s = await store()
    keys = await run_keys(run.id)
    common: dict[str, Any] = {"key": "1", "timeout_ms": None, "reschedule": False}
    assert (await s.scripts.pause(keys, state_name="Paused", judged=True, **common)).accepted

    # When the owner and the resumer (its verdict late) both send the same proposal
    first, second = await asyncio.gather(
        s.scripts.resume(keys, key="1", proposal="p1"),
        s.scripts.resume(keys, key="1", proposal="p1"),
    )

    # Then both are told it was accepted, the run left its pause once, and another
    # proposal finds it resumed
    assert first.accepted and second.accepted
    assert len([e for e in await run_events(run.id) if e["from_type"] == "PAUSED"]) == 1
    assert not (await s.scripts.resume(keys, key="1", proposal="p2")).accepted
