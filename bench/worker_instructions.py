"""Instructions a worker process spends per run, flowbus's and taskiq's, counted by callgrind.

CPU seconds per run move with the machine's load (other processes evict the caches and share
the cores); instructions barely do, so this compares the two workers on a busy machine. Each
worker runs under ``valgrind --tool=callgrind`` with instrumentation off; after a warm-up
drain it is switched on, the worker stopped (SIGSTOP), ``--runs`` jobs enqueued, the worker
continued, and the count read (``callgrind_control --dump``) once every job is acknowledged:
only the drain is counted, the producer never. flowbus runs its trivial flow (one task,
``bench/worker_flows.py``, ``--concurrency 32``); taskiq its no-op task (``bench/_taskiq_jobs.py``,
``max_async_tasks`` 32, from its own venv). Batching depends a little on timing, so counts
vary by a few percent between runs. Prints one JSON object::

    python bench/worker_instructions.py [--runs 1000] [--warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from _peers import TASKIQ
from _server import point_flowbus_at, private_server
from _workers import STEP_TIMEOUT, bench_env, blocked_group_reads, log
from worker_flows import TRIVIAL

from flowbus import get_client
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime

KEY_PREFIX = "bench"
QUEUE = "tput"
CONCURRENCY = 32
ENQUEUE_CONCURRENCY = 64


def callgrind(out: Path) -> list[str]:
    """valgrind's command line, counting nothing until told (``callgrind_control -i on``)."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT * 10  # a worker under valgrind is slow
    while not done():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the worker exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def counted(
    worker: list[str],
    env: dict[str, str],
    ready: Callable[[], bool],
    enqueue: Callable[[int], None],
    pending: Callable[[], int],
    runs: int,
    warmup: int,
) -> int:
    """Instructions the worker spent draining ``runs`` jobs (after ``warmup`` uncounted)."""
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            [*callgrind(out), *worker],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for("worker start", ready, proc)
            enqueue(warmup)
            wait_for("warm-up drain", lambda: pending() == 0, proc)
            subprocess.run(
                ["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True
            )
            proc.send_signal(signal.SIGSTOP)
            try:
                enqueue(runs)
            finally:
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.5)
            wait_for("drain", lambda: pending() == 0, proc)
            subprocess.run(
                ["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True
            )
        finally:
            proc.terminate()
            proc.wait(120)
        dumped = Path(f"{out}.1") if Path(f"{out}.1").exists() else out
        for line in dumped.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def flowbus_instructions(url: str, args: Any) -> int:
    point_flowbus_at(url, KEY_PREFIX)

    async def deploy() -> Any:
        async with get_client() as client:
            deployment = await client.create_deployment(TRIVIAL, "bench", queue=QUEUE)
        await close_runtime()
        return deployment

    async def create(n: int) -> None:
        async with get_client() as client:
            gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

            async def one() -> None:
                async with gate:
                    await client.create_flow_run_from_deployment(deployment, None)

            await asyncio.gather(*(one() for _ in range(n)))
        await close_runtime()

    deployment = asyncio.run(deploy())
    client = redis.Redis.from_url(url, decode_responses=True)
    stream = Keys(KEY_PREFIX).queue(QUEUE).stream()
    blocked = blocked_group_reads(client)

    def pending() -> int:
        info: Any = client.xinfo_groups(stream)
        group = next(g for g in info if g["name"] == "flowbus-workers")
        return int(group["pending"]) + int(group.get("lag") or 0)

    worker = [sys.executable, "-m", "flowbus_worker", "worker_flows", "--name", "counted"]
    worker += ["--queue", QUEUE, "--concurrency", str(CONCURRENCY), "--log-level", "WARNING"]
    worker += ["--lease", "600"]
    env = bench_env(FLOWBUS_REDIS_URL=url, FLOWBUS_KEY_PREFIX=KEY_PREFIX)
    try:
        return counted(
            worker,
            env,
            lambda: blocked_group_reads(client) >= blocked + 2,
            lambda n: asyncio.run(create(n)),
            pending,
            args.runs,
            args.warmup,
        )
    finally:
        client.close()


def taskiq_instructions(url: str, args: Any) -> int:
    python = TASKIQ.python()
    env = TASKIQ.env(url, CONCURRENCY, Path(os.devnull))
    env.pop("BENCH_MARK_FIFO")
    client = redis.Redis.from_url(env["BENCH_PEER_REDIS_URL"])

    def pending() -> int:
        if not client.exists("bench"):
            return 0
        info: Any = client.xinfo_groups("bench")
        return sum(int(g["pending"]) + int(g.get("lag") or 0) for g in info)

    try:
        return counted(
            [str(python), str(TASKIQ.module), "worker"],
            env,
            lambda: TASKIQ.ready(client),
            lambda n: TASKIQ.enqueue(env, n) and None,
            pending,
            args.runs,
            args.warmup,
        )
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000, help="jobs counted per worker")
    parser.add_argument("--warmup", type=int, default=200, help="jobs drained before counting")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "worker_instructions", "runs": args.runs}
    with private_server(appendonly=True) as url:
        for name, measure in (("flowbus", flowbus_instructions), ("taskiq", taskiq_instructions)):
            log(f"{name}: counting a drain of {args.runs} jobs under callgrind")
            result[f"{name}_instructions_per_job"] = round(measure(url, args) / args.runs)
    flowbus, taskiq = result["flowbus_instructions_per_job"], result["taskiq_instructions_per_job"]
    result["taskiq_over_flowbus"] = round(taskiq / flowbus, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
