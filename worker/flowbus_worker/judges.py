"""Workers judge resume input for suspended runs: no process holds those pauses, but a worker
that imported the flow's module has its input type, so it runs the real validators, resumes
the run with valid input (re-enqueued as by any resume) and answers the resumer (see
flowbus/input/judging.py). A worker that lacks the type stays silent: the resumer's wait
runs out and the JSON schema judges alone."""

from __future__ import annotations

import logging

from flowbus._core.codec import text
from flowbus._redis.events import RunEvent
from flowbus._redis.runtime import Runtime
from flowbus._redis.waiters import JUDGE_REQUESTS
from flowbus.input.judging import expected_from_identity, judge_and_resume

logger = logging.getLogger("flowbus.worker")


async def judge_forever(runtime: Runtime, queue: str) -> None:
    """Answer every judge request of ``queue``'s suspended runs whose input type we have."""
    async with runtime.waiters.subscribe(queue, JUDGE_REQUESTS, control=True) as requests:
        while True:
            event = await requests.next()
            if event is not None and event.action == "judge" and event.name == "Suspended":
                await judge(runtime, event)


async def judge(runtime: Runtime, event: RunEvent) -> None:
    """Judge one request with the type stored under its pause key, if this process has it."""
    keys = await runtime.store.run_keys(event.run_id)
    identity = await runtime.redis.hget(keys.input, f"type-{event.pause_key}")
    expected = expected_from_identity(text(identity)) if identity else None
    if expected is None:
        logger.debug("Run %s: cannot judge input of type %r here", event.run_id, identity)
        return
    await judge_and_resume(runtime, event, expected, event.pause_key)
