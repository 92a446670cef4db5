"""The queue stream against a real Redis: a final transition acknowledges its delivery and
(every 16th) trims what is acknowledged, never an entry that is pending or not delivered yet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowbus._core.codec import text
from flowbus._redis.consumer_groups import create_group
from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus._redis.store import Delivery, RunStore
from flowbus.states import State, StateType

pytestmark = pytest.mark.anyio

GROUP = "flowbus-workers"
#: Most entries of a stream node (the server's default ``stream-node-max-entries``).
NODE = 100


@pytest.fixture
async def store() -> AsyncIterator[RunStore]:
    yield (await get_runtime()).store
    await close_runtime()


async def enqueued(store: RunStore, runs: int) -> str:
    """The queue stream of queue ``q``, its group created, ``runs`` runs enqueued."""
    stream = store.keys.queue("q").stream()
    await create_group(store.redis, stream, GROUP)
    for _ in range(runs):
        await store.create_run("flow-a", queue="q", enqueue=True)
    return stream


async def deliver(store: RunStore, stream: str, count: int) -> list[tuple[str, str]]:
    """(entry id, run id) of the next ``count`` entries the group delivers."""
    raw: Any = await store.redis.xreadgroup(GROUP, "w", {stream: ">"}, count=count)
    return [(text(i), text(f[b"run_id"])) for _s, entries in raw for i, f in entries]


async def complete(store: RunStore, delivery: tuple[str, str]) -> None:
    """The run's worker ends it: claimed, then COMPLETED with its delivery acknowledged."""
    entry_id, run_id = delivery
    _run, started = await store.claim_run(run_id, "q")
    assert started
    done = State(type=StateType.COMPLETED, name="Completed")
    reply = await store.set_state(run_id, done, ack=Delivery(GROUP, entry_id), attempt=1)
    assert reply.accepted, reply.detail


async def ids(store: RunStore, stream: str) -> list[str]:
    raw: Any = await store.redis.xrange(stream)
    return [text(i) for i, _f in raw]


async def test_acknowledged_entries_leave_the_stream_and_the_rest_stays(store: RunStore) -> None:
    # Given three stream nodes' worth of runs enqueued and all but the last 50 delivered
    stream = await enqueued(store, 3 * NODE)
    delivered = await deliver(store, stream, 3 * NODE - 50)
    undelivered = (await ids(store, stream))[-50:]

    # When all of those end but one in the second node, in the order delivered
    still_pending = delivered[NODE + 20]
    for delivery in delivered:
        if delivery != still_pending:
            await complete(store, delivery)

    # Then the stream keeps the pending entry and every entry not delivered yet; of the
    # acknowledged entries before the pending one, less than a node (its own) stays
    kept = await ids(store, stream)
    assert still_pending[0] in kept and kept[-50:] == undelivered
    assert kept.index(still_pending[0]) < NODE
    # and the entries not delivered yet are still the group's to deliver
    assert [i for i, _run in await deliver(store, stream, NODE)] == undelivered


async def test_a_drained_queue_keeps_less_than_a_node_of_acknowledged_entries(
    store: RunStore,
) -> None:
    # Given three stream nodes' worth of runs enqueued and all delivered
    stream = await enqueued(store, 3 * NODE)
    delivered = await deliver(store, stream, 3 * NODE)

    # When each ends, the first delivered last (it holds back every trim until it ends)
    for delivery in [*delivered[1:], delivered[0]]:
        await complete(store, delivery)
    # and twice 16 more runs go through (the library counts 16 acknowledgements between two
    # trims; it may forget its counts, starting over, when it has kept those of many queues)
    for _ in range(32):
        await store.create_run("flow-a", queue="q", enqueue=True)
    for delivery in await deliver(store, stream, 32):
        await complete(store, delivery)

    # Then the stream keeps a tail of acknowledged entries shorter than a node and the 16
    # acknowledgements between two trims, and the group nothing pending
    assert await store.redis.xlen(stream) < NODE + 16
    pending: Any = await store.redis.xpending(stream, GROUP)
    assert pending["pending"] == 0
