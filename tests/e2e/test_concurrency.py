"""Given a worker of some ``--concurrency``, at most that many runs' code executes at once; a
run's final-state hooks are its code too."""

from __future__ import annotations

import pytest

from flowbus import get_client
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


def most_at_once(marks: list[bytes], ends: bytes) -> int:
    """The most runs between a ``start`` mark and their ``ends`` mark at any one time."""
    running = most = 0
    for mark in marks:
        running += (mark == b"start") - (mark == ends)
        most = max(most, running)
    return most


async def run_all(flow_name: str, tag: str, runs: int, *, hooked: bool = False) -> list[bytes]:
    """Run ``runs`` runs of the deployed ``flow_name`` (and their hooks, when ``hooked``); the
    marks their code left."""
    async with get_client() as client:
        deployment = await client.create_deployment(flow_name, f"d-{tag}")
        created = [
            await client.create_flow_run_from_deployment(deployment, {"tag": tag})
            for _ in range(runs)
        ]
        for run in created:
            assert (await await_for_flow_run(run.id, timeout=90)).state.is_completed()
            if hooked:  # a hook runs after its run's final state
                assert await client.store.redis.blpop([key(f"hooked:{tag}")], timeout=60)
        marks = await client.store.redis.lrange(key(f"spans:{tag}"), 0, -1)
    return [mark if isinstance(mark, bytes) else mark.encode() for mark in marks]


async def test_at_most_concurrency_runs_execute_at_once(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker of concurrency 2, When eight runs that each span a while are run
    start_worker("w1", "--concurrency", "2")
    marks = await run_all("at-once", "plain", 8)
    # Then each ran, never more than two at once
    assert marks.count(b"start") == marks.count(b"end") == 8
    assert most_at_once(marks, ends=b"end") <= 2


async def test_a_run_s_completion_hooks_keep_its_place_until_they_end(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker of concurrency 1, When runs whose completion hook spans a while are run
    start_worker("w1", "--concurrency", "1")
    marks = await run_all("at-once-hooked", "hooked", 4, hooked=True)
    # Then no run started before the previous one's hook ended
    assert marks.count(b"hook-end") == 4
    assert most_at_once(marks, ends=b"hook-end") == 1
