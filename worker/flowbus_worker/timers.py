"""The deadline sweeper: pause/suspend timeouts and scheduled starts of one queue.

A pause that times out fails its run, or resumes it without input when it asked for that
(``on_timeout="resume"``; a durable ``sleep_for`` is such a suspension): then this is what
re-enqueues the run, at its time.

Every worker sweeps every queue it serves; the scripts are compare-and-set, so two sweepers
(or a sweeper and a resume) never both act on one run. A suspended run has no process, so
this is what fails it when nobody resumes it in time.

The sweeper does not tick: it sleeps until the earliest deadline, and an event of the queue
that sets a deadline (a pause with a timeout, a scheduled start) wakes it at once. Idle, it
reads the deadline set once per ``max_sleep``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from flowbus._redis.queue_indexes import earliest_deadlines
from flowbus._redis.replies import Status
from flowbus._redis.runtime import Runtime
from flowbus._redis.waiters import NEW_DEADLINES, Subscription
from flowbus.states import StateType

logger = logging.getLogger("flowbus.worker")

#: Deadlines read per sweep.
BATCH = 100
#: Seconds a sweeper waits before acting on a deadline its own clock says is due, but the
#: server's clock does not yet (the scripts judge by the server's clock).
CLOCK_SLACK = 0.01


async def sweep(runtime: Runtime, queue: str) -> float | None:
    """Act on every due deadline of ``queue``; return the next one (epoch seconds) or None."""
    store = runtime.store
    qkeys = store.keys.queue(queue)
    now_ms = int(time.time() * 1000)
    first = await earliest_deadlines(store, queue, BATCH)
    for run_id, deadline_ms in first:
        if deadline_ms > now_ms:
            return deadline_ms / 1000
        keys = qkeys.run(run_id)
        reply = await store.scripts.expire_pause(keys)
        if reply.status is Status.NOT_FOUND:
            await runtime.redis.zrem(qkeys.deadlines(), run_id)
        elif reply.accepted:
            logger.info("Run %s: its pause expired; the run is %s", run_id, reply.state_type)
        elif reply.state_type == StateType.PAUSED:
            if reply.left_ms is not None:  # not due by the server's clock yet
                return time.time() + max(CLOCK_SLACK, reply.left_ms / 1000)
        else:
            started = await store.scripts.start_scheduled(keys)
            if started.accepted and started.detail == "enqueued":
                logger.info("Run %s: its scheduled start came; enqueued", run_id)
    return time.time() if len(first) == BATCH else None  # a full batch: sweep again now


async def sweep_forever(
    runtime: Runtime, queue: str, max_sleep: float, swept: Callable[[], None] = lambda: None
) -> None:
    """Sweep ``queue`` whenever a deadline comes or may have been added (``swept`` after each)."""
    async with runtime.waiters.subscribe(queue, NEW_DEADLINES, control=True) as events:
        while True:
            due = await sweep(runtime, queue)
            swept()
            wait = max_sleep if due is None else min(max_sleep, max(0.0, due - time.time()))
            with anyio.move_on_after(wait):
                await _deadline_event(events)


async def _deadline_event(events: Subscription) -> None:
    await events.next()
    events.skip_queued()  # one sweep serves every deadline set meanwhile
