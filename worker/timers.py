"""The deadline sweeper: pause/suspend timeouts and scheduled starts of one queue.

Every worker sweeps every queue it serves; the scripts are compare-and-set, so two sweepers
(or a sweeper and a resume) never both act on one run. A suspended run has no process, so
this is what fails it when nobody resumes it in time.
"""

from __future__ import annotations

import logging
import time

from flowbus.codec import text
from flowbus.runtime import Runtime
from flowbus.scripts import Status
from flowbus.states import StateType

logger = logging.getLogger("flowbus.worker")

#: Due deadlines handled per sweep.
BATCH = 100


async def sweep(runtime: Runtime, queue: str) -> int:
    """Act on every due deadline of ``queue`` (one ``ZRANGEBYSCORE`` when none is due)."""
    store = runtime.store
    qkeys = store.keys.queue(queue)
    now_ms = int(time.time() * 1000)
    due = await runtime.redis.zrangebyscore(qkeys.deadlines(), "-inf", now_ms, start=0, num=BATCH)
    acted = 0
    for raw in due:
        run_id = text(raw)
        keys = qkeys.run(run_id)
        reply = await store.scripts.call("expire_pause", keys, "")
        if reply.status is Status.NOT_FOUND:
            await runtime.redis.zrem(qkeys.deadlines(), run_id)
        elif reply.accepted:
            acted += 1
            logger.info("Run %s: its pause expired; the run is FAILED", run_id)
        elif reply.state_type != StateType.PAUSED:
            started = await store.scripts.call("start_scheduled", keys)
            if started.accepted and started.detail == "enqueued":
                acted += 1
                logger.info("Run %s: its scheduled start came; enqueued", run_id)
    return acted
