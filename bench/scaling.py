"""Scaling curves: queues per worker, a backlog, paused runs per process, bytes per kept run.

On one private server (AOF on), with real ``python -m flowbus_worker`` processes
(``--concurrency 32``) running the trivial flow of ``bench/worker_flows.py``:

1. ``queues_per_worker``: a worker serving 1, 10, or 50 queues. Idle and alone, its
   blocking connections (``CLIENT LIST``) and commands per second (``INFO commandstats``) are
   counted. Then, with the three workers up, each round gives every one two drains, in an
   order that rotates (the others stopped, SIGSTOP): ``--runs`` runs enqueued while it is
   stopped, spread over all its queues (``spread``) or all on one (``busy``), and drained,
   timed from its continuation to the last COMPLETED event. A round's ratios are to the
   one-queue worker's drains of that round; their median over ``--rounds`` is reported.
2. ``retention``: ``--runs`` runs completed, then ``MEMORY USAGE … SAMPLES 0`` of each run's
   own keys and of the queue's shared structures, per finished run.
3. ``backlog``: 1,000 then ``--backlog`` runs enqueued while the worker is stopped, drained.
4. ``paused_runs``: 1k, 10k, 100k (``--paused``) async flows paused in one process: its RSS
   and connections, and resume latency of random runs from another process over the
   ``XADD`` → ``XREAD`` floor (both from ``bench/resume_latency.py``). The RSS target is
   judged at the most paused runs, as it is set (100,000 in one process).

Prints one JSON object on stdout; progress goes to stderr::

    python bench/scaling.py [--runs 2000] [--rounds 5] [--backlog 100000] \
        [--paused 1000,10000,100000] [--only queues,retention,backlog,paused]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any
from uuid import UUID

import redis
import redis.asyncio
import resume_latency
from _server import CommandCounter, machine, point_flowbus_at, private_server
from _workers import (
    STEP_TIMEOUT,
    Children,
    log,
    start_flowbus_worker,
    workers_dir,
)
from worker_flows import TRIVIAL

from flowbus import FlowbusClient, get_client
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime
from flowbus.settings import get_settings

KEY_PREFIX = "scale"
CONCURRENCY = 32
ENQUEUE_CONCURRENCY = 64
#: A worker's lease (s): it is stopped while runs are enqueued, and must not be taken for dead.
LEASE = 120.0
QUEUE_COUNTS = (1, 10, 50)
#: Seconds an idle worker's commands are counted over.
IDLE_SECONDS = 5.0
#: Targets of the issue: many queues at least 0.9x one queue; idle commands per queue.
TARGETS = {
    "queues_50_over_1_min": 0.9,
    "idle_commands_per_second_per_queue_max": 0.1,
    "retained_bytes_per_finished_run_max": 2048,
    "paused_rss_kib_per_run_max": 10,
    "paused_connections_max": 8,
    "paused_resume_p50_over_floor_p50_max": 3.0,
}
#: The curves, in the order they run; ``--only`` picks some.
PARTS = ("queues", "retention", "backlog", "paused")
#: Events of a trivial run on its queue's events stream (SCHEDULED, PENDING, RUNNING, COMPLETED).
EVENTS_PER_RUN = 4


def start_worker(children: Children, url: str, name: str, queues: list[str]) -> None:
    """A worker serving ``queues``; returns once it beats and blocks in its reads."""
    start_flowbus_worker(
        children,
        url,
        name,
        queues,
        prefix=KEY_PREFIX,
        concurrency=CONCURRENCY,
        lease=LEASE,
        env={"FLOWBUS_QUEUE_EVENTS_MAXLEN": str(get_settings().queue_events_maxlen)},
    )


def blocking_connections(client: redis.Redis) -> int:
    """Connections whose last command reads a stream (what blocked readers re-issue)."""
    clients: list[dict[str, Any]] = client.client_list()
    return sum(1 for c in clients if c.get("cmd") in ("xread", "xreadgroup"))


class Completions:
    """Counts COMPLETED events of some queues with one blocking ``XREAD``, from pinned ids."""

    def __init__(self, url: str, queues: list[str]) -> None:
        self.redis = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        keys = Keys(KEY_PREFIX)
        self.cursors = {keys.queue(q).events(): "0-0" for q in queues}

    async def pin(self) -> None:
        for stream in self.cursors:
            last: Any = await self.redis.xrevrange(stream, count=1)
            self.cursors[stream] = last[0][0] if last else "0-0"

    async def wait(self, n: int) -> float:
        """Read until ``n`` COMPLETED events; ``perf_counter`` when the last one was read."""
        seen = 0
        while seen < n:
            streams: Any = self.cursors
            reply: Any = await self.redis.xread(streams, count=1000, block=int(STEP_TIMEOUT * 1000))
            if not reply:
                raise TimeoutError(f"{seen} of {n} runs completed within {STEP_TIMEOUT} s")
            for stream, entries in reply:
                for entry_id, fields in entries:
                    self.cursors[stream] = entry_id
                    if fields.get("type") in ("FAILED", "CRASHED", "CANCELLED"):
                        raise RuntimeError(f"run {fields.get('run_id')} ended {fields}")
                    seen += fields.get("type") == "COMPLETED"
        return time.perf_counter()

    async def aclose(self) -> None:
        await self.redis.aclose()


async def enqueue(client: FlowbusClient, deployments: list[UUID], n: int) -> list[str]:
    """``n`` runs, round-robin over ``deployments`` (64 creates in flight)."""
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one(i: int) -> str:
        async with gate:
            run = await client.create_flow_run_from_deployment(deployments[i % len(deployments)])
            return str(run.id)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def drain(
    client: FlowbusClient,
    children: Children,
    url: str,
    worker: str,
    deployments: list[UUID],
    queues: list[str],
    n: int,
) -> dict[str, Any]:
    """Enqueue ``n`` runs with the worker stopped; seconds from its continuation to the last."""
    completions = Completions(url, queues)
    try:
        await completions.pin()
        cpu_before = children.cpu_seconds(worker)
        with children.frozen(worker):
            started = time.perf_counter()
            await enqueue(client, deployments, n)
            enqueue_seconds = time.perf_counter() - started
            done = asyncio.create_task(completions.wait(n))
        continued = time.perf_counter()
        seconds = await done - continued
        cpu = children.cpu_seconds(worker) - cpu_before
    finally:
        await completions.aclose()
    return {
        "runs": n,
        "enqueue_seconds": round(enqueue_seconds, 3),
        "drain_seconds": round(seconds, 3),
        "runs_per_second": round(n / seconds, 1),
        "worker_cpu_us_per_run": round(cpu / n * 1e6),
    }


def idle_cost(counter: CommandCounter, queues: int) -> dict[str, Any]:
    """Commands per second of the (only) idle worker, and its blocking connections."""
    time.sleep(1)  # its start-up scans and sweeps are done
    counter.reset()
    time.sleep(IDLE_SECONDS)
    counts = counter.read()
    return {
        "blocking_connections": blocking_connections(counter.redis),
        "commands_per_second": round(counts.total / IDLE_SECONDS, 2),
        "commands_by_name": dict(sorted(counts.by_command.items())),
        "queues": queues,
    }


async def queues_per_worker(
    client: FlowbusClient, children: Children, url: str, counter: CommandCounter, args: Any
) -> dict[str, Any]:
    """Idle cost of each worker alone; then drains, every round giving each queue count a
    drain of each mode in an order that rotates (the other workers stopped meanwhile), so
    that a slow spell of the machine lands on all of them alike."""
    queues = {count: [f"q{count}-{i}" for i in range(count)] for count in QUEUE_COUNTS}
    worker = {count: f"flowbus-{count}q" for count in QUEUE_COUNTS}
    idle: dict[int, dict[str, Any]] = {}
    for count in QUEUE_COUNTS:
        await asyncio.to_thread(start_worker, children, url, worker[count], queues[count])
        idle[count] = await asyncio.to_thread(idle_cost, counter, count)
        children.stop(worker[count])  # its connections stay out of the next one's count
    deployments = {
        count: [await client.create_deployment(TRIVIAL, q, queue=q) for q in queues[count]]
        for count in QUEUE_COUNTS
    }
    for count in QUEUE_COUNTS:
        await asyncio.to_thread(start_worker, children, url, worker[count], queues[count])
        children.freeze(worker[count])
    modes = ("spread", "busy")
    rates = {(count, mode): list[float]() for count in QUEUE_COUNTS for mode in modes}
    cpu = {(count, mode): list[float]() for count in QUEUE_COUNTS for mode in modes}
    for round_ in range(args.rounds):
        shift = round_ % len(QUEUE_COUNTS)
        for count in QUEUE_COUNTS[shift:] + QUEUE_COUNTS[:shift]:
            chosen = {"spread": deployments[count], "busy": [deployments[count][count // 2]]}
            children.thaw(worker[count])
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                batch = await drain(
                    client, children, url, worker[count], chosen[mode], queues[count], args.runs
                )
                rates[count, mode].append(batch["runs_per_second"])
                cpu[count, mode].append(batch["worker_cpu_us_per_run"])
            children.freeze(worker[count])
        drained = (
            f"{n} queue(s) {rates[n, 'spread'][-1]}/{rates[n, 'busy'][-1]}" for n in QUEUE_COUNTS
        )
        log(f"round {round_ + 1}, runs/s spread/busy: {', '.join(drained)}")
    for count in QUEUE_COUNTS:
        children.stop(worker[count])
    result: dict[str, Any] = {}
    for count in QUEUE_COUNTS:
        extra = idle[count]["commands_per_second"] - idle[1]["commands_per_second"]
        idle[count]["extra_commands_per_second_per_queue"] = (
            round(extra / (count - 1), 3) if count > 1 else 0.0
        )
        entry: dict[str, Any] = {"idle": idle[count]}
        for mode in modes:
            ratios = [r / one for r, one in zip(rates[count, mode], rates[1, mode], strict=True)]
            cpu_ratios = [
                c / max(1, one)  # clock ticks: 10 ms
                for c, one in zip(cpu[count, mode], cpu[1, mode], strict=True)
            ]
            entry[mode] = {
                "runs_per_second_median": statistics.median(rates[count, mode]),
                "rounds": rates[count, mode],
                "worker_cpu_us_per_run_median": statistics.median(cpu[count, mode]),
                "over_1_queue": round(statistics.median(ratios), 2),
                "over_1_queue_rounds": [round(r, 2) for r in ratios],
                "cpu_per_run_over_1_queue": round(statistics.median(cpu_ratios), 2),
            }
        result[f"{count}_queues"] = entry
    return result


def memory_usage(client: redis.Redis, keys: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(size or 0) for size in pipe.execute())


def existing(client: redis.Redis, keys: list[str]) -> list[str]:
    """Those of ``keys`` that exist: a run has an index only if its id was its creator's."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [key for key, found in zip(keys, pipe.execute(), strict=True) if found]


