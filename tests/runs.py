"""Helpers shared by the flow-run tests (pause, resume, input, waiters); no tests of its own.

Sync flows run on flowbus's background loop (in a thread of the test), async flows on the
test's loop; both talk to the test's private server under the test's key prefix.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

import anyio

from flowbus import FlowRunContext, State
from flowbus._core.bridge import background_loop, submit
from flowbus._core.codec import blob, text
from flowbus._redis.keys import RunKeys
from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus._redis.store import RunStore
from flowbus.flows import Flow
from flowbus.models import FlowRun
from flowbus.states import Pending, Running, StateType

#: Seconds a helper waits for a run to reach a state before the test fails.
WITHIN = 10.0


def current_run_id() -> str:
    """The id of the flow run this code executes in."""
    return str(FlowRunContext.require("current_run_id").flow_run.id)


def launch(fl: Flow[..., Any], *args: Any) -> asyncio.Task[State]:
    """Start ``fl`` in the background and return its final state as a task.

    An async flow runs on the test's loop; a sync flow is called from a worker thread, as
    sync code calls it, so it runs on the background loop.
    """
    if fl.is_async:
        coro = fl(*args, return_state=True)
    else:
        call: Callable[[], Any] = partial(fl, *args, return_state=True)
        coro = anyio.to_thread.run_sync(call)
    return asyncio.ensure_future(coro)


async def close_background_runtime() -> None:
    """Close the background loop's runtime, so the next test builds one with its own env."""
    await asyncio.wrap_future(submit(background_loop(), close_runtime()))


async def store() -> RunStore:
    return (await get_runtime()).store


async def run_keys(run_id: UUID | str) -> RunKeys:
    return await (await store()).run_keys(run_id)


async def read(run_id: UUID | str) -> FlowRun:
    return await (await store()).read_run(run_id)


async def wait_until(
    run_id: UUID | str,
    state_type: StateType,
    *,
    key: str | None = None,
    within: float = WITHIN,
) -> FlowRun:
    """Poll (test-side only) until the run is ``state_type`` (under pause ``key``, if given)."""
    deadline = time.monotonic() + within
    while True:
        run = await read(run_id)
        if run.state.type is state_type and (
            key is None or run.state.state_details.pause_key == key
        ):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run.state.type} {run.state.name}")
        await asyncio.sleep(0.005)


async def wait_for_ids(ids: list[str], count: int, within: float = WITHIN) -> list[str]:
    """Wait until flows have reported ``count`` run ids into ``ids``."""
    with anyio.fail_after(within):
        while True:
            if len(ids) >= count:
                return ids[:count]
            await asyncio.sleep(0.005)


async def running_run() -> FlowRun:
    """A run created through the store and moved to RUNNING, with no process behind it."""
    s = await store()
    run = await s.create_run("bare")
    for state in (Pending(), Running()):
        assert (await s.set_state(run.id, state)).accepted
    return run


async def fired_keys(run_id: UUID | str) -> set[str]:
    s = await store()
    return {text(k) for k in await s.redis.smembers((await run_keys(run_id)).fired)}


async def input_hash(run_id: UUID | str) -> dict[str, bytes]:
    s = await store()
    raw = await s.redis.hgetall((await run_keys(run_id)).input)
    return {text(k): blob(v) for k, v in raw.items()}


#: Fields of a history entry, each "" where the entry leaves it out (it keeps no empty one).
HISTORY_FIELDS = (
    "id",
    "type",
    "name",
    "message",
    "from_type",
    "from_name",
    "ts",
    "run_count",
    "pause_key",
    "deadline",
)


def history_entries(raw: list[Any]) -> list[dict[str, str]]:
    """A run history's entries (an ``LRANGE`` reply) as text fields, "" for those left out."""
    entries = [json.loads(text(item)) for item in raw]
    return [
        {**{f: "" for f in HISTORY_FIELDS}, **{k: str(v) for k, v in e.items()}} for e in entries
    ]


async def run_events(run_id: UUID | str) -> list[dict[str, str]]:
    """The run's state changes (its history), oldest first."""
    s = await store()
    return history_entries(await s.redis.lrange((await run_keys(run_id)).history, 0, -1))


async def gather_outcomes(
    calls: list[Callable[[], Any]],
) -> list[BaseException | None]:
    """Run every call concurrently; each outcome is ``None`` (it returned) or its exception."""
    results = await asyncio.gather(*(c() for c in calls), return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


async def pause_deadline(run_id: str) -> float:
    """The deadline (s) its PAUSED event set: read even if the pause has ended since."""
    with anyio.fail_after(10):
        while True:
            for event in await run_events(run_id):
                if event["type"] == "PAUSED" and event.get("deadline"):
                    return int(event["deadline"]) / 1000
            await asyncio.sleep(0.005)
