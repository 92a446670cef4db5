"""Run events parsed once, defensively: every reader gets a RunEvent, a malformed entry is a
MalformedEntry (or skipped with a log line naming its stream and id), never a crash."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import uuid4

import pytest

from flowbus._core.codec import text
from flowbus._redis.events import RunEvent, history_events, parse_event
from flowbus._redis.runtime import get_runtime
from flowbus._redis.waiters import StreamWatcher, Subscription
from flowbus._redis.watch import history
from flowbus.exceptions import MalformedEntry
from flowbus.states import StateType
from tests.redis_clients import async_redis

pytestmark = pytest.mark.anyio

EVENT = {
    b"run_id": b"r1",
    b"flow": b"f",
    b"type": b"PAUSED",
    b"name": b"Paused",
    b"message": b"",
    b"from_type": b"RUNNING",
    b"from_name": b"Running",
    b"ts": b"1700000000000",
    b"run_count": b"1",
    b"pause_key": b"k",
    b"deadline": b"1700000001000",
}


def entry(**changes: bytes) -> dict[Any, Any]:
    """An event's fields as XADD takes them, with ``changes``."""
    return {**EVENT, **{name.encode(): value for name, value in changes.items()}}


def test_an_event_is_parsed_into_its_typed_fields() -> None:
    event = parse_event("1-0", EVENT)
    assert event == RunEvent(
        id="1-0",
        run_id="r1",
        flow="f",
        type=StateType.PAUSED,
        name="Paused",
        message="",
        from_type="RUNNING",
        from_name="Running",
        ts_ms=1700000000000,
        run_count=1,
        pause_key="k",
        deadline_ms=1700000001000,
        action="",
    )
    assert event.timestamp.timestamp() == 1700000000
    assert (event.state().type, event.state().name, event.state().message) == (
        StateType.PAUSED,
        "Paused",
        None,
    )


@pytest.mark.parametrize(
    "change",
    [
        {b"type": b"\xff\xfe"},  # not UTF-8
        {b"type": b"SLEEPING"},  # not a kind
        {b"run_count": b"one"},  # not a number
        {b"deadline": b"soon"},
    ],
)
def test_a_malformed_event_is_a_malformed_entry(change: dict[bytes, bytes]) -> None:
    with pytest.raises(MalformedEntry, match="run event.*entry 7-0"):
        parse_event("7-0", {**EVENT, **change})


@pytest.mark.parametrize("missing", [b"run_id", b"type"])
def test_an_event_missing_a_field_is_a_malformed_entry(missing: bytes) -> None:
    fields = {k: v for k, v in EVENT.items() if k != missing}
    with pytest.raises(MalformedEntry):
        parse_event("7-0", fields)


def test_history_readers_skip_a_malformed_entry_and_name_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = b'{"id": "2-0", "type": "PAUSED", "name": "Paused", "ts": 5, "run_count": 1}'
    raw = [b'{"id": "1-0", "type": "\xff"}', b"[" * 100, b"7", good]
    with caplog.at_level(logging.WARNING, logger="flowbus._redis.events"):
        events = history_events("r1:history", "r1", "f", raw)
    assert [(e.id, e.run_id, e.flow, e.type, e.ts_ms, e.run_count) for e in events] == [
        ("2-0", "r1", "f", StateType.PAUSED, 5, 1)
    ]
    assert "entry 0 of r1:history" in caplog.text and "entry 2 of r1:history" in caplog.text


async def test_a_watcher_skips_a_malformed_event_and_delivers_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a watcher with a waiter on run "mine"
    redis = async_redis()
    stream = f"watched:{uuid4()}"
    watcher = StreamWatcher(async_redis(), [stream], 60.0)
    sub = Subscription("mine")
    watcher.add(stream, sub)
    await watcher.pin_cursors()
    watcher.task = asyncio.create_task(watcher.run())
    try:
        # When an entry of that run that is not an event lands, then a real one
        with caplog.at_level(logging.WARNING, logger="flowbus._redis.events"):
            bad = await redis.xadd(stream, entry(run_id=b"mine", type=b"\xff"))
            await redis.xadd(stream, entry(run_id=b"mine", type=b"COMPLETED"))
            event = await asyncio.wait_for(sub.next(), 10)
        # Then the waiter gets the real one, and the bad one is logged by stream and id
        assert event is not None and event.type is StateType.COMPLETED
        assert text(bad) in caplog.text and stream in caplog.text
        assert not watcher.task.done()
    finally:
        await watcher.stop()
        await watcher.redis.aclose()
        await redis.delete(stream)
        await redis.aclose()


async def test_history_skips_what_is_not_an_event(runtime_closed: None) -> None:
    runtime = await get_runtime()
    run = await runtime.store.create_run("flow-a")
    keys = await runtime.store.run_keys(run.id)
    await runtime.redis.rpush(keys.history, '{"type": "?"}', "not json")
    assert [e.type for e in await history(runtime, run.id)] == [StateType.SCHEDULED]