async def retention(client: FlowbusClient, children: Children, url: str, n: int) -> dict[str, Any]:
    """Bytes each finished run keeps for its retention: its own keys, and its queue's share."""
    queue = "retained"
    await asyncio.to_thread(start_worker, children, url, "flowbus-retention", [queue])
    deployment = await client.create_deployment(TRIVIAL, "retained", queue=queue)
    completions = Completions(url, [queue])
    try:
        await completions.pin()
        ids = await enqueue(client, [deployment], n)
        await completions.wait(n)
    finally:
        await completions.aclose()
    children.stop("flowbus-retention")
    keys, qkeys = Keys(KEY_PREFIX), Keys(KEY_PREFIX).queue(queue)
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        own: Counter[str] = Counter()
        for key in raw.scan_iter(match=f"{qkeys.tag}:run:*", count=1000):
            suffix = key.split(":run:", 1)[1].partition(":")[2] or "hash"
            own[suffix] += memory_usage(raw, [key])
        indexes = existing(raw, [keys.run_index(run_id) for run_id in ids])
        if indexes:
            own["index"] = memory_usage(raw, indexes)
        shared = {
            name: memory_usage(raw, [key])
            for name, key in (
                ("queue_stream", qkeys.stream()),
                ("queue_runs_index", qkeys.runs()),
                ("queue_events_capped", qkeys.events()),
                ("queue_control_capped", qkeys.control()),
            )
        }
        key_count = len(indexes)
        key_count += sum(1 for _ in raw.scan_iter(match=f"{qkeys.tag}:run:*", count=1000))
    finally:
        raw.close()
    growing = own.total() + shared["queue_stream"] + shared["queue_runs_index"]
    return {
        "runs": n,
        "keys_per_run": round(key_count / n, 2),
        "own_bytes_per_run_by_key": {k: round(v / n) for k, v in sorted(own.items())},
        "queue_bytes_per_run": {k: round(v / n) for k, v in shared.items()},
        "bytes_per_finished_run": round(growing / n),
        "what": "own keys + the queue stream and runs index (which grow with runs); the queue's "
        "events and control streams are capped, so a steady state does not grow with runs",
    }


