"""Overhead of a flow run: runs per second and Redis commands per run, against a raw floor.

The flow is three trivial tasks called inline. Scenarios, on one private server (AOF on):

- ``sequential_sync``: a sync flow called N times in a row from plain code;
- ``concurrent_async``: an async flow, N runs awaited ``concurrency`` at a time.

The baseline is the least Redis work a durable state machine needs for the same run, through
redis-py (its sync client in a row, its asyncio client concurrently): one round trip per
transition (an ``EVALSHA`` that checks the current state, writes the new one and appends an
event: SCHEDULED, PENDING, RUNNING, COMPLETED) and one ``HSET`` per task result, in flowbus's
order, sequential within a run.

Prints one JSON object on stdout; progress goes to stderr. Usage::

    python bench/flow_overhead.py [--runs 300] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from _server import CommandCounter, Counts, machine, point_flowbus_at, private_server

from flowbus import flow, task
from flowbus._core.bridge import run_blocking
from flowbus._redis.runtime import close_runtime

#: Runs before each scenario that are neither timed nor counted (connections, script loads).
WARMUP_RUNS = 20
#: Key prefix of every key this benchmark writes.
KEY_PREFIX = "bench"
#: Transitions of a run called inline: created SCHEDULED, then PENDING, RUNNING, COMPLETED.
TRANSITIONS = (("", "SCHEDULED"), ("SCHEDULED", "PENDING"), ("PENDING", "RUNNING"))
FINAL_TRANSITION = ("RUNNING", "COMPLETED")
TASKS_PER_FLOW = 3

#: The baseline's transition: compare-and-set the state, append one event.
TRANSITION_LUA = """
if (redis.call('HGET', KEYS[1], 'state') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'from', ARGV[1], 'to', ARGV[2])
return 1
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the flows ----------------------------------------------------------------------------


@task
def add_one(x: int) -> int:
    return x + 1


@flow(name="bench-sync")
def sync_flow(x: int) -> int:
    y: int = add_one(add_one(add_one(x)))
    return y


@task
async def aadd_one(x: int) -> int:
    return x + 1


@flow(name="bench-async")
async def async_flow(x: int) -> int:
    y: int = await aadd_one(await aadd_one(await aadd_one(x)))
    return y


# -- measuring ----------------------------------------------------------------------------


def summarize(runs: int, seconds: float, counts: Counts) -> dict[str, Any]:
    """Throughput and per-run Redis work of ``runs`` runs that took ``seconds``."""
    by_command = sorted(counts.by_command.items(), key=lambda item: (-item[1], item[0]))
    return {
        "runs": runs,
        "seconds": round(seconds, 4),
        "runs_per_second": round(runs / seconds, 1),
        "ms_per_run": round(seconds * 1000 / runs, 3),
        "commands_per_run": round(counts.total / runs, 2),
        "round_trips_per_run": round(counts.reads / runs, 2),
        "commands_by_name_per_run": {name: round(n / runs, 2) for name, n in by_command},
    }


def latency_ms(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(cuts[49] * 1000, 3),
        "p90": round(cuts[89] * 1000, 3),
        "p99": round(cuts[98] * 1000, 3),
    }


def timed_sequential(
    counter: CommandCounter, runs: int, one_run: Callable[[int], None]
) -> dict[str, Any]:
    """Warm up, then time and count ``runs`` calls of ``one_run`` in a row."""
    for i in range(WARMUP_RUNS):
        one_run(-1 - i)
    counter.reset()
    samples: list[float] = []
    start = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        one_run(i)
        samples.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    counts = counter.read()
    return {**summarize(runs, seconds, counts), "latency_ms": latency_ms(samples)}


async def timed_concurrent(
    counter: CommandCounter, runs: int, concurrency: int, one_run: Callable[[int], Awaitable[None]]
) -> dict[str, Any]:
    """Warm up, then time and count ``runs`` runs gathered ``concurrency`` at a time."""
    # one full batch, so the pool holds every connection the timed batches need
    await asyncio.gather(*(one_run(-1 - i) for i in range(max(WARMUP_RUNS, concurrency))))
    counter.reset()  # blocks the loop, but nothing else runs between batches
    start = time.perf_counter()
    for first in range(0, runs, concurrency):
        await asyncio.gather(*(one_run(i) for i in range(first, min(first + concurrency, runs))))
    seconds = time.perf_counter() - start
    return {**summarize(runs, seconds, counter.read()), "concurrency": concurrency}


# -- flowbus ------------------------------------------------------------------------------


