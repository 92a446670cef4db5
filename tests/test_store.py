"""The run store against a real Redis: creation, the transition rules, events, TTLs, caps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from redis.exceptions import ResponseError

from flowbus import get_client
from flowbus._core.codec import encode, text
from flowbus._redis.keys import RunKeys
from flowbus._redis.queue_indexes import earliest_deadlines, read_runs
from flowbus._redis.records import unpack_state
from flowbus._redis.replies import CreateReply, Reply, Status
from flowbus._redis.run_ids import carries_queue, new_run_id, queue_hint
from flowbus._redis.runtime import get_runtime
from flowbus._redis.scripts import Call
from flowbus._redis.store import RunStore
from flowbus.exceptions import FlowRunNotFound, InvalidStateTransition, MalformedEntry
from flowbus.input.run_input import schema_digest
from flowbus.settings import Settings
from flowbus.states import FINAL_TYPES, State, StateType
from tests.redis_clients import summed
from tests.runs import HISTORY_FIELDS, history_entries
from tests.test_run_ids import COLLIDING

pytestmark = pytest.mark.anyio

S = StateType


#: The transition rules as the project states them (not read from the Lua that enforces them):
#: the kinds each non-final kind may move to; final kinds move only by an explicit retry.
ALLOWED: dict[str, set[str]] = {
    "NONE": {"SCHEDULED", "PENDING"},
    "SCHEDULED": {
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "CANCELLING",
        "CANCELLED",
        "FAILED",
        "CRASHED",
    },
    "PENDING": {"SCHEDULED", "RUNNING", "CANCELLING", "CANCELLED", "FAILED", "CRASHED"},
    "RUNNING": {
        "SCHEDULED",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CRASHED",
        "CANCELLING",
        "CANCELLED",
    },
    "PAUSED": {"SCHEDULED", "RUNNING", "PAUSED", "COMPLETED", "CANCELLED", "FAILED", "CRASHED"},
    "CANCELLING": {"CANCELLED", "COMPLETED", "FAILED", "CRASHED"},
}

#: A legal path from creation (SCHEDULED) to each kind; PAUSED is reached from RUNNING.
PATHS: dict[StateType, list[StateType]] = {
    S.SCHEDULED: [],
    S.PENDING: [S.PENDING],
    S.RUNNING: [S.PENDING, S.RUNNING],
    S.PAUSED: [S.PENDING, S.RUNNING],  # then pause.lua, the one script that pauses
    S.CANCELLING: [S.PENDING, S.RUNNING, S.CANCELLING],
    S.COMPLETED: [S.PENDING, S.RUNNING, S.COMPLETED],
    S.FAILED: [S.PENDING, S.RUNNING, S.FAILED],
    S.CRASHED: [S.PENDING, S.RUNNING, S.CRASHED],
    S.CANCELLED: [S.PENDING, S.RUNNING, S.CANCELLING, S.CANCELLED],
}

#: The fields every event has, in order (``message``, ``pause_key``, ``deadline`` follow when
#: they are not empty); its time is its entry id's, the run's flow and the name of the state
#: left are in its history.
EVENT_FIELDS = ["run_id", "type", "name", "from_type", "run_count"]


def state(kind: StateType, name: str | None = None, message: str | None = None) -> State:
    return State(type=kind, name=name or kind.value.title(), message=message)


@pytest.fixture
async def store(runtime_closed: None) -> AsyncIterator[RunStore]:
    """The run store of the test loop's runtime (closed at the end of the test)."""
    yield (await get_runtime()).store


def small_store(store: RunStore, **overrides: Any) -> RunStore:
    """A store on the same connection with some settings overridden (prefix from the env)."""
    return RunStore(store.redis, Settings(**overrides))


async def entries(store: RunStore, stream: str) -> list[dict[str, str]]:
    raw = await store.redis.xrange(stream) or []
    return [{text(k): text(v) for k, v in (fields or {}).items()} for _, fields in raw]


async def steps(store: RunStore, keys: RunKeys) -> list[dict[str, str]]:
    """The run's history, each field as text ("" where the entry leaves it out)."""
    return history_entries(await store.redis.lrange(keys.history, 0, -1))


async def snapshot(store: RunStore, keys: RunKeys) -> dict[str, Any]:
    """Everything a transition may write, to compare before and after a refusal."""
    return {
        "run": await store.redis.hgetall(keys.run),
        "history": await store.redis.lrange(keys.history, 0, -1),
        "queue_events": await store.redis.xrange(keys.queue_events),
        "queue": await store.redis.xrange(keys.queue_stream),
        "deadlines": await store.redis.zrange(keys.deadlines, 0, -1, withscores=True),
        # when they expire (a TTL read a second later would differ though nothing changed)
        "expire_at": [await store.redis.expiretime(key) for key in (keys.run, keys.history)],
    }


async def walk(store: RunStore, run_id: UUID, path: list[StateType]) -> None:
    for kind in path:
        reply = await store.set_state(run_id, state(kind))
        assert reply.accepted, reply.detail


async def reach(store: RunStore, kind: StateType) -> UUID:
    """A new run brought to ``kind`` by legal moves."""
    run = await store.create_run("flow-a")
    await walk(store, run.id, PATHS[kind])
    if kind is S.PAUSED:
        # pause.lua owns RUNNING → PAUSED (set_state refuses it): key "1", no timeout or input
        keys = await store.run_keys(run.id)
        reply = await store.scripts.pause(
            keys, key="1", timeout_ms=None, reschedule=False, state_name="Paused"
        )
        assert reply.accepted, reply.detail
    return run.id