async def backlog(
    client: FlowbusClient, children: Children, url: str, sizes: list[int]
) -> dict[str, Any]:
    queue = "backlog"
    await asyncio.to_thread(start_worker, children, url, "flowbus-backlog", [queue])
    deployment = await client.create_deployment(TRIVIAL, "backlog", queue=queue)
    result: dict[str, Any] = {}
    for size in sizes:
        batch = await drain(client, children, url, "flowbus-backlog", [deployment], [queue], size)
        result[str(size)] = batch
        log(f"backlog {size}: {batch}")
    children.stop("flowbus-backlog")
    small, large = result[str(sizes[0])], result[str(sizes[-1])]
    result["largest_over_smallest"] = round(large["runs_per_second"] / small["runs_per_second"], 2)
    return result


def paused_runs(url: str, counter: CommandCounter, sizes: list[int]) -> dict[str, Any]:
    floor = resume_latency.floor(url, 200 + resume_latency.WARMUP, sync=False)
    result: dict[str, Any] = {"floor": floor}
    for size in sizes:
        log(f"paused runs: {size} in one process")
        many = resume_latency.many_paused(url, counter, size, prefix=f"paused{size}")
        p50, p99 = many["resume_latency_ms"]["p50"], many["resume_latency_ms"]["p99"]
        result[str(size)] = {
            "rss_kib_per_paused_run": many["rss_kib_A"]["per_paused_run"],
            "connections_held": many["connections_held_by_A"],
            "seconds_to_pause_all": many["seconds_to_pause_all"],
            "redis_bytes_per_paused_run": many["redis_used_memory_bytes_per_paused_run"],
            "resume_p50_over_floor_p50": round(p50 / floor["latency_ms"]["p50"], 2),
            "resume_p99_over_floor_p99": round(p99 / floor["latency_ms"]["p99"], 2),
            "resume_latency_ms": many["resume_latency_ms"],
        }
    return result


