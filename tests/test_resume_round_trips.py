"""The round trips of a resume with input, counted on the commands this process packs: a
resumer that saw the run's pause schema sends one script call and reads nothing; a paused
flow returns the input its resume's event carries without reading the run; a schema seen at
an earlier pause is checked again by the script, and bad input still changes nothing."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from flowbus import Flow, RunInput, StateType, aresume_flow_run, flow, pause_flow_run
from flowbus._redis.packing import _HiredisPacking
from flowbus.exceptions import InvalidRunInput
from flowbus.input.resuming import CARRIED_INPUT_CHARS
from tests.runs import WITHIN, current_run_id, input_hash, launch, wait_for_ids, wait_until

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]

#: Set while the test resumes: the commands packed in its context are the resumer's.
resuming: contextvars.ContextVar[bool] = contextvars.ContextVar("resuming", default=False)
#: What the paused flow adds to the log when its pause returns.
RETURNED = (False, "<pause returned>")


class Order(RunInput):
    item: str
    quantity: int


class Note(RunInput):
    text: str


@pytest.fixture
def packed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bool, str]]]:
    """Every command flowbus's connections pack in this process (each of its pools packs with
    hiredis): whether the resumer sent it, and its name."""
    log: list[tuple[bool, str]] = []
    original = _HiredisPacking.pack_command

    def pack(self: Any, *args: Any) -> list[bytes]:
        log.append((resuming.get(), str(args[0]).upper()))
        return original(self, *args)

    monkeypatch.setattr(_HiredisPacking, "pack_command", pack)
    yield log


def pausing_twice(
    kind: str, ids: list[str], log: list[tuple[bool, str]], second: type[RunInput]
) -> Flow[..., Any]:
    """A flow that pauses for an Order under "first", then for ``second`` under "second"
    (noting in ``log`` when each pause returns), and returns both inputs."""
    if kind == "sync":

        @flow(name="pauses-twice")
        def sync_body() -> list[Any]:
            ids.append(current_run_id())
            got = [pause_flow_run(Order, key="first", timeout=30)]
            log.append(RETURNED)
            got.append(pause_flow_run(second, key="second", timeout=30))
            log.append(RETURNED)
            return [g.model_dump() for g in got]

        return sync_body

    @flow(name="pauses-twice")
    async def async_body() -> list[Any]:
        ids.append(current_run_id())
        got = [await pause_flow_run(Order, key="first", timeout=30)]
        log.append(RETURNED)
        got.append(await pause_flow_run(second, key="second", timeout=30))
        log.append(RETURNED)
        return [g.model_dump() for g in got]

    return async_body


async def resume(run_id: str, run_input: dict[str, Any]) -> None:
    token = resuming.set(True)
    try:
        await aresume_flow_run(run_id, run_input)
    finally:
        resuming.reset(token)


async def until_returned(log: list[tuple[bool, str]]) -> list[str]:
    """The names of the commands packed before the paused flow's pause returned (once it
    has: a sync flow returns on another loop)."""
    with anyio.fail_after(WITHIN):
        while True:
            if RETURNED in log:
                return [name for _, name in log[: log.index(RETURNED)]]
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resumer_that_saw_the_run_s_pause_schema_sends_one_script_call(
    kind: str,
    packed: list[tuple[bool, str]],
    runtime_closed: None,
    background_closed: None,
) -> None:
    # Given a flow resumed once by this process, paused again for the same model
    ids: list[str] = []
    handle = launch(pausing_twice(kind, ids, packed, Order))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="first")
    await resume(run_id, {"item": "tea", "quantity": 1})
    await wait_until(run_id, StateType.PAUSED, key="second")
    packed.clear()

    # When this process resumes the second pause with valid input
    await resume(run_id, {"item": "cake", "quantity": 2})

    # Then it sent one command, the compare-and-set, naming the schema it checked against
    assert [name for mine, name in packed if mine] == ["FCALL"]
    # and the paused flow read nothing before its pause returned (the event carried the input)
    assert set(await until_returned(packed)) <= {"FCALL", "XREAD"}
    state = await handle
    assert await state.result() == [{"item": "tea", "quantity": 1}, {"item": "cake", "quantity": 2}]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_first_resume_reads_the_pause_s_schema_through_the_script_s_refusal(
    kind: str,
    packed: list[tuple[bool, str]],
    runtime_closed: None,
    background_closed: None,
) -> None:
    # Given a paused flow this process never resumed
    ids: list[str] = []
    handle = launch(pausing_twice(kind, ids, packed, Order))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="first")
    packed.clear()

    # When it resumes the pause with valid input
    await resume(run_id, {"item": "tea", "quantity": 1})

    # Then it sent two script calls: the first, refused, brought the pause's schema (nothing
    # else was read), the second resumed; the paused flow read nothing
    assert [name for mine, name in packed if mine] == ["FCALL", "FCALL"]
    assert set(await until_returned(packed)) <= {"FCALL", "XREAD"}
    await wait_until(run_id, StateType.PAUSED, key="second")
    await resume(run_id, {"item": "cake", "quantity": 2})
    await handle


async def test_a_schema_seen_at_an_earlier_pause_is_checked_again_and_bad_input_changes_nothing(
    packed: list[tuple[bool, str]], runtime_closed: None
) -> None:
    # Given a flow resumed once for an Order, paused again for a Note
    ids: list[str] = []
    handle = launch(pausing_twice("async", ids, packed, Note))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="first")
    await resume(run_id, {"item": "tea", "quantity": 1})
    await wait_until(run_id, StateType.PAUSED, key="second")
    packed.clear()

    # When it is resumed with input valid for an Order, not for a Note
    with pytest.raises(InvalidRunInput) as caught:
        await resume(run_id, {"item": "cake", "quantity": 2})

    # Then the script refused the Order's schema and sent the Note's, which refuses the input;
    # the run is still paused under "second" with no response stored
    assert [name for mine, name in packed if mine] == ["FCALL"]
    assert any("'text' is a required property" in why for _, why in caught.value.errors)
    await wait_until(run_id, StateType.PAUSED, key="second")
    assert "paused-second-response" not in await input_hash(run_id)

    # When a Note comes, Then it is checked against the Note's schema, now seen: one call
    packed.clear()
    await resume(run_id, {"text": "hello"})
    assert [name for mine, name in packed if mine] == ["FCALL"]
    state = await handle
    assert await state.result() == [{"item": "tea", "quantity": 1}, {"text": "hello"}]


async def test_input_too_long_for_the_event_is_read_by_the_paused_flow(
    packed: list[tuple[bool, str]], runtime_closed: None
) -> None:
    # Given a paused flow
    ids: list[str] = []
    handle = launch(pausing_twice("async", ids, packed, Note))
    [run_id] = await wait_for_ids(ids, 1)
    await wait_until(run_id, StateType.PAUSED, key="first")
    await resume(run_id, {"item": "tea", "quantity": 1})
    await wait_until(run_id, StateType.PAUSED, key="second")
    packed.clear()

    # When it is resumed with input longer than a resume's event carries
    long = "x" * CARRIED_INPUT_CHARS
    await resume(run_id, {"text": long})

    # Then the flow read it from the run, and got it whole
    assert "HGET" in await until_returned(packed)
    state = await handle
    assert await state.result() == [{"item": "tea", "quantity": 1}, {"text": long}]