# -- creation ------------------------------------------------------------------------------


async def test_create_run_records_a_scheduled_run_and_publishes_its_event(
    store: RunStore,
) -> None:
    # When a run is created
    run = await store.create_run("flow-a", {"x": 1}, queue="q1", name="first")

    # Then it is SCHEDULED, listed, not indexed (its id carries its queue), not enqueued, its
    # event published and recorded
    keys = store.keys.queue("q1").run(run.id)
    assert (run.state.type, run.state.name, run.run_count) == (S.SCHEDULED, "Scheduled", 0)
    assert (run.flow_name, run.name, run.queue, run.parameters) == (
        "flow-a",
        "first",
        "q1",
        {"x": 1},
    )
    assert await store.queue_of(run.id) == "q1"
    assert carries_queue(run.id, "q1") and run.id.version == 4
    assert not await store.redis.exists(store.keys.run_index(run.id))
    assert await store.redis.zscore(keys.runs, str(run.id)) is not None
    assert await store.redis.sismember(store.keys.queues(), "q1")
    assert await store.redis.xlen(keys.queue_stream) == 0
    [event] = await entries(store, keys.queue_events)
    assert event == {
        "run_id": str(run.id),
        "type": "SCHEDULED",
        "name": "Scheduled",
        "from_type": "NONE",
        "run_count": "0",
    }  # no empty field: no message, pause key, deadline
    [step] = await steps(store, keys)
    published: Any = await store.redis.xrange(keys.queue_events)
    [[event_id, _fields]] = published
    # the step is the event, with its entry's id and time
    assert step["id"] == text(event_id) and step["ts"] == text(event_id).partition("-")[0]
    assert step == {
        **{f: event.get(f, "") for f in HISTORY_FIELDS if f not in ("id", "ts", "from_name")},
        "id": step["id"],
        "ts": step["ts"],
        "from_name": "",
    }


async def test_a_run_hash_holds_neither_its_id_nor_its_queue(store: RunStore) -> None:
    # Given a run, and one whose hash holds its id and queue (as an earlier version wrote it)
    run = await store.create_run("flow-a", queue="q1")
    old = await store.create_run("flow-a", queue="q1")
    old_keys = store.keys.queue("q1").run(old.id)
    await store.redis.hset(old_keys.run, mapping={"id": str(old.id), "queue": "q1"})

    # Then the new run's key names both, its hash neither, and both runs read the same
    keys = store.keys.queue("q1").run(run.id)
    assert not await store.redis.hexists(keys.run, "id")
    assert not await store.redis.hexists(keys.run, "queue")
    for made in (run, old):
        read = await store.read_run(made.id)
        assert (read.id, read.queue, read.flow_name, read.state.type) == (
            made.id,
            "q1",
            "flow-a",
            S.SCHEDULED,
        )


async def test_create_run_pending_and_enqueued(store: RunStore) -> None:
    run = await store.create_run("flow-a", initial=S.PENDING, enqueue=True)

    keys = await store.run_keys(run.id)
    assert run.state.type is S.PENDING and run.state.name == "Pending"
    assert await entries(store, keys.queue_stream) == [
        {"run_id": str(run.id), "run_count": "0", "flow": "flow-a"}
    ]


@pytest.mark.parametrize("initial", sorted(set(S) - {S(kind) for kind in ALLOWED["NONE"]}))
async def test_create_run_in_another_kind_is_refused_and_writes_nothing(
    store: RunStore, initial: StateType
) -> None:
    run_id = uuid4()
    keys = store.keys.queue("default").run(run_id)

    with pytest.raises(InvalidStateTransition):
        await store.create_run("flow-a", initial=initial, run_id=run_id)

    assert await store.redis.exists(keys.run, keys.history, keys.queue_events) == 0
    assert await store.redis.exists(store.keys.run_index(run_id)) == 0
    assert await store.redis.zcard(keys.runs) == 0
    assert await read_runs(store) == []


async def test_create_run_with_an_existing_id_is_refused_and_changes_nothing(
    store: RunStore,
) -> None:
    run = await store.create_run("flow-a", {"x": 1})
    keys = await store.run_keys(run.id)
    before = await snapshot(store, keys)

    with pytest.raises(InvalidStateTransition, match="exists"):
        await store.create_run("flow-b", {"x": 2}, run_id=run.id)

    assert await snapshot(store, keys) == before


# -- the transition rules --------------------------------------------------------------------


def test_the_rules_table_covers_every_non_final_kind() -> None:
    non_final = {kind.value for kind in S if kind not in FINAL_TYPES}

    assert set(ALLOWED) == non_final | {"NONE"}
    assert ALLOWED["NONE"] == {"SCHEDULED", "PENDING"}
    assert all(targets <= {kind.value for kind in S} for targets in ALLOWED.values())


NON_FINAL_CASES = [(S(src), dst) for src in ALLOWED if src != "NONE" for dst in S]