def with_events_cap(maxlen: int) -> None:
    """This process's (and later workers') cap of a queue's events stream."""
    os.environ["FLOWBUS_QUEUE_EVENTS_MAXLEN"] = str(maxlen)
    get_settings.cache_clear()


async def measure(url: str, children: Children, counter: CommandCounter, args: Any) -> Any:
    result: dict[str, Any] = {}
    try:
        async with get_client() as client:
            if "queues" in args.only:
                log(f"queues per worker {QUEUE_COUNTS}, {args.runs} runs, {args.rounds} rounds")
                result["queues_per_worker"] = await queues_per_worker(
                    client, children, url, counter, args
                )
            if "retention" in args.only:
                log(f"retention: {args.runs} finished runs")
                result["retention"] = await retention(client, children, url, args.runs)
    finally:
        await close_runtime()
    if "backlog" not in args.only:
        return result
    # the completion reader must never lag a trim of the events stream
    with_events_cap(max(get_settings().queue_events_maxlen, 2 * EVENTS_PER_RUN * args.backlog))
    try:
        async with get_client() as client:
            sizes = sorted({min(1000, args.backlog), args.backlog})
            result["backlog"] = await backlog(client, children, url, sizes)
    finally:
        await close_runtime()
    return result


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "queues_per_worker" in report:
        queues = report["queues_per_worker"]
        fifty = queues["50_queues"]
        out["queues_50_over_1"] = {m: fifty[m]["over_1_queue"] for m in ("spread", "busy")}
        out["queues_50_over_1_worker_cpu_per_run"] = {
            m: fifty[m]["cpu_per_run_over_1_queue"] for m in ("spread", "busy")
        }
        out["blocking_connections_1_10_50"] = [
            queues[f"{c}_queues"]["idle"]["blocking_connections"] for c in QUEUE_COUNTS
        ]
        out["idle_extra_commands_per_second_per_queue"] = fifty["idle"][
            "extra_commands_per_second_per_queue"
        ]
        out["queues_ok"] = min(out["queues_50_over_1"].values()) >= TARGETS["queues_50_over_1_min"]
        out["idle_ok"] = (
            out["idle_extra_commands_per_second_per_queue"]
            <= TARGETS["idle_commands_per_second_per_queue_max"]
        )
    if "retention" in report:
        out["bytes_per_finished_run"] = report["retention"]["bytes_per_finished_run"]
        out["retention_ok"] = (
            out["bytes_per_finished_run"] <= TARGETS["retained_bytes_per_finished_run_max"]
        )
    if "paused_runs" in report:
        curve = {k: v for k, v in report["paused_runs"].items() if k != "floor"}
        out["paused_rss_kib_per_run"] = {k: v["rss_kib_per_paused_run"] for k, v in curve.items()}
        out["paused_connections"] = {k: v["connections_held"] for k, v in curve.items()}
        out["paused_resume_p50_over_floor_p50"] = {
            k: v["resume_p50_over_floor_p50"] for k, v in curve.items()
        }
        # RSS per paused run is judged where the target puts it, at the most paused runs
        # (100,000): at 1,000 the heap still holds the peak of the burst that paused them
        # (``resume_latency.WAVE`` flows at once), some 1.5 KiB per run more
        most = max(curve, key=int)
        out["paused_ok"] = (
            out["paused_rss_kib_per_run"][most] <= TARGETS["paused_rss_kib_per_run_max"]
            and max(out["paused_connections"].values()) <= TARGETS["paused_connections_max"]
            and max(out["paused_resume_p50_over_floor_p50"].values())
            <= TARGETS["paused_resume_p50_over_floor_p50_max"]
        )
    return out