def flowbus_sequential(counter: CommandCounter, runs: int) -> dict[str, Any]:
    def one_run(i: int) -> None:
        if sync_flow(i) != i + TASKS_PER_FLOW:
            raise AssertionError("wrong flow result")

    result = timed_sequential(counter, runs, one_run)
    run_blocking(close_runtime)  # the background loop's pool, before the server goes away
    return result


async def flowbus_concurrent(
    counter: CommandCounter, runs: int, concurrency: int
) -> dict[str, Any]:
    async def one_run(i: int) -> None:
        if await async_flow(i) != i + TASKS_PER_FLOW:
            raise AssertionError("wrong flow result")

    try:
        return await timed_concurrent(counter, runs, concurrency, one_run)
    finally:
        await close_runtime()


# -- the raw floor ------------------------------------------------------------------------


def baseline_sequential(counter: CommandCounter, url: str, runs: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    transition = client.register_script(TRANSITION_LUA)

    def one_run(i: int) -> None:
        keys = [f"{KEY_PREFIX}:base:{i}", f"{KEY_PREFIX}:base:{i}:events"]
        for before, after in TRANSITIONS:
            if transition(keys=keys, args=[before, after]) != 1:
                raise AssertionError("transition refused")
        for n in range(1, TASKS_PER_FLOW + 1):
            client.hset(f"{keys[0]}:results", f"add_one-{n}", b"\x01")
        if transition(keys=keys, args=list(FINAL_TRANSITION)) != 1:
            raise AssertionError("transition refused")

    try:
        return timed_sequential(counter, runs, one_run)
    finally:
        client.close()


async def baseline_concurrent(
    counter: CommandCounter, url: str, runs: int, concurrency: int
) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url, max_connections=64)
    transition = client.register_script(TRANSITION_LUA)

    async def one_run(i: int) -> None:
        keys = [f"{KEY_PREFIX}:abase:{i}", f"{KEY_PREFIX}:abase:{i}:events"]
        for before, after in TRANSITIONS:
            if await transition(keys=keys, args=[before, after]) != 1:
                raise AssertionError("transition refused")
        for n in range(1, TASKS_PER_FLOW + 1):
            await client.hset(f"{keys[0]}:results", f"aadd_one-{n}", b"\x01")
        if await transition(keys=keys, args=list(FINAL_TRANSITION)) != 1:
            raise AssertionError("transition refused")

    try:
        return await timed_concurrent(counter, runs, concurrency, one_run)
    finally:
        await client.aclose()


# -- report -------------------------------------------------------------------------------


def ratio(flowbus: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """flowbus / baseline for time, commands and round trips per run."""
    return {
        name: round(flowbus[name] / baseline[name], 2)
        for name in ("ms_per_run", "commands_per_run", "round_trips_per_run")
    }


def run(runs: int, concurrency: int) -> dict[str, Any]:
    with private_server(appendonly=True) as url:
        point_flowbus_at(url, KEY_PREFIX)
        counter = CommandCounter(url)
        try:
            server = {k: counter.config(k) for k in ("appendonly", "appendfsync", "save")}
            log(f"flowbus, sync flow, {runs} runs in a row")
            seq = flowbus_sequential(counter, runs)
            log(f"flowbus, async flow, {runs} runs {concurrency} at a time")
            conc = asyncio.run(flowbus_concurrent(counter, runs, concurrency))
            log("baseline, in a row")
            base_seq = baseline_sequential(counter, url, runs)
            log(f"baseline, {concurrency} at a time")
            base_conc = asyncio.run(baseline_concurrent(counter, url, runs, concurrency))
            return {
                "benchmark": "flow_overhead",
                "machine": machine(counter),
                "server": server,
                "flow": f"{TASKS_PER_FLOW} trivial tasks called inline",
                "warmup_runs": WARMUP_RUNS,
                "flowbus": {"sequential_sync": seq, "concurrent_async": conc},
                "baseline": {
                    "what": (
                        f"{len(TRANSITIONS) + 1} EVALSHA transitions (HGET check, HSET, XADD) "
                        f"+ {TASKS_PER_FLOW} HSET results per run, one round trip each"
                    ),
                    "sequential": base_seq,
                    "concurrent": base_conc,
                },
                "flowbus_over_baseline": {
                    "sequential": ratio(seq, base_seq),
                    "concurrent": ratio(conc, base_conc),
                },
            }
        finally:
            counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300, help="flow runs per scenario")
    parser.add_argument("--concurrency", type=int, default=32, help="async runs in flight")
    args = parser.parse_args()
    if args.runs < 2 or args.concurrency < 1:
        parser.error("--runs must be at least 2 and --concurrency at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args.runs, args.concurrency)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