@pytest.mark.parametrize(
    ("src", "dst"), NON_FINAL_CASES, ids=[f"{s}->{d}" for s, d in NON_FINAL_CASES]
)
async def test_moves_out_of_a_non_final_kind_follow_the_table(
    store: RunStore, src: StateType, dst: StateType
) -> None:
    # Given a run in ``src``
    run_id = await reach(store, src)
    keys = await store.run_keys(run_id)
    before = await snapshot(store, keys)

    # When ``dst`` is proposed
    reply = await store.set_state(run_id, state(dst, message="proposed"))

    # Then it is accepted iff the table allows it (PAUSED only ever through pause.lua);
    # cancelling a run that executes nothing (waiting or paused) cancels it at once
    idle = src in (S.SCHEDULED, S.PENDING, S.PAUSED)
    expected = S.CANCELLED if dst is S.CANCELLING and idle else dst
    allowed = expected.value in ALLOWED[src.value] and dst is not S.PAUSED
    if allowed:
        await assert_accepted(store, run_id, reply, src, expected)
    else:
        assert reply.status is Status.REFUSED
        assert (reply.state_type, reply.state_name) == (
            src.value,
            unpack_state(before["run"][b"state"]).name,
        )
        assert await snapshot(store, keys) == before


FINAL_CASES = [(src, dst, retry) for src in FINAL_TYPES for dst in S for retry in (False, True)]


@pytest.mark.parametrize(
    ("src", "dst", "retry"),
    sorted(FINAL_CASES),
    ids=[f"{s}->{d}{'-retry' if r else ''}" for s, d, r in sorted(FINAL_CASES)],
)
async def test_final_kinds_refuse_everything_but_an_explicit_retry(
    store: RunStore, src: StateType, dst: StateType, retry: bool
) -> None:
    # Given a finished run
    run_id = await reach(store, src)
    keys = await store.run_keys(run_id)
    before = await snapshot(store, keys)

    # When ``dst`` is proposed, with or without retry
    reply = await store.set_state(run_id, state(dst), retry=retry)

    # Then only a retry to SCHEDULED, PENDING or RUNNING leaves the final state
    if retry and dst in {S.SCHEDULED, S.PENDING, S.RUNNING}:
        await assert_accepted(store, run_id, reply, src, dst)
    else:
        assert reply.status is Status.REFUSED
        assert reply.state_type == src.value
        if dst is not S.PAUSED:
            assert "only an explicit retry" in reply.detail
        assert await snapshot(store, keys) == before


async def assert_accepted(
    store: RunStore, run_id: UUID, reply: Reply, src: StateType, dst: StateType
) -> None:
    """The run is in ``dst`` and its newest event, whose id the reply holds, is src → dst."""
    keys = await store.run_keys(run_id)
    assert reply.status is Status.ACCEPTED, reply.detail
    assert reply.state_type == dst.value
    assert (await store.read_run(run_id)).state.type is dst
    last = (await steps(store, keys))[-1]
    assert (last["from_type"], last["type"]) == (src.value, dst.value)
    assert last["id"] == reply.detail


async def test_paused_through_set_state_is_refused_even_from_running(store: RunStore) -> None:
    run_id = await reach(store, S.RUNNING)
    keys = await store.run_keys(run_id)
    before = await snapshot(store, keys)

    reply = await store.set_state(run_id, State(type=S.PAUSED, name="Paused"))

    assert reply.status is Status.REFUSED
    assert "pause_flow_run" in reply.detail
    assert (reply.state_type, reply.state_name) == ("RUNNING", "Running")
    assert await snapshot(store, keys) == before


async def test_a_refusal_returns_the_current_state_and_the_reason(store: RunStore) -> None:
    run_id = await reach(store, S.PENDING)

    reply = await store.set_state(run_id, state(S.COMPLETED))

    assert reply.status is Status.REFUSED
    assert reply.detail == "cannot move from PENDING to COMPLETED"
    assert (reply.state_type, reply.state_name, reply.run_count) == ("PENDING", "Pending", 0)


async def test_expect_guards_the_move_like_compare_and_set(store: RunStore) -> None:
    run_id = await reach(store, S.SCHEDULED)
    keys = await store.run_keys(run_id)
    before = await snapshot(store, keys)

    refused = await store.set_state(run_id, state(S.CANCELLED), expect=S.RUNNING)
    assert refused.status is Status.REFUSED
    assert refused.detail == "expected RUNNING, found SCHEDULED"
    assert await snapshot(store, keys) == before

    accepted = await store.set_state(run_id, state(S.CANCELLED), expect=S.SCHEDULED)
    assert accepted.accepted


async def test_set_state_can_store_a_result_and_enqueue(store: RunStore) -> None:
    run_id = await reach(store, S.RUNNING)
    keys = await store.run_keys(run_id)

    await store.set_state(run_id, state(S.SCHEDULED), enqueue=True)
    await store.set_state(run_id, state(S.RUNNING))
    await store.set_state(run_id, state(S.COMPLETED), result=encode({"v": [1, 2]}))

    assert await store.read_result(run_id) == {"v": [1, 2]}
    assert await entries(store, keys.queue_stream) == [
        {"run_id": str(run_id), "run_count": "1", "flow": "flow-a"}
    ]


# -- events, run_count, retention, caps ----------------------------------------------------------


