"""The arq side of ``bench/worker_throughput.py``; runs only in arq's own venv (see _peers.py).

- ``bench/.venv-arq/bin/python bench/_arq_jobs.py worker``: ``arq.run_worker`` on
  :class:`WorkerSettings`, logging at WARNING (``python -m arq`` logs two INFO lines per job,
  which would cost the worker more than the job; flowbus's workers run at WARNING too);
- ``… enqueue --jobs N``: enqueues N jobs with ``enqueue_job`` (64 in flight), prints JSON.

Both read the server's URL (with its database) from ``BENCH_PEER_REDIS_URL``.
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

from _mark import mark
from arq import create_pool, run_worker
from arq.connections import ArqRedis, RedisSettings

#: Jobs each worker process runs at once (flowbus's workers get the same --concurrency).
MAX_JOBS = int(os.environ.get("BENCH_PEER_CONCURRENCY", "32"))
#: Seconds between polls of the queue (arq's default, 0.5 s, caps a worker at 2 × MAX_JOBS/s).
POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.005"))
#: Enqueue calls in flight in the producer.
ENQUEUE_CONCURRENCY = 64


def _settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ["BENCH_PEER_REDIS_URL"])


async def noop(ctx: dict[str, Any]) -> int:
    """The job: the completion mark (its result, 0, is what arq records)."""
    mark()
    return 0


class WorkerSettings:
    """arq's settings; ``python -m arq _arq_jobs.WorkerSettings`` works too (noisier)."""

    functions = [noop]
    redis_settings = _settings() if "BENCH_PEER_REDIS_URL" in os.environ else None
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    handle_signals = True


async def enqueue(n: int) -> dict[str, Any]:
    pool: ArqRedis = await create_pool(_settings())
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> None:
        async with gate:
            if await pool.enqueue_job("noop") is None:
                raise RuntimeError("arq refused a job")

    try:
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await pool.aclose()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "versions": {"arq": version("arq"), "redis_py": version("redis")},
        "settings": {"max_jobs": MAX_JOBS, "poll_delay_s": POLL_DELAY},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="an arq worker, or a producer of no-op jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run one arq worker process")
    producer = commands.add_parser("enqueue", help="enqueue no-op jobs")
    producer.add_argument("--jobs", type=int, required=True)
    args = parser.parse_args()
    if args.command == "worker":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        run_worker(WorkerSettings)  # type: ignore[arg-type]
        return
    print(json.dumps(asyncio.run(enqueue(args.jobs))))


if __name__ == "__main__":
    main()
