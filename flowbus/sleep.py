"""Durable sleep: a deployed run leaves its process and a worker re-runs it at its time.

``sleep_until`` is a suspension whose deadline resumes it (``on_timeout="resume"``): the
deadline sweepers of the queue's workers re-enqueue the run when the time comes, and the
re-run finds the sleep's pause key fired and goes on. No process is held meanwhile. A run
without a deployment (no worker could re-run it) sleeps in its process, as a pause.
Sleeps take pause keys from the same counter as pauses (or ``key=``).
"""

from __future__ import annotations

import time
from datetime import datetime

from flowbus._core.bridge import sync_or_async
from flowbus.context import FlowRunContext
from flowbus.flow_runs import apause_flow_run, asuspend_flow_run


async def asleep_until(when: datetime | float, key: str | None = None) -> None:
    """Sleep until ``when`` (an aware datetime, or Unix seconds) without holding a process."""
    at = when.timestamp() if isinstance(when, datetime) else float(when)
    ctx = FlowRunContext.require("sleep_until")
    seconds = max(0.0, at - time.time())
    if ctx.flow_run.deployment_id is None:
        await apause_flow_run(timeout=seconds, key=key, on_timeout="resume")
    else:
        await asuspend_flow_run(timeout=seconds, key=key, on_timeout="resume")


async def asleep_for(seconds: float, key: str | None = None) -> None:
    """Sleep ``seconds`` without holding a process (see :func:`asleep_until`)."""
    await asleep_until(time.time() + seconds, key=key)


sleep_until = sync_or_async(asleep_until)
sleep_for = sync_or_async(asleep_for)
