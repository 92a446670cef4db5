"""What the chaos scenarios share: a private server, worker processes, runs and their ends."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
from _server import point_flowbus_at
from _workers import Child, Children, bench_env

from flowbus import get_client
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus.exceptions import FlowRunNotFound
from flowbus.models import FlowRun

#: The queue every scenario uses (each on its own server and key prefix).
QUEUE = "chaos"


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None}
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


@dataclass
class Stage:
    """One scenario's server, key prefix and worker processes."""

    server: EmbeddedServer
    prefix: str
    children: Children
    lease: float
    started: int = 0
    killed: list[tuple[int, float]] = field(default_factory=list)

    def key(self, name: str) -> str:
        return f"{self.prefix}:chaos:{name}"

    def start_worker(self, *extra: str, concurrency: int = 4, grace: float = 10.0) -> Child:
        self.started += 1
        name = f"w{self.started}"
        env = bench_env(FLOWBUS_REDIS_URL=self.server.url, FLOWBUS_KEY_PREFIX=self.prefix)
        args = [sys.executable, "-m", "flowbus_worker", "chaos_flows", "--queue", QUEUE]
        args += ["--name", name, "--concurrency", str(concurrency), "--lease", str(self.lease)]
        args += ["--heartbeat", str(self.lease / 4), "--grace", str(grace)]
        return self.children.start(name, [*args, "--log-level", "WARNING", *extra], env)

    def live(self) -> list[Child]:
        return [c for c in self.children.children if c.proc.poll() is None]

    def kill_one(self) -> Child:
        """SIGKILL a random live worker (its pid and the time are recorded)."""
        victim = random.choice(self.live())
        self.killed.append((victim.proc.pid, now()))
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        return victim

    def exits(self, *, killed: bool = True) -> int:
        """Workers that exited by themselves (not killed or stopped by the bench)."""
        pids = {pid for pid, _ in self.killed} if killed else set()
        return sum(
            1
            for c in self.children.children
            if c.proc.poll() is not None and c.proc.pid not in pids
        )


@asynccontextmanager
async def stage(*, lease: float = 1.0, fsync_always: bool = False) -> AsyncIterator[Stage]:
    """A private server (AOF on), a fresh key prefix and a folder for worker logs."""
    with tempfile.TemporaryDirectory(prefix="flowbus-chaos-") as tmp:
        server = EmbeddedServer(Path(tmp) / "redis", fsync_always=fsync_always)
        server.start()
        prefix = f"c{uuid.uuid4().hex[:8]}"
        point_flowbus_at(server.url, prefix)
        os.environ["FLOWBUS_KEY_PREFIX"] = prefix
        children = Children(Path(tmp))
        try:
            yield Stage(server, prefix, children, lease)
        finally:
            children.stop_all()
            await close_runtime()
            server.stop()


async def create_runs(flow_name: str, n: int, **parameters: Any) -> list[FlowRun]:
    async with get_client() as client:
        dep = await client.create_deployment(flow_name, "chaos", queue=QUEUE)
        return list(
            await asyncio.gather(
                *(client.create_flow_run_from_deployment(dep, parameters) for _ in range(n))
            )
        )


async def until(run_id: UUID, accept: Callable[[FlowRun], bool], within: float) -> FlowRun | None:
    """The run once ``accept`` holds (re-read at each of its events), or None past ``within``
    or when the run is gone (a server killed with ``appendfsync everysec`` may lose writes it
    acknowledged: while a slow fsync runs it holds back its AOF writes for up to 2 s)."""
    runtime = await get_runtime()
    store = runtime.store
    async with runtime.waiters.subscribe(QUEUE, str(run_id)) as sub:
        with anyio.move_on_after(within):
            try:
                run = await store.read_run(run_id)
                while not accept(run):
                    await sub.next()
                    run = await store.read_run(run_id)
            except FlowRunNotFound:
                return None  # the caller counts it lost
            return run
    return None


async def all_until(
    runs: list[FlowRun], accept: Callable[[FlowRun], bool], within: float
) -> list[FlowRun | None]:
    return list(await asyncio.gather(*(until(r.id, accept, within) for r in runs)))


def final(run: FlowRun) -> bool:
    return run.state.is_final()


async def completions(run_ids: list[UUID]) -> dict[UUID, int]:
    """COMPLETED steps in each run's history."""
    runtime = await get_runtime()
    pipe = runtime.redis.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.lrange(runtime.store.keys.queue(QUEUE).run(run_id).history, 0, -1)
    replies = await pipe.execute()
    return {
        run_id: sum(1 for step in reply if json.loads(step).get("type") == "COMPLETED")
        for run_id, reply in zip(run_ids, replies, strict=True)
    }


async def records(stage: Stage, name: str) -> list[list[str]]:
    """The lines a chaos flow recorded under ``name``, split into their parts."""
    runtime = await get_runtime()
    raw = await runtime.redis.lrange(stage.key(name), 0, -1)
    return [line.decode().split("|") for line in raw]
