"""Flows the end-to-end tests deploy; worker processes import this module.

Tasks count their executions in Redis (``INCR <prefix>:count:<name>``), so a test can prove
that each completed task ran exactly once across workers. ``gate`` tasks block on a Redis
list until the test pushes to it, and announce that they started on another list.
"""

from __future__ import annotations

import os
import time

import anyio
import redis
from pydantic import field_validator

from flowbus import (
    RunInput,
    StateType,
    flow,
    pause_flow_run,
    sleep_for,
    suspend_flow_run,
    task,
)
from flowbus._redis.records import unpack_state
from flowbus.context import TaskRunContext
from flowbus.logging import get_run_logger
from flowbus.models import FlowRun
from tests.redis_clients import sync_redis


def _redis() -> redis.Redis:
    return sync_redis()


def key(name: str) -> str:
    """A test key under the run's key prefix (the test and its workers share the prefix),
    all in one hash slot (a cluster's failover test keeps them off the shard it fails)."""
    return f"{os.environ['FLOWBUS_KEY_PREFIX']}:{{test}}:{name}"


@task
def count(name: str) -> str:
    _redis().incr(key(f"count:{name}"))
    return name


@task
def gate(name: str) -> str:
    """Announce the start on ``started:<name>``, then block until ``open:<name>`` gets a push,
    or ``open:<name>:<pid>`` (a test opening the gate for one worker process only: which of
    several blocked processes a plain push wakes depends on which blocked first)."""
    client = _redis()
    client.incr(key(f"count:{name}"))
    client.rpush(key(f"started:{name}"), "1")
    opened = [key(f"open:{name}"), key(f"open:{name}:{os.getpid()}")]
    if client.blpop(opened, timeout=120) is None:
        raise TimeoutError(f"gate {name} was never opened")
    _await_requested_suspension(client)
    return name


def _await_requested_suspension(client: redis.Redis) -> None:
    """If a suspension was requested, return once this process has heard of it.

    The request reaches the process through its event stream; under load the task could end
    before, and then the run just goes on (by design). The test wants the other branch.
    """
    task_ctx = TaskRunContext.get()
    assert task_ctx is not None
    flow_ctx = task_ctx.flow_run_context
    keys = flow_ctx.runtime.store.keys.queue(flow_ctx.flow_run.queue).run(flow_ctx.flow_run.id)
    if unpack_state(client.hget(keys.run, "state")).name != "Suspending":
        return
    deadline = time.monotonic() + 60
    while flow_ctx.interrupt != "suspend" and time.monotonic() < deadline:
        time.sleep(0.01)


@flow
def add(x: int, y: int) -> int:
    count("add")
    return x + y


@flow
async def async_add(x: int, y: int) -> int:
    return x + y


@task
async def echo(x: int) -> int:
    return x


@flow
async def echo_once(x: int = 0) -> int:
    """The least a deployed run with a task does (Redis's cost per run is counted on it)."""
    y: int = await echo(x)
    return y


class Approval(RunInput):
    approved: bool
    note: str = ""


@flow
def approval(tag: str = "a") -> str:
    count(f"{tag}-before")
    answer = suspend_flow_run(wait_for_input=Approval, key="approval", timeout=600)
    count(f"{tag}-after")
    return f"{answer.approved}:{answer.note}"


@flow
def suspend_briefly(timeout: int = 2) -> str:
    suspend_flow_run(key="brief", timeout=timeout)
    return "resumed"


@flow
def long_running(tag: str = "k") -> str:
    count(f"{tag}-one")
    gate(f"{tag}-gate")
    count(f"{tag}-two")
    return "done"


@flow
def pause_in_process(tag: str = "p") -> str:
    count(f"{tag}-before")
    answer = pause_flow_run(wait_for_input=Approval, key="approval", timeout=600)
    count(f"{tag}-after")
    return f"{answer.approved}:{answer.note}"


# Prefect's pause_flow_run example, as written but for its imports (and print → a counter).
@task
def task_one() -> None:
    for _i in range(3):
        time.sleep(0.1)


@flow
def my_flow() -> None:
    terminal_state = task_one.submit(return_state=True)
    if terminal_state.type == StateType.COMPLETED:
        count("seed-paused")
        pause_flow_run(timeout=2)
    else:
        count("seed-skipped")


@flow
def slow_child(seconds: float) -> str:
    time.sleep(seconds)
    count("slow-child")
    return "child"


@flow
def sync_parent(seconds: float) -> str:
    return f"sync parent of {slow_child(seconds)}"


@flow
async def async_parent(seconds: float) -> str:
    return f"async parent of {slow_child(seconds)}"


@flow
def sleeper(seconds: float = 1.0, tag: str = "z") -> str:
    count(f"{tag}-before")
    sleep_for(seconds)
    count(f"{tag}-after")
    return "awake"


@task
def whoami() -> int:
    """The executing process's pid: each execution writes a result of its own."""
    return os.getpid()


@flow
def fenced_run(tag: str = "z") -> str:
    count(f"{tag}-one")
    gate(f"{tag}-gate")
    return f"done by {whoami()}"


@flow
def busy(seconds: float = 0.1) -> str:
    """A run that keeps its slot a little while (a saturated queue is made of these)."""
    time.sleep(seconds)
    return "busy"


class Checked(RunInput):
    amount: int

    @field_validator("amount")
    @classmethod
    def even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("amount must be even")
        return value


@flow
def suspend_checked() -> int:
    answer: Checked = suspend_flow_run(wait_for_input=Checked, key="check", timeout=600)
    return answer.amount


@task
def logged_step(n: int) -> int:
    get_run_logger().info("step %d", n)
    return n + 1


@flow
def logged(n: int = 1) -> int:
    """Logs from the flow and from a task (the worker's log lines name both)."""
    get_run_logger().info("starting with %d", n)
    return logged_step(n)


def _span(tag: str, mark: str) -> None:
    """Mark on ``spans:<tag>`` that a run's code started or ended (the list keeps the order)."""
    _redis().rpush(key(f"spans:{tag}"), mark)


@flow
async def at_once(tag: str = "o") -> str:
    """Code that spans a while, marked at its start and end."""
    _span(tag, "start")
    await anyio.sleep(0.05)  # other runs of the worker go on meanwhile
    _span(tag, "end")
    return tag


async def _spanned_hook(_flow: object, run: FlowRun, _state: object) -> None:
    """A completion hook that spans a while too: it is the run's code as well."""
    tag = str(run.parameters["tag"])
    _span(tag, "hook-start")
    await anyio.sleep(0.05)
    _span(tag, "hook-end")
    _redis().rpush(key(f"hooked:{tag}"), "1")  # what a test blocks on: the hook ended


@flow(on_completion=[_spanned_hook])
async def at_once_hooked(tag: str = "h") -> str:
    _span(tag, "start")
    await anyio.sleep(0.05)
    _span(tag, "end")
    return tag