async def test_events_are_published_to_the_queue_stream_and_recorded_in_the_history(
    store: RunStore,
) -> None:
    # Given two runs of one queue moved through their lifecycle, interleaved
    first = await store.create_run("flow-a")
    second = await store.create_run("flow-b")
    await store.set_state(first.id, state(S.PENDING))
    await store.set_state(second.id, state(S.PENDING))
    await store.set_state(first.id, state(S.RUNNING))
    await store.set_state(first.id, state(S.COMPLETED, "Completed", "done in 1s"))

    # Then the queue's stream holds every run's events in the order they happened
    keys = await store.run_keys(first.id)
    published: Any = await store.redis.xrange(keys.queue_events)
    queue_events = [{text(k): text(v) for k, v in fields.items()} for _, fields in published]
    assert [list(e) for e in queue_events] == [EVENT_FIELDS] * 5 + [[*EVENT_FIELDS, "message"]]
    assert [(e["run_id"], e["type"]) for e in queue_events] == [
        (str(first.id), "SCHEDULED"),
        (str(second.id), "SCHEDULED"),
        (str(first.id), "PENDING"),
        (str(second.id), "PENDING"),
        (str(first.id), "RUNNING"),
        (str(first.id), "COMPLETED"),
    ]
    ids = {text(entry_id): fields for entry_id, fields in published}

    # And the run's history holds its own events in order: the same fields (but the run's
    # own, and empty ones) and the id of the queue events entry that published each
    history = await steps(store, keys)
    assert [(e["from_type"], e["from_name"], e["type"], e["name"]) for e in history] == [
        ("NONE", "", "SCHEDULED", "Scheduled"),
        ("SCHEDULED", "Scheduled", "PENDING", "Pending"),
        ("PENDING", "Pending", "RUNNING", "Running"),
        ("RUNNING", "Running", "COMPLETED", "Completed"),
    ]
    assert [e["run_count"] for e in history] == ["0", "0", "1", "1"]
    assert history[-1]["message"] == "done in 1s"
    stamps = [int(e["ts"]) for e in history]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000_000
    for step in history:
        event = {text(k): text(v) for k, v in ids[step["id"]].items()}
        own = [f for f in HISTORY_FIELDS if f not in ("id", "ts", "from_name")]
        assert {f: event.get(f, "") for f in own} == {f: step[f] for f in own}
        assert step["ts"] == step["id"].partition("-")[0]
        assert event["run_id"] == str(first.id)
    raw = await store.redis.lrange(keys.history, 0, 0)
    kept = {"id", "type", "name", "from_type", "from_name", "ts", "run_count"}
    assert set(json.loads(raw[0])) == kept  # no empty field: no message, pause key, deadline


async def test_run_count_increments_on_each_entry_into_running(store: RunStore) -> None:
    run = await store.create_run("flow-a")
    counts = []
    for kind in [S.PENDING, S.RUNNING, S.SCHEDULED, S.RUNNING, S.FAILED]:
        counts.append((await store.set_state(run.id, state(kind))).run_count)
    retried = await store.set_state(run.id, state(S.RUNNING), retry=True)

    assert counts == [0, 1, 1, 2, 2]
    assert retried.run_count == 3
    assert (await store.read_run(run.id)).run_count == 3


async def test_resuming_from_paused_is_not_a_new_run_attempt(store: RunStore) -> None:
    run_id = await reach(store, S.PAUSED)

    reply = await store.set_state(run_id, state(S.RUNNING))

    assert reply.accepted and reply.run_count == 1


async def test_a_final_state_expires_the_run_keys_and_a_retry_persists_them(
    store: RunStore,
) -> None:
    # Given a running run with a task result, in a store keeping finished runs 100 s
    short = small_store(store, retention_seconds=100)
    run_id = await reach(short, S.RUNNING)
    keys = await short.run_keys(run_id)
    await short.save_task_results(run_id, {"task-1": encode(1)})
    run_keys = [keys.run, keys.history]

    # When it fails, Then its keys expire within the retention, queue keys do not
    await short.set_state(run_id, state(S.FAILED))
    ttls = [await short.redis.ttl(key) for key in run_keys]
    assert all(0 < ttl <= 100 for ttl in ttls), ttls
    assert await short.redis.ttl(keys.queue_events) == -1

    # When it is retried, Then they persist again
    await short.set_state(run_id, state(S.SCHEDULED, "AwaitingRetry"), retry=True)
    assert [await short.redis.ttl(key) for key in run_keys] == [-1, -1]


async def test_the_history_and_the_queue_events_stream_are_capped(store: RunStore) -> None:
    # Given a store capping histories at 10 and queue streams at 1,000 entries (approximately:
    # Redis trims whole stream nodes, so a stream may exceed its cap by up to one node)
    capped = small_store(store, run_events_maxlen=10, queue_events_maxlen=1000)
    run = await capped.create_run("flow-a")
    keys = await capped.run_keys(run.id)

    # When the run publishes 1,300 events
    for start in range(0, 1299, 100):
        await asyncio.gather(
            *(
                capped.set_state(run.id, state(S.SCHEDULED, message=str(i)))
                for i in range(start, min(start + 100, 1299))
            )
        )

    # Then both were trimmed, keeping the newest: the history exactly at its cap
    queue_len = await capped.redis.xlen(keys.queue_events)
    assert 1000 <= queue_len <= 1000 + 100
    history = await steps(capped, keys)
    assert len(history) == 10
    assert history[-1]["message"] == "1298"


# -- unknown runs ------------------------------------------------------------------------------


async def test_an_unknown_run_id_is_not_found_and_nothing_is_written(store: RunStore) -> None:
    run_id = uuid4()

    with pytest.raises(FlowRunNotFound) as not_found:
        await store.read_run(run_id)
    assert not_found.value.run_id == str(run_id)
    with pytest.raises(FlowRunNotFound):
        await store.set_state(run_id, state(S.RUNNING))

    assert await store.redis.keys(f"{store.keys.prefix}:*") == []


