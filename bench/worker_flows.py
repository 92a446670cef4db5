"""Flows of ``bench/worker_throughput.py``; its worker processes import this module.

Workers run with ``bench/`` on ``PYTHONPATH`` and are started as
``python -m flowbus_worker worker_flows --queue …``.
"""

from __future__ import annotations

import time

from _mark import mark

from flowbus import FlowRunContext, flow, suspend_flow_run, task

#: Name of the flow measured for throughput (one trivial task).
TRIVIAL = "bench-trivial"
#: Name of the flow that suspends once, then reports when it continued.
SUSPENDER = "bench-suspender"
#: Pause key of the suspender's one suspension.
SUSPEND_KEY = "bench"


def now_ns() -> int:
    """CLOCK_MONOTONIC: one clock for every process of the machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@task
async def echo(x: int) -> int:
    return x


@flow(name=TRIVIAL)
async def trivial(x: int = 0) -> int:
    """One task, then the benchmarks' completion mark: the least a deployed run with a task does."""
    y: int = await echo(x)
    mark()
    return y


@flow(name=SUSPENDER)
async def suspender(stamps: str) -> str:
    """Suspend (the worker acks and frees the slot); once re-executed, push the stamp.

    The stamp is taken right after ``suspend_flow_run`` returns in the re-execution, and
    pushed as ``"<run id> <ns>"`` onto the list ``stamps``.
    """
    await suspend_flow_run(key=SUSPEND_KEY, timeout=3600)
    stamp = now_ns()
    ctx = FlowRunContext.require("bench-suspender")
    await ctx.runtime.redis.rpush(stamps, f"{ctx.flow_run.id} {stamp}")
    return "continued"
