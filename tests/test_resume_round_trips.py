"""The round trips of a resume, counted on the commands this process packs: a resumer that
saw the run's pause schema sends one script call and reads nothing; a paused flow returns the
input its resume's event carries without reading the run; a schema seen at an earlier pause is
checked again by the script, and bad input still changes nothing; a run the resumer does not
know is looked for in the known queue its id's hint names before it is looked up."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest

from flowbus import (
    Flow,
    RunInput,
    StateType,
    aresume_flow_run,
    flow,
    pause_flow_run,
    resume_flow_run,
)
from flowbus._core.bridge import background_loop
from flowbus._redis.keys import Keys
from flowbus._redis.packing import _HiredisPacking
from flowbus._redis.run_ids import new_run_id
from flowbus.exceptions import InvalidRunInput
from flowbus.input.resuming import CARRIED_INPUT_CHARS
from tests.runs import (
    WITHIN,
    current_run_id,
    input_hash,
    launch,
    read,
    store,
    wait_for_ids,
    wait_until,
)

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]

#: Set while the test resumes: the commands packed in its context are the resumer's.
resuming: contextvars.ContextVar[bool] = contextvars.ContextVar("resuming", default=False)
#: What a new connection (or a cluster client's first use) sends before its first command.
CONNECTING = frozenset({"HELLO", "PING", "CLIENT", "SELECT", "AUTH", "CLUSTER SLOTS", "COMMAND"})
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


@pytest.fixture
def sent_by_another_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the commands packed on the background loop: a resumer of its own (sync
    calls run there, with a runtime that knows none of the test's runs)."""
    log: list[str] = []
    original = _HiredisPacking.pack_command

    def pack(self: Any, *args: Any) -> list[bytes]:
        name = str(args[0]).upper()
        setup = name in CONNECTING or name.startswith("CLIENT ")
        if asyncio.get_running_loop() is background_loop() and not setup:
            log.append(name)
        return original(self, *args)

    monkeypatch.setattr(_HiredisPacking, "pack_command", pack)
    yield log


async def paused_run(queue: str, run_id: UUID | None = None) -> str:
    """A run of ``queue`` (of id ``run_id``, if given) paused (without input) by this
    process, which holds it."""
    runs = await store()
    run = await runs.create_run("paused-here", queue=queue, start=True, run_id=run_id)
    keys = await runs.run_keys(run.id)
    pause = runs.scripts.pause(
        keys, key="k", timeout_ms=None, reschedule=False, state_name="Paused"
    )
    assert (await pause).accepted
    return str(run.id)


async def resumed_elsewhere(run_id: str, log: list[str]) -> list[str]:
    """The commands a resume of ``run_id`` from the other resumer sent; the run is RUNNING."""
    log.clear()
    await asyncio.to_thread(resume_flow_run, run_id)
    assert (await read(run_id)).state.type is StateType.RUNNING
    return list(log)


async def test_a_run_of_a_queue_the_resumer_knows_costs_one_call(
    sent_by_another_process: list[str], runtime_closed: None, background_closed: None
) -> None:
    # Given two paused runs of one queue, and a resumer that knows neither
    first, second = await paused_run("default"), await paused_run("default")

    # When it resumes one, Then it reads the queues first (it knows none yet), and the script
    # call finds the run in the one its id's hint names
    sent = await resumed_elsewhere(first, sent_by_another_process)
    assert sent == ["SMEMBERS", "FCALL"]
    # When it resumes the other, Then it looks for it in that queue: one script call
    assert await resumed_elsewhere(second, sent_by_another_process) == ["FCALL"]


async def test_a_run_not_in_the_queue_its_hint_names_gets_nothing_written_there(
    sent_by_another_process: list[str],
    flowbus_env: str,
    runtime_closed: None,
    background_closed: None,
) -> None:
    # Given a resumer that knows the queue "default", and a paused run of another queue whose
    # id (its creator's) carries the hint of "default"
    await resumed_elsewhere(await paused_run("default"), sent_by_another_process)
    elsewhere = await paused_run("other", new_run_id("default"))

    # When it resumes that run, Then its guess found no run (nothing written in "default"),
    # and the run's index sent it to the right queue
    sent = await resumed_elsewhere(elsewhere, sent_by_another_process)
    assert sent == ["FCALL", "EXISTS", "GET", "FCALL"]
    guessed = Keys(flowbus_env).queue("default").run(elsewhere)
    assert not await (await store()).redis.exists(guessed.run, guessed.history)

    # When it resumes a run of a queue born after it read the queues, Then it reads them again
    later = await paused_run("later")
    assert await resumed_elsewhere(later, sent_by_another_process) == ["SMEMBERS", "FCALL"]
    # And a run of the other queue it now knows costs one call
    third = await paused_run("other")
    assert await resumed_elsewhere(third, sent_by_another_process) == ["FCALL"]

    # When it resumes a run whose id (its creator's) carries no queue's hint, Then it reads
    # the queues once, and the run's index sends it to the run
    chosen = await paused_run("other", uuid4())
    sent = await resumed_elsewhere(chosen, sent_by_another_process)
    assert sent == ["SMEMBERS", "GET", "FCALL"]
