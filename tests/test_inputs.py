"""Run input: RunInput models and their schemas (pure), and validation of resume input before
the compare-and-set (against a real Redis, for sync and async flows)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from flowbus import Flow, RunInput, StateType, aresume_flow_run, flow, pause_flow_run
from flowbus.exceptions import InvalidRunInput, PayloadTooLarge
from flowbus.input import judging
from flowbus.input.run_input import (
    AutomaticRunInput,
    check_against_schema,
    load_input,
    run_input_subclass_from_type,
    schema_json,
)
from flowbus.settings import get_settings
from tests.runs import (
    close_background_runtime,
    current_run_id,
    input_hash,
    launch,
    read,
    wait_for_ids,
    wait_until,
)

KINDS = ["sync", "async"]


class Order(RunInput):
    item: str
    quantity: int


class Range(RunInput):
    low: int
    high: int

    @model_validator(mode="after")
    def ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


class Point(BaseModel):
    x: int
    y: int


# -- models and schemas (no Redis) ---------------------------------------------------------------


def test_input_types_are_used_upgraded_or_wrapped_in_value() -> None:
    # A RunInput is used as is; a BaseModel gains RunInput's rules; anything else is wrapped
    assert run_input_subclass_from_type(Order) is Order
    upgraded = run_input_subclass_from_type(Point)
    assert issubclass(upgraded, RunInput) and issubclass(upgraded, Point)
    with pytest.raises(ValueError):
        upgraded.model_validate({"x": 1, "y": 2, "z": 3})
    wrapped = run_input_subclass_from_type(list[int])
    assert issubclass(wrapped, AutomaticRunInput)
    assert load_input(wrapped, {"value": [1, 2]}, "k") == [1, 2]


def test_with_initial_data_sets_defaults_and_a_description() -> None:
    # Given a form prefilled with a quantity and described in Markdown
    prefilled = Order.with_initial_data(description="How **many**?", quantity=2)

    # Then the quantity is optional, the item still required, and extra keys still invalid
    schema = json.loads(schema_json(prefilled))
    assert schema["required"] == ["item"]
    assert schema["properties"]["quantity"]["default"] == 2
    assert schema["additionalProperties"] is False
    assert prefilled._description == "How **many**?"
    assert Order._description is None
    # And an unknown name adds a field of its value's type, as in Prefect
    coloured = Order.with_initial_data(colour="red")
    assert coloured(item="tea", quantity=1).colour == "red"  # type: ignore[attr-defined]


def test_schema_check_lists_every_bad_field() -> None:
    schema = schema_json(Order)
    check_against_schema(schema, {"item": "tea", "quantity": 1})
    with pytest.raises(InvalidRunInput) as caught:
        check_against_schema(schema, {"item": 3, "quantity": "many", "extra": True})
    fields = [field for field, _ in caught.value.errors]
    assert fields == ["", "item", "quantity"]
    assert "extra" in caught.value.errors[0][1]


def test_loaded_input_carries_its_metadata() -> None:
    order = load_input(Order, {"item": "tea", "quantity": 1}, "approval")
    assert isinstance(order, Order)
    assert order.metadata is not None and order.metadata.key == "approval"


# -- validation before the compare-and-set -------------------------------------------------------


def waits_for(kind: str, ids: list[str], wait_for_input: Any) -> Flow[..., Any]:
    """A flow that reports its run id and returns the input its one pause received."""
    if kind == "sync":

        @flow(name="waits-for-input")
        def sync_body() -> Any:
            ids.append(current_run_id())
            got = pause_flow_run(wait_for_input=wait_for_input, timeout=30)
            return got.model_dump() if isinstance(got, BaseModel) else got

        return sync_body

    @flow(name="waits-for-input")
    async def async_body() -> Any:
        ids.append(current_run_id())
        got = await pause_flow_run(wait_for_input=wait_for_input, timeout=30)
        return got.model_dump() if isinstance(got, BaseModel) else got

    return async_body


async def paused_flow(kind: str, wait_for_input: Any) -> tuple[str, Any]:
    ids: list[str] = []
    handle = launch(waits_for(kind, ids, wait_for_input))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED)
    return run_id, handle


async def assert_still_paused(run_id: str) -> None:
    assert (await read(run_id)).state.type is StateType.PAUSED
    assert "paused-1-response" not in await input_hash(run_id)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_input_is_refused_and_the_run_stays_paused(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow waiting for an Order
    run_id, handle = await paused_flow(kind, Order)

    # When it is resumed with bad fields, extra keys, or nothing
    for bad in ({"item": 1, "quantity": "x"}, {"item": "tea", "quantity": 1, "rush": True}, None):
        with pytest.raises(InvalidRunInput) as caught:
            await aresume_flow_run(run_id, bad)
        # Then each is refused with its fields, and the run is still paused with no response
        assert caught.value.errors
        await assert_still_paused(run_id)
    with pytest.raises(InvalidRunInput) as caught:
        await aresume_flow_run(run_id, {"item": 1, "quantity": "x"})
    assert [field for field, _ in caught.value.errors] == ["item", "quantity"]

    # When a valid input comes, the flow receives it
    await aresume_flow_run(run_id, {"item": "tea", "quantity": 2})
    assert (await (await handle).result()) == {"item": "tea", "quantity": 2}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_no_input_resumes_with_the_initial_data(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow waiting for an Order whose fields all have initial data
    run_id, handle = await paused_flow(kind, Order.with_initial_data(item="coffee", quantity=3))

    # When it is resumed without input
    await aresume_flow_run(run_id)

    # Then the flow gets the defaults (no response was stored)
    assert (await (await handle).result()) == {"item": "coffee", "quantity": 3}
    assert "paused-1-response" not in await input_hash(run_id)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_plain_type_is_wrapped_in_value(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow waiting for an int
    run_id, handle = await paused_flow(kind, int)

    # When a bare value or a wrong type is sent, it is refused; {"value": 3} resumes it
    with pytest.raises(InvalidRunInput):
        await aresume_flow_run(run_id, {"value": "three"})
    await assert_still_paused(run_id)
    await aresume_flow_run(run_id, {"value": 3})

    # Then the flow gets 3 itself
    assert (await (await handle).result()) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_custom_validator_fails_inside_the_flow_when_no_owner_judged(
    kind: str, monkeypatch: pytest.MonkeyPatch, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow waiting for a Range whose validator the JSON schema cannot express, and no
    # owner judging resume input in time (see tests/test_resume_validators.py for the owner)
    monkeypatch.setattr(judging, "OWNER_WAIT", 0)
    run_id, handle = await paused_flow(kind, Range)

    # When it is resumed with an input the schema accepts but the validator does not
    await aresume_flow_run(run_id, {"low": 5, "high": 1})

    # Then the flow fails with pydantic's ValidationError naming the problem (as in Prefect)
    state = await handle
    assert state.type is StateType.FAILED
    with pytest.raises(ValidationError, match="low must not exceed high"):
        (await state.result())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_input_for_a_pause_that_wants_none_is_refused(
    kind: str, runtime_closed: None, background_closed: None
) -> None:
    # Given a flow paused without wait_for_input
    run_id, handle = await paused_flow(kind, None)

    # When it is resumed with an input, it is refused and stays paused
    with pytest.raises(InvalidRunInput):
        await aresume_flow_run(run_id, {"anything": 1})
    assert (await read(run_id)).state.type is StateType.PAUSED

    # And a plain resume works
    await aresume_flow_run(run_id)
    assert (await (await handle).result()) is None


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_an_input_over_the_payload_limit_is_refused(
    kind: str, monkeypatch: pytest.MonkeyPatch, runtime_closed: None, background_closed: None
) -> None:
    # Given runtimes built with a 256-byte payload limit, and a flow waiting for a str
    await close_background_runtime()
    monkeypatch.setenv("FLOWBUS_MAX_PAYLOAD_BYTES", "256")
    get_settings.cache_clear()
    run_id, handle = await paused_flow(kind, str)

    # When the input is too large
    # Then the resume is refused before anything is written, and the run stays paused
    with pytest.raises(PayloadTooLarge):
        await aresume_flow_run(run_id, {"value": "x" * 1000})
    await assert_still_paused(run_id)

    await aresume_flow_run(run_id, {"value": "small"})
    assert (await (await handle).result()) == "small"
