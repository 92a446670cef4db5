"""send_input / receive_input: delivery, idempotency, non-destructive reads, durable cursors."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import anyio
import pytest

from flowbus import FlowRunContext, RunInput, flow, receive_input, send_input
from flowbus.client import get_client
from flowbus.exceptions import FlowRunNotFound

pytestmark = pytest.mark.anyio


class Greeting(RunInput):
    text: str


async def new_run_id() -> UUID:
    async with get_client() as client:
        return (await client.create_flow_run("receiver")).id


async def test_inputs_arrive_in_order_and_a_repeated_idempotency_key_is_stored_once(
    runtime_closed: None,
) -> None:
    run_id = await new_run_id()
    # Given three sends, two of them with the same idempotency key
    await send_input(Greeting(text="one"), run_id)
    await send_input(Greeting(text="two"), run_id, idempotency_key="k")
    await send_input(Greeting(text="two again"), run_id, idempotency_key="k")
    # When the run receives them
    got = [g.text async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id)]
    # Then each distinct send arrives once, oldest first
    assert got == ["one", "two"]


async def test_reads_are_non_destructive_and_exclude_keys_filters(runtime_closed: None) -> None:
    run_id = await new_run_id()
    await send_input(Greeting(text="one"), run_id)
    await send_input(Greeting(text="two"), run_id)
    first = [g async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id)]
    # When a second receiver reads the same run, leaving out the first input's key
    skip = {first[0].metadata.key}
    again = [
        g.text
        async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, exclude_keys=skip)
    ]
    # Then it sees every other input again, as Prefect's receivers do
    assert ([g.text for g in first], again) == (["one", "two"], ["two"])


async def test_a_named_cursor_continues_after_what_it_consumed(runtime_closed: None) -> None:
    run_id = await new_run_id()
    await send_input(Greeting(text="once"), run_id)
    got = [
        g.text async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, cursor="c")
    ]
    # When a new receiver (a restart, a re-run) reads with the same cursor
    again = [
        g.text async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, cursor="c")
    ]
    # Then it does not see what was consumed; another cursor does
    other = [
        g.text async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, cursor="d")
    ]
    assert (got, again, other) == (["once"], [], ["once"])


async def test_a_cursor_delivers_again_an_input_it_did_not_acknowledge(
    runtime_closed: None,
) -> None:
    run_id = await new_run_id()
    await send_input(Greeting(text="x"), run_id)
    async for greeting in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, cursor="c"):
        assert greeting.text == "x"
        break  # the receiver stops before asking for the next: "x" is not consumed
    again = [
        g.text async for g in receive_input(Greeting, timeout=0.2, flow_run_id=run_id, cursor="c")
    ]
    assert again == ["x"]


async def test_timeout_none_waits_until_an_input_comes(runtime_closed: None) -> None:
    run_id = await new_run_id()
    receiver = receive_input(Greeting, timeout=None, flow_run_id=run_id)
    async with anyio.create_task_group() as tg:

        async def first() -> None:
            results.append((await receiver.receive()).text)

        results: list[str] = []
        tg.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        await send_input(Greeting(text="late"), run_id)
    assert results == ["late"]


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(tuple[str, str], ("a", "b")), (list[int], [1, 2]), (dict[str, int], {"a": 1})],
)
async def test_a_generic_alias_receives_what_a_value_of_its_origin_sends(
    runtime_closed: None, annotation: Any, value: Any
) -> None:
    run_id = await new_run_id()
    await send_input(value, run_id)
    got = [v async for v in receive_input(annotation, timeout=0.2, flow_run_id=run_id)]
    assert got == [value]


async def test_plain_types_are_wrapped_and_metadata_is_available(runtime_closed: None) -> None:
    run_id = await new_run_id()
    await send_input(41, run_id, sender="tests")
    await send_input("not an int", run_id)  # another type: another key prefix
    received = [
        m async for m in receive_input(int, timeout=0.2, flow_run_id=run_id, with_metadata=True)
    ]
    assert [m.value for m in received] == [41]
    meta = received[0].metadata
    assert (
        meta is not None
        and meta.key.startswith("intautomaticruninput-auto-")
        and meta.sender == "tests"
    )


async def test_timeout_error_on_request(runtime_closed: None) -> None:
    run_id = await new_run_id()
    with pytest.raises(TimeoutError):
        await receive_input(
            Greeting, timeout=0.1, flow_run_id=run_id, raise_timeout_error=True
        ).receive()


async def test_sending_to_an_unknown_run_fails_clearly(runtime_closed: None) -> None:
    with pytest.raises(FlowRunNotFound):
        await send_input(1, "00000000-0000-0000-0000-000000000000")


def test_a_sync_flow_receives_with_a_plain_for_loop() -> None:
    @flow
    def talker() -> list[str]:
        ctx = FlowRunContext.get()
        assert ctx is not None
        send_input(Greeting(text="sync"), ctx.flow_run.id)
        return [g.text for g in receive_input(Greeting, timeout=0.2)]

    assert talker() == ["sync"]