async def test_a_run_whose_hash_expired_is_not_found_and_nothing_is_written(
    store: RunStore,
) -> None:
    # Given a run whose hash and events are gone (retention expired)
    run_id = await reach(store, S.COMPLETED)
    keys = await store.run_keys(run_id)
    await store.redis.delete(keys.run, keys.history)
    before = await snapshot(store, keys)

    with pytest.raises(FlowRunNotFound):
        await store.read_run(run_id)
    with pytest.raises(FlowRunNotFound):
        await store.set_state(run_id, state(S.SCHEDULED), retry=True)

    assert await snapshot(store, keys) == before


async def test_task_results_of_a_run_deleted_while_it_executes_are_dropped_with_a_warning(
    store: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a running run whose keys are deleted
    run_id = await reach(store, S.RUNNING)
    keys = await store.run_keys(run_id)
    await store.redis.delete(keys.run, keys.history)

    # When its execution writes task results
    with caplog.at_level("WARNING", logger="flowbus"):
        written = await store.save_task_results(run_id, {"t-1": encode(1)})

    # Then nothing is written, the execution is not taken for a stale one, and the log says so
    assert written is True
    assert await store.redis.exists(keys.run) == 0
    assert f"Flow run {run_id} is gone: its 1 task result(s) were not kept" in caplog.text


def fresh(store: RunStore) -> RunStore:
    """A store on the same connection that knows no run and no queue (another process's)."""
    return RunStore(store.redis, store.settings)


async def finish(store: RunStore, run_id: UUID) -> None:
    for kind in (StateType.RUNNING, StateType.COMPLETED):
        assert (await store.set_state(run_id, state(kind))).accepted


async def test_a_run_flowbus_creates_has_no_index_and_is_found_by_its_id_alone(
    store: RunStore,
) -> None:
    # Given a run that finished, and one still scheduled
    done, waiting = await store.create_run("f", queue="q1"), await store.create_run("f", queue="q1")
    await finish(store, done.id)
    # Then neither has an index, and the finished run's keys expire
    assert await store.redis.exists(*(store.keys.run_index(r.id) for r in (done, waiting))) == 0
    assert 0 < await store.redis.ttl((await store.run_keys(done.id)).run)
    # And another process finds each by its id alone, and a retry of the finished one writes
    # no index either
    other = fresh(store)
    assert [await other.queue_of(run.id) for run in (done, waiting)] == ["q1", "q1"]
    assert (await other.read_run(done.id)).state.type is S.COMPLETED
    assert (await other.set_state(done.id, state(S.RUNNING, "Retrying"), retry=True)).accepted
    assert not await store.redis.exists(store.keys.run_index(done.id))


async def test_a_run_of_an_id_its_creator_chose_is_indexed_and_the_index_lives_as_long(
    store: RunStore,
) -> None:
    # Given a run created with an id of the caller's (no hint of its queue)
    run_id = uuid4()
    assert not carries_queue(run_id, "q1")
    await store.create_run("f", queue="q1", run_id=run_id)
    index = store.keys.run_index(run_id)
    # Then its index names its queue, and another process finds it
    assert text(await store.redis.get(index)) == "q1"
    assert await fresh(store).queue_of(run_id) == "q1"
    # When it finishes, Then its index (in another hash slot) expires with its keys
    await finish(store, run_id)
    assert 0 < await store.redis.ttl(index) <= store.settings.retention_seconds
    # When it is retried out of its final state, Then its index is kept again
    assert (await store.set_state(run_id, state(S.RUNNING, "Retrying"), retry=True)).accepted
    assert await store.redis.ttl(index) == -1
    # When it is deleted, Then its index goes with it
    async with get_client() as client:
        await client.delete_flow_run(run_id)
    assert not await store.redis.exists(index)
    with pytest.raises(FlowRunNotFound):
        await fresh(store).read_run(run_id)


async def test_runs_of_many_queues_are_found_by_id_and_a_queue_born_later_too(
    store: RunStore,
) -> None:
    # Given runs on several queues, and another process that found one of them
    runs = [await store.create_run("f", queue=f"q{i % 6}") for i in range(30)]
    other = fresh(store)
    assert await other.queue_of(runs[0].id) == "q0"
    # When a run is created on a queue born since, Then it is found too (its hint named no
    # queue the process knew: it read the queues again)
    later = await store.create_run("f", queue="q-later")
    assert await other.queue_of(later.id) == "q-later"
    # And every run is found in its queue
    for i, run in enumerate(runs):
        assert (await other.read_run(run.id)).queue == f"q{i % 6}"
    # And an id no run has, or that is no uuid, is not found
    for missing in (new_run_id("q0"), uuid4(), "not-a-run-id"):
        with pytest.raises(FlowRunNotFound):
            await other.run_keys(missing)


async def test_concurrent_first_creates_on_a_queue_announce_it_once(store: RunStore) -> None:
    # When twenty runs are created at once on a queue this process has not used
    runs = await asyncio.gather(*(store.create_run("f", queue="q-burst") for _ in range(20)))
    # Then each was created, the queue is listed, and it was announced once
    assert len({run.id for run in runs}) == 20
    assert await store.redis.sismember(store.keys.queues(), "q-burst")
    news = [e for e in await entries(store, store.keys.queues_added()) if e["queue"] == "q-burst"]
    assert len(news) == 1


async def test_a_run_whose_id_carries_another_queue_s_hint_is_found_by_its_index(
    store: RunStore,
) -> None:
    # Given a run of q-b whose id (its creator's) carries the hint of q-a, a queue with runs,
    # and another process that knows q-a
    first = await store.create_run("f", queue="q-a")
    run_id = new_run_id("q-a")
    await store.create_run("f", queue="q-b", run_id=run_id)
    other = fresh(store)
    assert await other.queue_of(first.id) == "q-a"
    # Then the run is indexed; its hint makes the process guess q-a, yet it is found in q-b
    assert text(await store.redis.get(store.keys.run_index(run_id))) == "q-b"
    guess = await other.guess_keys(run_id)
    assert guess is not None and guess.queue == "q-a"
    assert (await other.read_run(run_id)).queue == "q-b"
    assert await other.guess_keys(run_id) is None  # known now


async def test_runs_of_queues_whose_hints_collide_are_each_found(store: RunStore) -> None:
    # Given runs of two queues whose names have one hint
    assert queue_hint(COLLIDING[0]) == queue_hint(COLLIDING[1])
    runs = [await store.create_run("f", queue=queue) for queue in (*COLLIDING, *COLLIDING)]
    # Then another process finds each in its queue (it asks both), and guesses none
    other = fresh(store)
    for run in runs:
        assert (await other.read_run(run.id)).queue == run.queue
    assert await other.guess_keys(new_run_id(COLLIDING[0])) is None
    assert not await store.redis.exists(*(store.keys.run_index(r.id) for r in runs))


async def test_pipelined_scripts_survive_a_function_flush(store: RunStore) -> None:
    # Given a server that forgot every function (as one restarted without its data)
    await store.redis.function_flush()
    # When a run is created and finished (both pipelined with their scripts)
    run = await store.create_run("f", start=True)
    reply = await store.set_state(run.id, State(type=StateType.COMPLETED, name="Completed"))
    # Then the scripts were loaded again and both steps happened
    assert reply.accepted
    assert (await store.read_run(run.id)).state.type is StateType.COMPLETED


# -- calls of one loop turn on runs of one queue share one FCALL -------------------------------


def fcalls() -> int:
    """FCALLs the server (every primary of a cluster) ran so far."""
    return summed("commandstats").get("cmdstat_fcall", 0)


async def test_calls_of_one_turn_on_one_queue_go_as_one_fcall_each_with_its_reply(
    store: RunStore,
) -> None:
    # Given five waiting runs of one queue
    runs = [await store.create_run("flow-a", queue="merged", enqueue=True) for _ in range(5)]
    keys = [await store.run_keys(run.id) for run in runs]
    before = fcalls()
    # When five callers claim them in the same loop turn
    replies = await asyncio.gather(*(store.scripts.claim_run(k, holder="w") for k in keys))
    # Then the server ran one FCALL, and each caller got its own run, started
    assert fcalls() - before == 1
    assert all(reply.accepted for reply in replies)
    names = [reply.run_hash[b"name"] for reply in replies]
    assert names == [run.name.encode() for run in runs]
    for run in runs:
        assert (await store.read_run(run.id)).state.type is S.RUNNING


async def test_a_merged_call_that_fails_fails_alone(store: RunStore) -> None:
    # Given three runs of one queue, the middle one's hash overwritten by a key of another type
    runs = [await store.create_run("flow-a", queue="merged-error") for _ in range(3)]
    keys = [await store.run_keys(run.id) for run in runs]
    await store.redis.delete(keys[1].run)
    await store.redis.set(keys[1].run, "not a hash")
    # When the three are moved on in the same loop turn
    outcomes = await asyncio.gather(
        *(moved(store, k, S.PENDING) for k in keys), return_exceptions=True
    )
    # Then the middle caller gets the server's error; the others' moves were applied
    assert isinstance(outcomes[1], ResponseError) and "WRONGTYPE" in str(outcomes[1])
    for run, outcome in zip(runs[::2], outcomes[::2], strict=True):
        assert isinstance(outcome, Reply) and outcome.accepted
        assert (await store.read_run(run.id)).state.type is S.PENDING


@pytest.mark.parametrize(
    "state",
    [None, b"", b"RUNNING soon", b"COMPLETED 1 1 99 Completed", b"COMPLETED 1 1 c1 - 99 Completed"],
)
async def test_a_run_hash_without_a_state_we_know_is_claimed_as_no_run_or_refused(
    store: RunStore, state: bytes | None
) -> None:
    # Given a run whose hash lost its state, or holds one that is not packed as ours
    run = await store.create_run("flow-a", queue="stateless")
    keys = await store.run_keys(run.id)
    await store.redis.hdel(keys.run, "state")
    if state is not None:
        await store.redis.hset(keys.run, "state", state)
    # When a worker claims it
    reply = await store.scripts.claim_run(keys, holder="w")
    # Then the script answers (no run, or a refusal) and changes nothing
    assert reply.status in (Status.NOT_FOUND, Status.REFUSED), reply
    assert await store.redis.hget(keys.run, "state") == state
    # and a reader calls it malformed, never anything else
    with pytest.raises((FlowRunNotFound, MalformedEntry)):
        await store.read_run(run.id)


# -- a call resent after its reply was lost ----------------------------------------------------


def moved(store: RunStore, keys: RunKeys, kind: StateType) -> Call[Reply]:
    """A set_state call making a plain move to ``kind``."""
    return store.scripts.set_state(keys, kind=kind.value, name=kind.value.title())


async def test_a_resent_call_gets_the_first_reply_and_applies_nothing_twice(
    store: RunStore,
) -> None:
    # Given a move applied under a call id, whose reply the client never saw
    run = await store.create_run("flow-a")
    keys = await store.run_keys(run.id)
    call = moved(store, keys, S.PENDING)
    first = await call

    # When the same call is sent again (as redis-py resends after a dropped connection)
    again = await call

    # Then it is answered as the first time, and the run moved (and published) once
    assert first.accepted and again.accepted
    assert again.detail == first.detail
    assert [e["type"] for e in await steps(store, keys)] == ["SCHEDULED", "PENDING"]
    # while another call making the same move is refused by the state the first one made
    other = await moved(store, keys, S.PENDING)
    assert other.status is Status.REFUSED


async def test_a_resent_call_is_refused_once_another_call_moved_the_run(store: RunStore) -> None:
    # Given a move, then another call's move
    run = await store.create_run("flow-a")
    keys = await store.run_keys(run.id)
    first = moved(store, keys, S.PENDING)
    assert (await first).accepted
    assert (await moved(store, keys, S.RUNNING)).accepted
    # When the first is resent late, Then it is judged against the run as it is now
    late = await first
    assert late.status is Status.REFUSED


async def run_with_a_foreign_state(store: RunStore) -> RunKeys:
    """The keys of a new run whose hash holds a state not packed as flowbus packs one."""
    run = await store.create_run("flow-a", queue="stateless")
    keys = await store.run_keys(run.id)
    await store.redis.hset(keys.run, "state", b"RUNNING soon")
    return keys


async def test_a_move_of_a_run_whose_state_is_not_ours_is_refused_with_its_reason(
    store: RunStore,
) -> None:
    # Given a run whose hash holds a state not packed as ours
    keys = await run_with_a_foreign_state(store)
    before = await snapshot(store, keys)
    # When a move is asked of it, Then it is refused with a reason, and nothing is written
    reply = await moved(store, keys, S.COMPLETED)
    assert (reply.status, reply.detail) == (
        Status.REFUSED,
        "the run holds a state flowbus cannot read",
    )
    assert await snapshot(store, keys) == before


async def test_a_sweep_of_a_run_whose_state_is_not_ours_leaves_that_state_as_it_is(
    store: RunStore,
) -> None:
    # Given a run whose hash holds a state not packed as ours
    keys = await run_with_a_foreign_state(store)
    # When the deadline sweeper drops its (stale) deadline entry
    reply = await store.scripts.start_scheduled(keys)
    # Then the call is answered, and the state is not rewritten
    assert reply.status is Status.ACCEPTED
    assert await store.redis.hget(keys.run, "state") == b"RUNNING soon"


async def test_a_state_written_by_an_earlier_version_reads_and_moves_on(store: RunStore) -> None:
    # Given a running run whose state an earlier version wrote: no call named in it, the last
    # call in an ``op`` field of its own
    run = await store.create_run("flow-a", queue="earlier")
    keys = await store.run_keys(run.id)
    assert (await moved(store, keys, S.PENDING)).accepted
    await store.redis.hset(
        keys.run,
        mapping={"state": "RUNNING 1796230901458 1 7 Running", "op": "0123abcd 1796230901458-0"},
    )
    # When it is read, Then it is the state it was
    state = (await store.read_run(run.id)).state
    assert (state.type, state.name, state.message) == (S.RUNNING, "Running", None)
    # When it moves on, Then the move is applied and its state now names the call
    call = moved(store, keys, S.COMPLETED)
    assert (await call).accepted
    stored = text(await store.redis.hget(keys.run, "state") or b"")
    assert unpack_state(stored).type == "COMPLETED" and stored.split(" ")[3].startswith("c")
    # and a copy of that call is answered as the first one was
    assert (await call).accepted


async def test_a_resent_claim_still_hands_the_run_to_its_worker(store: RunStore) -> None:
    # Given a waiting run claimed by a worker whose connection dropped before the reply
    run = await store.create_run("flow-a", queue="claims", enqueue=True)
    keys = await store.run_keys(run.id)
    claim = store.scripts.claim_run(keys)
    first = await claim
    # When the claim is resent
    again = await claim
    # Then the worker is told it started the run (and gets the run), which started once
    assert first.accepted and again.accepted
    fields = again.run_hash
    state = unpack_state(fields[b"state"])
    assert (state.type, state.run_count) == ("RUNNING", 1)
    assert [e["type"] for e in await steps(store, keys)] == ["SCHEDULED", "PENDING", "RUNNING"]
    # the start's PENDING step is recorded, not published: it ends in the same step
    published = [e["type"] for e in await entries(store, keys.queue_events)]
    assert published == ["SCHEDULED", "RUNNING"]


async def test_a_resent_create_is_answered_as_created(store: RunStore) -> None:
    # Given a run created under a call id
    run_id = str(uuid4())
    keys = store.keys.queue("creates").run(run_id)

    def create() -> Call[CreateReply]:
        return store.scripts.create_run(
            keys,
            flow_name="flow-a",
            name="flow-a-1",
            deployment_id="",
            parameters=encode({}),
            initial="SCHEDULED",
            enqueue=True,
            parent_id="",
            scheduled_ms=None,
            start=False,
        )

    creation = create()
    first = await creation
    # When the creation is resent, Then it is not refused as a duplicate, and made once
    again = await creation
    assert first.accepted and again.accepted
    assert again.created_ms == first.created_ms  # the creation time
    assert await store.redis.xlen(keys.queue_stream) == 1
    # while a creation under another call id is a duplicate
    other = await create()
    assert other.status is Status.REFUSED


async def test_a_resent_resume_and_final_state_are_applied_once(store: RunStore) -> None:
    # Given a paused run, resumed (with input) by a call whose reply was lost
    run = await store.create_run("flow-a")
    keys = await store.run_keys(run.id)
    for kind in (S.PENDING, S.RUNNING):
        assert (await moved(store, keys, kind)).accepted
    pause = store.scripts.pause(
        keys, key="k", timeout_ms=None, reschedule=False, state_name="Paused"
    )
    assert (await pause).accepted
    resume = store.scripts.resume(keys, key="k", data=encode({"ok": True}))
    first = await resume
    # When it is sent again (as after a failover), Then it is answered as the first time
    again = await resume
    assert first.accepted and again.accepted and again.detail == first.detail
    # and so is a final state sent twice; each change was published once
    done = store.scripts.set_state(keys, kind=S.COMPLETED.value, name="Completed")
    assert (await done).accepted and (await done).accepted
    types = [e["type"] for e in await steps(store, keys)]
    assert types == ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "RUNNING", "COMPLETED"]
    # while a late copy of the resume, after the run moved on, is refused by the state
    assert (await resume).status is not Status.ACCEPTED


