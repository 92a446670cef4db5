"""Fencing at the script level: every write of an execution carries its attempt, and a
superseded execution's writes are refused (real server)."""

from __future__ import annotations

import pytest

from flowbus._redis.replies import Status
from flowbus._redis.runtime import get_runtime
from flowbus._redis.store import RunStore
from flowbus.states import Completed, Running, Scheduled, StateType

pytestmark = pytest.mark.anyio


async def taken_over(store: RunStore) -> tuple[str, int, int]:
    """A run started (attempt 1), then re-run by another execution (attempt 2)."""
    run = await store.create_run("flow-a", start=True)
    keys = await store.run_keys(run.id)
    first = run.run_count
    rescheduled = Scheduled(name="Rescheduled", message="Its worker stopped; re-running")
    assert (await store.set_state(run.id, rescheduled, expect=StateType.RUNNING)).accepted
    second = await store.scripts.start_run(keys, holder="worker-b")
    assert second.accepted
    return str(run.id), first, second.run_count


async def test_the_start_writes_the_attempt(runtime_closed: None) -> None:
    store = (await get_runtime()).store
    run_id, first, second = await taken_over(store)
    assert (first, second) == (1, 2)
    assert await store.attempt_of(run_id) == "2"


async def test_a_superseded_executions_transitions_and_results_are_refused(
    runtime_closed: None,
) -> None:
    store = (await get_runtime()).store
    run_id, stale, current = await taken_over(store)
    keys = await store.run_keys(run_id)

    completed = await store.set_state(
        run_id, Completed(), attempt=stale, task_results={"t-1": b"\x01"}
    )
    paused = await store.scripts.pause(
        keys, key="1", timeout_ms=None, reschedule=False, state_name="Paused", attempt=stale
    )
    written = await store.save_task_results(run_id, {"t-2": b"\x02"}, attempt=stale)

    assert completed.status is Status.STALE and "attempt 1 is stale" in completed.detail
    assert paused.status is Status.STALE
    assert not written
    run = await store.read_run(run_id)
    assert run.state.type is StateType.RUNNING and run.run_count == current
    assert await store.load_task_results(run_id) == {}


async def test_the_current_execution_and_callers_that_are_none_go_on(
    runtime_closed: None,
) -> None:
    store = (await get_runtime()).store
    run_id, _stale, current = await taken_over(store)

    assert await store.save_task_results(run_id, {"t-1": b"\x01"}, attempt=current)
    retrying = await store.set_state(run_id, Running(name="Retrying"), attempt=None)
    assert retrying.status is Status.REFUSED  # the rules still apply, no fencing
    done = await store.set_state(run_id, Completed(), attempt=current)
    assert done.accepted
