"""Runs whose process died are never stuck: held runs are heartbeaten once per process, and a
run whose holder is gone is answered for at once, or ended by a sweeper."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus.exceptions import HolderGone
from flowbus.flow_runs import aresume_flow_run, await_for_flow_run
from flowbus.states import Cancelling
from tests.conftest import env_for_subprocess
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key
from tests.e2e.support import ROOT, wait_for_run

pytestmark = pytest.mark.anyio

FLOWBUS = str(Path(sys.executable).with_name("flowbus"))

#: A plain script: a flow that pauses in-process (or blocks in a task), its run id printed.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from flowbus import FlowRunContext, flow, pause_flow_run, task

    @task
    def block() -> None:
        time.sleep(600)

    @flow
    def held(mode: str) -> str:
        print(FlowRunContext.get().flow_run.id, flush=True)
        if mode == "pause":
            pause_flow_run(timeout=600)
        else:
            block()
        return "done"

    held(sys.argv[1])
    """
)


async def held_by_a_dead_script(
    tmp_path: Path, redis_url: str, prefix: str, mode: str, rclient: aredis.Redis
) -> str:
    """Start the script, let its run reach PAUSED or RUNNING, kill -9 it; wait for its lease
    (1 s) to end; return the run id."""
    script = tmp_path / "held.py"
    script.write_text(SCRIPT)
    env = {**env_for_subprocess(redis_url, prefix), "FLOWBUS_LEASE_SECONDS": "1"}
    proc = await anyio.open_process(
        [sys.executable, str(script), mode], env=env, cwd=ROOT, stderr=None
    )
    async with proc:
        assert proc.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive(1)
        run_id = line.decode().strip()
        wanted = StateType.PAUSED if mode == "pause" else StateType.RUNNING
        try:
            await wait_for_run(run_id, lambda run: run.state.type is wanted)
        finally:
            proc.kill()
            await proc.wait()
    holder = await rclient.hget(f"{prefix}:{{default}}:run:{run_id}", "holder")
    assert holder is not None
    holders = f"{prefix}:{{default}}:holders"
    with anyio.fail_after(10):  # the lease is 1 s; nothing announces its end
        while True:
            seconds, micros = await rclient.time()
            ends = await rclient.hget(holders, holder)
            if ends is None or int(ends) < seconds * 1000 + micros // 1000:
                break
            await anyio.sleep(0.1)
    return run_id


async def test_resuming_a_pause_whose_process_died_says_so_at_once(
    tmp_path: Path, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a run paused in-process by a plain script that was killed
    url = os.environ["FLOWBUS_REDIS_URL"]
    run_id = await held_by_a_dead_script(tmp_path, url, flowbus_env, "pause", rclient)

    # When it is resumed, Then the resume is refused with the reason, and the run CRASHED
    with pytest.raises(HolderGone, match="is gone; the run is CRASHED"):
        await aresume_flow_run(run_id)
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    assert run.state.type is StateType.CRASHED


async def test_cancelling_a_run_whose_process_died_cancels_it_at_once(
    tmp_path: Path, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    url = os.environ["FLOWBUS_REDIS_URL"]
    run_id = await held_by_a_dead_script(tmp_path, url, flowbus_env, "task", rclient)

    async with get_client() as client:
        result = await client.set_flow_run_state(run_id, Cancelling())

    assert result.state is not None and result.state.type is StateType.CANCELLED


async def test_a_worker_sweeps_runs_whose_process_died(
    tmp_path: Path,
    flowbus_env: str,
    rclient: aredis.Redis,
    start_worker: StartWorker,
    runtime_closed: None,
) -> None:
    # Given a worker on the queue, and runs a killed script held (one paused, one running)
    start_worker("sweeper")
    url = os.environ["FLOWBUS_REDIS_URL"]
    paused = await held_by_a_dead_script(tmp_path, url, flowbus_env, "pause", rclient)
    running = await held_by_a_dead_script(tmp_path, url, flowbus_env, "task", rclient)

    # Then the worker's sweeper ends both CRASHED, and forgets the script's lease
    for run_id in (paused, running):
        run = await await_for_flow_run(run_id, timeout=30)
        assert run.state.type is StateType.CRASHED, run.state
        assert "stopped heartbeating" in (run.state.message or "")
    assert await rclient.scard(f"{flowbus_env}:{{default}}:held") == 0


async def test_cancel_force_ends_a_run_whatever_holds_it(
    tmp_path: Path, flowbus_env: str, start_worker: StartWorker, rclient: aredis.Redis
) -> None:
    # Given a run held by a live worker, blocked in a task
    start_worker("holder")
    async with get_client() as client:
        dep = await client.create_deployment("long-running", "force")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "f"})
    assert await rclient.blpop([key("started:f-gate")], timeout=90) is not None
    env = {**os.environ}

    # When it is cancelled by force, Then it is CANCELLED at once
    done = await anyio.run_process([FLOWBUS, "cancel", "--force", str(run.id)], env=env)
    assert done.stdout.decode().strip() == f"cancelled {run.id}"
    async with get_client() as client:
        assert (await client.read_flow_run(run.id)).state.type is StateType.CANCELLED
    await rclient.rpush(key("open:f-gate"), "1")


@pytest.mark.parametrize("parent", ["sync-parent", "async-parent"])
async def test_a_sync_subflow_longer_than_the_lease_keeps_its_worker_alive(
    parent: str, start_worker: StartWorker, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given two workers with a 2 s lease, and a run whose sync subflow takes 3 s
    start_worker("runner")
    other = start_worker("other")
    async with get_client() as client:
        dep = await client.create_deployment(parent, "slow")
        run = await client.create_flow_run_from_deployment(dep, {"seconds": 3.0})

    # Then it completes in one execution: no worker took it over while it ran
    done = await await_for_flow_run(run.id, timeout=60)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.run_count == 1
    assert await rclient.get(key("count:slow-child")) == "1"
    assert "Reclaimed" not in other.log()
