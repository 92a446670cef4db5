"""No content of a run's keys can crash a CLI command: bad entries are skipped, a run that
cannot be read is one line on stderr."""

from __future__ import annotations

import os
from typing import Any

import pytest

from flowbus import Completed, Pending, Running
from flowbus._redis.runtime import get_runtime
from tests.test_cli import cli, new_run

pytestmark = pytest.mark.anyio

FORGED: list[dict[bytes, bytes]] = [
    {b"run_id": b"\xff\xfe", b"type": b"\xff"},
    {b"type": b"NOT-A-STATE", b"ts": b"soon"},
    {b"type": b"RUNNING", b"ts": b"9" * 5000, b"run_count": b"x"},
    {b"nothing": b"[" * 5000},
]
#: History entries anyone could have pushed: not JSON, not an object, fields of no event.
FORGED_HISTORY: list[bytes] = [
    b"\xff\xfe",
    b"[" * 5000,
    b'"a string"',
    b'{"type": "NOT-A-STATE", "ts": "soon"}',
    b'{"type": "RUNNING", "ts": "' + b"9" * 5000 + b'", "run_count": "x"}',
]


async def test_inspect_and_watch_skip_events_that_are_not_ours(runtime_closed: None) -> None:
    # Given a run whose history, and its queue's events stream, also hold entries anyone
    # could have added
    run_id = await new_run(Pending(), Running())
    runtime = await get_runtime()
    keys = await runtime.store.run_keys(run_id)
    await runtime.redis.rpush(keys.history, *FORGED_HISTORY)
    for fields in FORGED:
        forged: dict[Any, Any] = {**fields, b"run_id": str(run_id).encode()}
        await runtime.redis.xadd(keys.queue_events, forged)
    await runtime.store.set_state(run_id, Completed())
    # When it is inspected and watched
    env = {**os.environ, "COLUMNS": "200"}
    for args in (("inspect", run_id), ("watch", run_id)):
        done = await cli(*args, env=env)
        # Then the real history is shown, the forged entries skipped
        assert done.returncode == 0, done
        assert "COMPLETED" in done.stdout and "Traceback" not in done.stderr, done


async def test_cli_commands_on_a_corrupted_run_print_one_line(runtime_closed: None) -> None:
    # Given a run whose hash holds bytes no reader expects
    run_id = await new_run(Pending(), Running(), Completed())
    runtime = await get_runtime()
    keys = await runtime.store.run_keys(run_id)
    await runtime.redis.hset(
        keys.run,
        mapping={"parameters": b"\xc1", "state": b"COMPLETED soon 1 9 Completed", "name": b"\xff"},
    )
    # When it is inspected, listed and waited on
    env = {**os.environ, "COLUMNS": "200"}
    for args in (("inspect", run_id), ("ls",), ("wait", run_id, "--timeout", "5")):
        done = await cli(*args, env=env)
        # Then nothing crashes: at most one line on stderr, no traceback
        assert "Traceback" not in done.stderr, done
        assert len(done.stderr.strip().splitlines()) <= 1, done