def run(args: Any) -> dict[str, Any]:
    with private_server(appendonly=True) as url, workers_dir() as children:
        point_flowbus_at(url, KEY_PREFIX)
        counter = CommandCounter(url)
        try:
            report: dict[str, Any] = {
                "benchmark": "scaling",
                "machine": machine(counter),
                "setup": {
                    "worker": f"python -m flowbus_worker --concurrency {CONCURRENCY}, "
                    f"log level WARNING, --lease {LEASE:g}",
                    "flow": "async flow calling one async task (bench/worker_flows.py)",
                    "runs": args.runs,
                    "rounds": args.rounds,
                    "enqueue_in_flight": ENQUEUE_CONCURRENCY,
                    "timed": "enqueued while the worker is stopped; its continuation → the "
                    "last COMPLETED event (XREAD of the queues' events streams)",
                },
                "targets": TARGETS,
                **asyncio.run(measure(url, children, counter, args)),
            }
            if args.paused and "paused" in args.only:
                report["paused_runs"] = paused_runs(url, counter, args.paused)
            report["vs_targets"] = verdict(report)
            return report
        finally:
            counter.close()


def sizes(value: str) -> list[int]:
    parsed = [int(part) for part in value.split(",") if part]
    if any(size < 2 for size in parsed):
        raise argparse.ArgumentTypeError("every size must be at least 2")
    return parsed


def parts(value: str) -> list[str]:
    chosen = [part for part in value.split(",") if part]
    if not chosen or set(chosen) - set(PARTS):
        raise argparse.ArgumentTypeError(f"choose among {', '.join(PARTS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000, help="runs per drain")
    parser.add_argument("--rounds", type=int, default=5, help="drains per mode and queue count")
    parser.add_argument("--backlog", type=int, default=100_000, help="largest backlog drained")
    parser.add_argument(
        "--paused", type=sizes, default=[1000, 10_000, 100_000], help="paused runs (comma list)"
    )
    parser.add_argument(
        "--only", type=parts, default=list(PARTS), help=f"curves to measure (of {','.join(PARTS)})"
    )
    args = parser.parse_args()
    if args.runs < 10 or args.rounds < 1 or args.backlog < 10:
        parser.error("--runs and --backlog must be at least 10, --rounds at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
