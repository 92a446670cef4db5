"""The taskiq side of ``bench/worker_throughput.py``; runs only in taskiq's own venv.

taskiq-redis's ``RedisStreamBroker`` (a consumer group, each message acknowledged once its
result is saved: at least once, like flowbus and arq) with ``RedisAsyncResultBackend``
(results kept, as arq and flowbus keep theirs):

- ``bench/.venv-taskiq/bin/python bench/_taskiq_jobs.py worker``: one receiver
  (``run_receiver_task``, ``max_async_tasks`` = ``BENCH_PEER_CONCURRENCY``) on uvloop, as
  ``taskiq worker`` runs when uvloop is installed, logging at WARNING;
- ``… enqueue --jobs N``: ``kiq()`` N times (64 in flight), prints JSON.

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

import uvloop
from _mark import mark
from taskiq import AsyncBroker
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_PEER_REDIS_URL", "redis://localhost/2")
#: Tasks each worker process runs at once (flowbus's workers get the same --concurrency).
MAX_ASYNC_TASKS = int(os.environ.get("BENCH_PEER_CONCURRENCY", "32"))
#: Enqueue calls in flight in the producer.
ENQUEUE_CONCURRENCY = 64

#: ``stream`` (default) or ``list`` (``ListQueueBroker``: BRPOP, nothing acknowledged).
BROKER = os.environ.get("BENCH_TASKIQ_BROKER", "stream")

# no read timeout: the benchmark stops (SIGSTOP) idle workers, blocked in their read, for
# minutes; with one, the read would time out when continued, and the receiver end
if BROKER == "list":
    broker: AsyncBroker = ListQueueBroker(URL, queue_name="bench", socket_timeout=None)
else:
    broker = RedisStreamBroker(
        URL, queue_name="bench", consumer_group_name="bench", socket_timeout=None
    )
broker = broker.with_result_backend(RedisAsyncResultBackend(URL))


@broker.task(task_name="noop")
async def noop() -> int:
    """The task: the completion mark (its result, 0, is what taskiq records)."""
    mark()
    return 0


async def work() -> None:
    await broker.startup()
    await run_receiver_task(broker, max_async_tasks=MAX_ASYNC_TASKS)


async def enqueue(n: int) -> dict[str, Any]:
    await broker.startup()
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> None:
        async with gate:
            await noop.kiq()

    try:
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await broker.shutdown()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "versions": {k: version(k) for k in ("taskiq", "taskiq-redis", "redis")},
        "settings": {"max_async_tasks": MAX_ASYNC_TASKS, "broker": type(broker).__name__},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="a taskiq worker, or a producer of no-op tasks")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run one taskiq worker process")
    producer = commands.add_parser("enqueue", help="enqueue no-op tasks")
    producer.add_argument("--jobs", type=int, required=True)
    args = parser.parse_args()
    if args.command == "worker":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        uvloop.run(work())
        return
    print(json.dumps(uvloop.run(enqueue(args.jobs))))


if __name__ == "__main__":
    main()
