"""The arq side of ``bench/worker_throughput.py``; runs only in arq's own venv.

arq pins redis-py below 8, so this module is never imported by flowbus's environment:

- worker: ``bench/.venv-arq/bin/python bench/_arq_jobs.py worker``: ``arq.run_worker`` on
  :class:`WorkerSettings`, logging at WARNING (``python -m arq`` logs two INFO lines per job,
  which would cost the worker more than the job; flowbus's workers run at WARNING too);
- driver: ``bench/.venv-arq/bin/python bench/_arq_jobs.py drive --jobs N --warmup W``
  enqueues W jobs, waits for them, then times N: from the first enqueue to the last result
  written. Prints one JSON object on stdout.

Both read the server's URL (with its database) from ``BENCH_ARQ_REDIS_URL``.

Completion is observed without any extra work in the workers: keyspace notifications on the
result keys arq writes (``arq:result:<job id>``) are counted on a pub/sub connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from importlib.metadata import version
from typing import Any

from arq import create_pool, run_worker
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis

#: Jobs each worker process runs at once (flowbus's workers get the same --concurrency).
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "32"))
#: Seconds between polls of the queue (arq's default, 0.5 s, caps a worker at 2 × MAX_JOBS/s).
POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.005"))
#: Enqueue calls in flight in the driver.
ENQUEUE_CONCURRENCY = 64
#: Seconds the driver waits for all results before giving up.
TIMEOUT = 120.0


def _url() -> str:
    return os.environ["BENCH_ARQ_REDIS_URL"]


async def noop(ctx: dict[str, Any]) -> int:
    """The job: nothing (its result, 0, is what arq records)."""
    return 0


class WorkerSettings:
    """arq's settings; ``python -m arq _arq_jobs.WorkerSettings`` works too (noisier)."""

    functions = [noop]
    redis_settings = RedisSettings.from_dsn(_url()) if "BENCH_ARQ_REDIS_URL" in os.environ else None
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    handle_signals = True


async def _enqueue(pool: ArqRedis, n: int) -> None:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> None:
        async with gate:
            if await pool.enqueue_job("noop") is None:
                raise RuntimeError("arq refused a job")

    await asyncio.gather(*(one() for _ in range(n)))


async def _results(pubsub: Any, n: int) -> float:
    """perf_counter when the n-th result key was written."""
    seen = 0
    async with asyncio.timeout(TIMEOUT):
        async for message in pubsub.listen():
            if message["type"] == "pmessage" and message["data"] == b"set":
                seen += 1
                if seen >= n:
                    break
    return time.perf_counter()


async def _batch(pool: ArqRedis, pubsub: Any, n: int) -> dict[str, float]:
    cpu, start = time.process_time(), time.perf_counter()
    waiter = asyncio.create_task(_results(pubsub, n))
    await _enqueue(pool, n)
    enqueued = time.perf_counter()
    done = await waiter
    return {
        "seconds": done - start,
        "enqueue_seconds": enqueued - start,
        "driver_cpu_seconds": time.process_time() - cpu,
    }


async def drive(jobs: int, warmup: int) -> dict[str, Any]:
    url = _url()
    settings = RedisSettings.from_dsn(url)
    watcher = Redis.from_url(url)
    pool = await create_pool(settings)
    await watcher.config_set("notify-keyspace-events", "K$")
    pubsub = watcher.pubsub()
    await pubsub.psubscribe(f"__keyspace@{settings.database}__:arq:result:*")
    try:
        if warmup:
            await _batch(pool, pubsub, warmup)
        timed = await _batch(pool, pubsub, jobs)
    finally:
        await pubsub.aclose()
        await watcher.config_set("notify-keyspace-events", "")
        await watcher.aclose()
        await pool.aclose()
    return {
        **timed,
        "jobs": jobs,
        "arq": version("arq"),
        "redis_py": version("redis"),
        "max_jobs": MAX_JOBS,
        "poll_delay_s": POLL_DELAY,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="arq worker, or driver timing no-op jobs.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run one arq worker process")
    driver = commands.add_parser("drive", help="enqueue jobs and time their results")
    driver.add_argument("--jobs", type=int, required=True)
    driver.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args()
    if args.command == "worker":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        run_worker(WorkerSettings)  # type: ignore[arg-type]
        return
    result = asyncio.run(drive(args.jobs, args.warmup))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
