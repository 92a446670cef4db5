"""Waiting for one of several inputs (a union of RunInput models), and divergence detection: a
fired pause key reached again with another input type raises NonDeterminismError."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from flowbus import Flow, RunInput, StateType, aresume_flow_run, flow, pause_flow_run
from flowbus.exceptions import InvalidRunInput, NonDeterminismError, NotPausedError
from tests.runs import (
    current_run_id,
    gather_outcomes,
    input_hash,
    launch,
    wait_for_ids,
    wait_until,
)

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]


class Approve(RunInput):
    comment: str = ""


class Reject(RunInput):
    reason: str


def choosing(kind: str, ids: list[str]) -> Flow[..., Any]:
    """Pauses for ``Approve | Reject`` and returns the chosen model's name and fields."""

    def shown(got: Any) -> Any:
        return [type(got).__name__, got.model_dump()]

    if kind == "sync":

        @flow(name="choice")
        def sync_body() -> Any:
            ids.append(current_run_id())
            return shown(pause_flow_run(wait_for_input=Approve | Reject, timeout=30))

        return sync_body

    @flow(name="choice")
    async def async_body() -> Any:
        ids.append(current_run_id())
        return shown(await pause_flow_run(wait_for_input=Approve | Reject, timeout=30))

    return async_body


async def paused_choice(kind: str) -> tuple[Any, str]:
    ids: list[str] = []
    handle = launch(choosing(kind, ids))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)
    return handle, run_id


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("given", "chosen"),
    [
        ({"reason": "too big"}, ["Reject", {"reason": "too big"}]),
        ({"comment": "fine"}, ["Approve", {"comment": "fine"}]),
        ({}, ["Approve", {"comment": ""}]),  # both could not: the first that validates
    ],
)
async def test_the_pause_returns_whichever_model_the_input_is(
    kind: str, given: dict[str, Any], chosen: Any, runtime_closed: None, background_closed: None
) -> None:
    handle, run_id = await paused_choice(kind)
    await aresume_flow_run(run_id, given)
    assert (await (await handle).aresult()) == chosen


async def test_the_stored_schema_offers_the_choice(
    runtime_closed: None, background_closed: None
) -> None:
    # Given a run paused for Approve | Reject
    handle, run_id = await paused_choice("async")

    # Then its stored schema is anyOf the two models (what a form offers)
    schema = json.loads((await input_hash(run_id))["paused-1-schema"])
    choices = [schema["$defs"][ref["$ref"].split("/")[-1]]["title"] for ref in schema["anyOf"]]
    assert choices == ["Approve", "Reject"]

    # And input that is neither is refused before anything is written; the run stays paused
    with pytest.raises(InvalidRunInput):
        await aresume_flow_run(run_id, {"reason": 3})
    await wait_until(run_id, StateType.PAUSED)
    await aresume_flow_run(run_id, {"reason": "no"})
    assert (await (await handle).aresult()) == ["Reject", {"reason": "no"}]


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_resumers_with_different_choices_have_one_winner(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    handle, run_id = await paused_choice(kind)
    inputs = [{"comment": str(i)} if i % 2 else {"reason": str(i)} for i in range(40)]
    outcomes = await gather_outcomes([partial(aresume_flow_run, run_id, i) for i in inputs])
    assert outcomes.count(None) == 1
    assert sum(isinstance(o, NotPausedError) for o in outcomes) == 39
    winner = inputs[outcomes.index(None)]
    name, fields = await (await handle).aresult()
    assert fields == winner and name == ("Approve" if "comment" in winner else "Reject")


# -- divergence ------------------------------------------------------------------------------


def diverging(kind: str, ids: list[str], first: Any, then: Any) -> Flow[..., Any]:
    """Pauses under key "k" for ``first``; reaches "k" again waiting for ``then``."""
    if kind == "sync":

        @flow(name="diverging")
        def sync_body() -> None:
            ids.append(current_run_id())
            pause_flow_run(first, key="k", timeout=30)
            pause_flow_run(then, key="k", timeout=30)

        return sync_body

    @flow(name="diverging")
    async def async_body() -> None:
        ids.append(current_run_id())
        await pause_flow_run(first, key="k", timeout=30)
        await pause_flow_run(then, key="k", timeout=30)

    return async_body


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("first", "then", "names"),
    [
        (Approve, Reject, ("test_input_choice.Approve", "test_input_choice.Reject")),
        (None, Approve, ("None", "test_input_choice.Approve")),
        (Approve | Reject, Reject, ("Approve | tests.test_input_choice.Reject", "Reject")),
    ],
)
async def test_a_fired_key_reached_with_another_input_type_raises_naming_both(
    kind: str,
    first: Any,
    then: Any,
    names: tuple[str, str],
    runtime_closed: None,
    background_closed: None,
) -> None:
    # Given a run whose pause under "k" fired for one input type
    ids: list[str] = []
    handle = launch(diverging(kind, ids, first, then))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="k")
    await aresume_flow_run(run_id, {"comment": "ok"} if first else None)

    # When it reaches "k" again waiting for another type
    state = await handle

    # Then NonDeterminismError names both types
    with pytest.raises(NonDeterminismError) as caught:
        await state.aresult()
    message = str(caught.value)
    assert names[0] in message and names[1] in message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fired_key_reached_with_the_same_type_returns_its_input(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    ids: list[str] = []
    handle = launch(diverging(kind, ids, Approve, Approve))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="k")
    await aresume_flow_run(run_id, {"comment": "ok"})
    assert (await handle).is_completed()
