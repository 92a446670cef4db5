"""Flows of ``bench/chaos.py``; its worker processes import this module.

Each flow records what it did in Redis lists under the key prefix, stamped with
CLOCK_MONOTONIC (one clock for every process of the machine) and the worker's pid, so the
bench can tell after the fact which executions and tasks ran where and when.
"""

from __future__ import annotations

import asyncio
import os
import time

from flowbus import FlowRunContext, flow, pause_flow_run, task

#: Flow names.
STEPS, PAUSER, SLOW, ZOMBIE = "chaos-steps", "chaos-pauser", "chaos-slow", "chaos-zombie"
#: Tasks of one ``chaos-steps`` run, and seconds each takes.
STEP_COUNT, STEP_SECONDS = 3, 0.1


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def key(name: str) -> str:
    return f"{os.environ['FLOWBUS_KEY_PREFIX']}:chaos:{name}"


async def record(name: str, *parts: object) -> None:
    ctx = FlowRunContext.require("chaos")
    line = "|".join(str(p) for p in (ctx.flow_run.id, os.getpid(), *parts))
    await ctx.runtime.redis.rpush(key(name), line)


@task
async def step(i: int) -> int:
    await asyncio.sleep(STEP_SECONDS)
    await record("tasks", i, now())  # the task's end: its result is persisted right after
    return i


@flow(name=STEPS)
async def steps() -> int:
    """A few tasks in a row; every execution's start is recorded."""
    await record("starts", now())
    total = 0
    for i in range(STEP_COUNT):
        total += await step(i)
    return total


@flow(name=PAUSER)
async def pauser() -> str:
    """Pause in-process once; count how often the body went on past the pause."""
    await pause_flow_run(timeout=600, key="storm")
    await record("continued")
    return "resumed"


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@flow(name=ZOMBIE)
async def zombie(seconds: float = 2.0) -> int:
    """A task, a long one (its worker is frozen in it), a last task; returns the pid of the
    process whose execution finished it."""
    await step(0)
    await nap(seconds)
    await step(1)
    return os.getpid()


@flow(name=SLOW)
async def slow(seconds: float = 1.0) -> str:
    await record("starts", now())
    await asyncio.sleep(seconds)
    return "done"