async def paused_for_input(store: RunStore, schema: str, *, judged: bool = False) -> RunKeys:
    """A run paused under key "k" for input of ``schema``."""
    run = await store.create_run("flow-a")
    keys = await store.run_keys(run.id)
    for kind in (S.PENDING, S.RUNNING):
        assert (await moved(store, keys, kind)).accepted
    pause = store.scripts.pause(
        keys,
        key="k",
        timeout_ms=None,
        reschedule=False,
        state_name="Paused",
        input_prefix="paused-k",
        schema=schema,
        judged=judged,
    )
    assert (await pause).accepted
    return keys


async def test_a_resume_checked_against_another_schema_writes_nothing_and_gets_the_pause_s(
    store: RunStore,
) -> None:
    # Given a run paused for input of one schema
    schema = json.dumps({"type": "object", "required": ["n"]})
    keys = await paused_for_input(store, schema)
    before = await snapshot(store, keys)
    inputs = await store.redis.hgetall(keys.input)

    # When a resume names another schema's digest (or none) as the one its input was checked on
    for checked in (schema_digest("{}"), "-"):
        reply = await store.scripts.resume(keys, data=encode({"n": 1}), checked=checked)

        # Then it is answered SCHEMA with the pause's key, prefix and schema, and nothing changed
        assert reply.status is Status.SCHEMA
        assert (reply.pause_key, reply.input_prefix, reply.schema) == ("k", "paused-k", schema)
        assert not reply.judged
        assert await snapshot(store, keys) == before
        assert await store.redis.hgetall(keys.input) == inputs
        assert not await store.redis.exists(keys.fired)

    # When the resume names the pause's own schema
    carried = json.dumps({"n": 1})
    reply = await store.scripts.resume(
        keys, data=encode({"n": 1}), checked=schema_digest(schema), carried=carried
    )

    # Then it resumes the run, and its control entry carries the input for the paused process
    assert reply.accepted
    control = await entries(store, keys.control)
    assert control[-1]["from_type"] == "PAUSED" and control[-1]["input"] == carried
    assert "input" not in (await entries(store, keys.queue_events))[-1]


async def test_a_checked_resume_of_a_judged_pause_is_sent_to_its_owner_first(
    store: RunStore,
) -> None:
    # Given a pause whose input its owner judges
    schema = json.dumps({"type": "object"})
    keys = await paused_for_input(store, schema, judged=True)

    # When a resume checked on its schema comes without a proposal, Then it is answered SCHEMA
    # (judged): the resumer asks the owner first; with a proposal it resumes the run
    reply = await store.scripts.resume(keys, data=encode({}), checked=schema_digest(schema))
    assert reply.status is Status.SCHEMA and reply.judged
    again = store.scripts.resume(
        keys, data=encode({}), checked=schema_digest(schema), proposal="p1"
    )
    assert (await again).accepted


async def test_deadlines_that_name_no_run_are_dropped_and_infinity_is_a_number(
    store: RunStore,
) -> None:
    # Given a deadline set holding a real run id, bytes that are no UTF-8, text and infinity
    deadlines = store.keys.queue("default").deadlines()
    real, late = str(uuid4()), str(uuid4())
    junk = {b"\xff\xfe": 1.0, b"not-a-run": 2.0, real.encode(): 3.0, late.encode(): float("inf")}
    await store.redis.zadd(deadlines, junk)
    # When the earliest are read
    earliest = await earliest_deadlines(store, "default", 10)
    # Then the run ids come back, in order, and the rest is gone from the set
    assert [rid for rid, _ms in earliest] == [real, late]
    assert earliest[0][1] == 3 and earliest[1][1] > 10**15
    assert sorted(map(text, await store.redis.zrange(deadlines, 0, -1))) == sorted([real, late])
