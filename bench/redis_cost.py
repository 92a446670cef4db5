"""Redis's own cost of a trivial run: CPU per run (enqueue + drain) and bytes per retained run.

On one private server (AOF on, as in the other benchmarks), with a real
``python -m flowbus_worker`` (``--concurrency 32``) running the trivial flow of
``bench/worker_flows.py``:

1. ``cpu``: ``--runs`` runs created with ``create_flow_run_from_deployment`` (64 in flight)
   while the worker is stopped (SIGSTOP), then drained; Redis's CPU (``INFO cpu``
   ``used_cpu_user`` + ``used_cpu_sys`` deltas) and commands (``INFO commandstats``, those
   run inside scripts included) per run, for each phase. The floor, measured in the same run
   and the same way: a job queue with nothing else (``XADD`` of a job, ``XREADGROUP`` of 32 at
   a time, ``HSET`` of its result and ``XACK``, one round trip per job). Medians over
   ``--rounds`` rounds; the ratio is flowbus over the floor. A drain ends as the floor's
   does, at no cost to Redis per run: each run's flow ends with the benchmarks' completion
   mark (``bench/_mark.py``), and the last runs' acknowledgements are awaited; the queue's
   events are read once the round is metered (a watcher's reads are its own cost).
2. ``retention``: after the last round, ``MEMORY USAGE … SAMPLES 0`` of each finished run's
   own keys and its share of what grows with runs (the queue stream and runs index), per run;
   the baseline is a Redis list holding the same events (each a JSON object of its fields)
   per run. Also the queue stream's length once drained (it is trimmed: pending entries plus
   a bounded tail).

CPU seconds of a process are counted whatever else the machine runs, so the figures hold on
a loaded machine, though a busy machine makes every instruction slower. ``--callgrind`` counts
the server's instructions instead (under valgrind, ``bench/_callgrind.py``), which nothing
else on the machine changes; give it a few hundred runs. Prints one JSON object on stdout;
progress goes to stderr::

    python bench/redis_cost.py [--runs 2000] [--rounds 3] [--callgrind]
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
from collections import Counter, defaultdict
from contextlib import ExitStack
from typing import Any
from uuid import UUID

import redis
import redis.asyncio
from _callgrind import CallgrindServer, callgrind_server
from _mark import FIFO_ENV, MarkReader
from _server import CommandCounter, machine, point_flowbus_at, private_server
from _workers import STEP_TIMEOUT, Children, log, start_flowbus_worker, workers_dir
from worker_flows import TRIVIAL

from flowbus import FlowbusClient, get_client
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime
from flowbus.settings import get_settings

KEY_PREFIX = "cost"
QUEUE = "cost"
CONCURRENCY = 32
ENQUEUE_CONCURRENCY = 64
LEASE = 120.0
#: Targets: Redis CPU per trivial run (enqueue + drain), bytes per finished run retained.
TARGETS = {"redis_cpu_us_per_run_max": 80.0, "retained_bytes_per_finished_run_max": 2048}
#: Events of a trivial run (SCHEDULED, PENDING, RUNNING, COMPLETED), at most.
EVENTS_PER_RUN = 4
#: Keys of the floor's job queue.
FLOOR_STREAM, FLOOR_GROUP = "floor:queue", "floor"
#: The consumer group of the queue stream (docs/streams.md).
GROUP = "flowbus-workers"


class Meter:
    """Redis's work (CPU µs, or instructions under callgrind) and commands between
    :meth:`reset` and :meth:`read`."""

    def __init__(self, counter: CommandCounter, callgrind: CallgrindServer | None) -> None:
        self.counter = counter
        self.callgrind = callgrind
        self.unit = "redis_instructions_per_run" if callgrind else "redis_cpu_us_per_run"
        self.cpu = 0.0

    def reset(self) -> None:
        self.counter.reset()
        if self.callgrind:
            self.callgrind.instructions()
        else:
            self.cpu = self.counter.cpu_seconds()

    def work(self) -> float:
        """What the server did since :meth:`reset`, in :attr:`unit` (before per run)."""
        if self.callgrind:
            return float(self.callgrind.instructions())
        return (self.counter.cpu_seconds() - self.cpu) * 1e6

    def read(self, runs: int) -> dict[str, Any]:
        work = self.work()
        counts = self.counter.read()
        by_name = sorted(counts.by_command.items(), key=lambda item: (-item[1], item[0]))
        return {
            self.unit: round(work / runs, 1),
            "commands_per_run": round(counts.total / runs, 2),
            "round_trips_per_run": round(counts.reads / runs, 2),
            "commands_by_name_per_run": {
                name: round(n / runs, 2) for name, n in by_name if n / runs >= 0.05
            },
        }


class Events:
    """The queue's events since a pinned id, read once a round is metered (a watcher's reads
    are no run's cost: the floor has none)."""

    def __init__(self, url: str) -> None:
        self.redis = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self.stream = Keys(KEY_PREFIX).queue(QUEUE).events()
        self.cursor = "0-0"
        self.by_run: dict[str, list[dict[str, str]]] = defaultdict(list)

    async def pin(self) -> None:
        last: Any = await self.redis.xrevrange(self.stream, count=1)
        self.cursor = last[0][0] if last else "0-0"
        self.by_run.clear()

    async def collect(self, n: int) -> None:
        """Every event after the pin; raises unless ``n`` runs completed and none failed."""
        completed = 0
        while True:
            entries: Any = await self.redis.xrange(self.stream, f"({self.cursor}", count=1000)
            if not entries:
                break
            for entry_id, fields in entries:
                self.cursor = entry_id
                self.by_run[fields.get("run_id", "")].append(fields)
                if fields.get("type") in ("FAILED", "CRASHED", "CANCELLED"):
                    raise RuntimeError(f"run {fields.get('run_id')} ended {fields}")
                completed += fields.get("type") == "COMPLETED"
        if completed != n:
            raise RuntimeError(f"{completed} of {n} runs completed")

    async def aclose(self) -> None:
        await self.redis.aclose()


class Drain:
    """The end of a drain, at no cost to Redis per run: every run's completion mark (a byte into
    a FIFO, ``bench/_mark.py``), then the acknowledgement of the last ones, whose final step
    comes after their mark (a blocking read of the events until none is pending)."""

    def __init__(self, url: str, marks: MarkReader) -> None:
        self.redis = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self.marks = marks
        qkeys = Keys(KEY_PREFIX).queue(QUEUE)
        self.queue, self.events = qkeys.stream(), qkeys.events()

    async def wait(self, n: int) -> None:
        await asyncio.to_thread(self.marks.wait, n, STEP_TIMEOUT)
        while True:
            pipe = self.redis.pipeline(transaction=True)  # the two at one instant
            pipe.xpending(self.queue, GROUP)
            pipe.xrevrange(self.events, count=1)
            pending, last = await pipe.execute()
            if not pending["pending"]:
                return
            if not await self.redis.xread(
                {self.events: last[0][0]}, count=1, block=int(STEP_TIMEOUT * 1000)
            ):
                raise TimeoutError(f"{pending['pending']} runs stay unacknowledged")

    async def aclose(self) -> None:
        await self.redis.aclose()


async def enqueue(client: FlowbusClient, deployment: UUID, n: int) -> list[str]:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            return str((await client.create_flow_run_from_deployment(deployment)).id)

    return await asyncio.gather(*(one() for _ in range(n)))


async def flowbus_round(
    client: FlowbusClient,
    deployment: UUID,
    children: Children,
    meter: Meter,
    drain: Drain,
    events: Events,
    n: int,
) -> tuple[dict[str, Any], list[str]]:
    await events.pin()
    with children.frozen("flowbus"):
        meter.reset()
        ids = await enqueue(client, deployment, n)
        enqueued = meter.read(n)
        meter.reset()
    await drain.wait(n)
    drained = meter.read(n)
    await events.collect(n)
    return {"enqueue": enqueued, "drain": drained}, ids


async def floor_round(url: str, meter: Meter, n: int) -> dict[str, Any]:
    """The least a job queue does per job: XADD, XREADGROUP (32 at a time), HSET, XACK."""
    r = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        await r.delete(FLOOR_STREAM)
        await r.xgroup_create(FLOOR_STREAM, FLOOR_GROUP, id="0", mkstream=True)
        gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

        async def add(i: int) -> None:
            async with gate:
                await r.xadd(FLOOR_STREAM, {"job": str(i), "flow": TRIVIAL})

        meter.reset()
        await asyncio.gather(*(add(i) for i in range(n)))
        enqueued = meter.read(n)
        meter.reset()
        done = 0
        while done < n:
            reply: Any = await r.xreadgroup(
                FLOOR_GROUP, "c", {FLOOR_STREAM: ">"}, count=CONCURRENCY, block=1000
            )

            async def finish(entry_id: str) -> None:
                pipe = r.pipeline(transaction=False)
                pipe.hset(f"floor:job:{entry_id}", mapping={"state": "COMPLETED", "result": "0"})
                pipe.xack(FLOOR_STREAM, FLOOR_GROUP, entry_id)
                await pipe.execute()

            entries = [entry_id for _s, batch in reply for entry_id, _f in batch]
            await asyncio.gather(*(finish(e) for e in entries))
            done += len(entries)
        drained = meter.read(n)
        await r.delete(FLOOR_STREAM, *[k async for k in r.scan_iter("floor:job:*", count=1000)])
    finally:
        await r.aclose()
    return {"enqueue": enqueued, "drain": drained}


def total_work(phases: dict[str, Any], unit: str) -> float:
    return round(float(phases["enqueue"][unit] + phases["drain"][unit]), 1)


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


def retention(url: str, ids: list[str], events: Events) -> dict[str, Any]:
    """Bytes each finished run of the last round keeps, against a list of its events."""
    keys, qkeys = Keys(KEY_PREFIX), Keys(KEY_PREFIX).queue(QUEUE)
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        own: Counter[str] = Counter()
        key_count = 0
        wanted = set(ids)
        for key in raw.scan_iter(match=f"{qkeys.tag}:run:*", count=1000):
            run_id, _, suffix = key.split(":run:", 1)[1].partition(":")
            if run_id in wanted:
                own[suffix or "hash"] += memory_usage(raw, [key])
                key_count += 1
        indexes = existing(raw, [keys.run_index(run_id) for run_id in ids])
        if indexes:
            own["index"] = memory_usage(raw, indexes)
        key_count += len(indexes)
        shared = {
            "queue_stream": memory_usage(raw, [qkeys.stream()]),
            "queue_runs_index": memory_usage(raw, [qkeys.runs()]),
        }
        queue_stream_length = raw.xlen(qkeys.stream())
        pipe = raw.pipeline(transaction=False)
        for run_id in ids:
            pipe.rpush(f"baseline:{run_id}", *(json.dumps(e) for e in events.by_run[run_id]))
        pipe.execute()
        baseline = memory_usage(raw, [f"baseline:{run_id}" for run_id in ids])
        raw.delete(*[f"baseline:{run_id}" for run_id in ids])
        runs_in_index = raw.zcard(qkeys.runs())
    finally:
        raw.close()
    n = len(ids)
    # the queue stream and runs index hold every round's runs: this round's share of them
    growing = own.total() + sum(shared.values()) * n / max(n, runs_in_index)
    per_run = growing / n
    return {
        "runs": n,
        "keys_per_run": round(key_count / n, 2),
        "own_bytes_per_run_by_key": {k: round(v / n) for k, v in sorted(own.items())},
        "queue_bytes_per_run": {k: round(v / max(n, runs_in_index)) for k, v in shared.items()},
        "bytes_per_finished_run": round(per_run),
        "baseline_list_of_events_bytes_per_run": round(baseline / n),
        "over_baseline": round(per_run / (baseline / n), 2),
        "queue_stream_length_after_drain": queue_stream_length,
        "runs_ever_added_to_queue": runs_in_index,
    }


async def measure(url: str, children: Children, marks: MarkReader, meter: Meter, args: Any) -> Any:
    unit = meter.unit
    flowbus: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    events, drain = Events(url), Drain(url, marks)
    try:
        async with get_client() as client:
            deployment = await client.create_deployment(TRIVIAL, "cost", queue=QUEUE)
            # warm up: connections, script loads, the worker's first runs
            await events.pin()
            await enqueue(client, deployment, 100)
            await drain.wait(100)
            await events.collect(100)
            await floor_round(url, meter, 100)
            ids: list[str] = []
            for round_ in range(args.rounds):
                order = ("flowbus", "floor") if round_ % 2 == 0 else ("floor", "flowbus")
                for system in order:
                    if system == "flowbus":
                        phases, ids = await flowbus_round(
                            client, deployment, children, meter, drain, events, args.runs
                        )
                        flowbus.append(phases)
                    else:
                        floor.append(await floor_round(url, meter, args.runs))
                log(
                    f"round {round_}: {unit}: flowbus {total_work(flowbus[-1], unit)}, "
                    f"floor {total_work(floor[-1], unit)}"
                )
            kept = await asyncio.to_thread(retention, url, ids, events)
    finally:
        await events.aclose()
        await drain.aclose()
        await close_runtime()
    fb = [total_work(p, unit) for p in flowbus]
    fl = [total_work(p, unit) for p in floor]
    ratios = [round(a / b, 2) for a, b in zip(fb, fl, strict=True)]
    return {
        "cpu": {
            "unit": unit,
            "flowbus_rounds": fb,
            "floor_rounds": fl,
            "flowbus_median": statistics.median(fb),
            "floor_median": statistics.median(fl),
            "over_floor_rounds": ratios,
            "over_floor_median": statistics.median(ratios),
            "flowbus_last_round": flowbus[-1],
            "floor_last_round": floor[-1],
        },
        "retention": kept,
    }


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    cpu = report["cpu"]
    kept = report["retention"]["bytes_per_finished_run"]
    out: dict[str, Any] = {
        cpu["unit"]: cpu["flowbus_median"],
        "over_floor_median": cpu["over_floor_median"],
        "bytes_per_finished_run": kept,
        "retention_ok": kept <= TARGETS["retained_bytes_per_finished_run_max"],
    }
    if cpu["unit"] == "redis_cpu_us_per_run":
        out["redis_cpu_ok"] = cpu["flowbus_median"] <= TARGETS["redis_cpu_us_per_run_max"]
    return out


def run(args: Any) -> dict[str, Any]:
    cap = max(get_settings().queue_events_maxlen, 2 * EVENTS_PER_RUN * args.runs)
    os.environ["FLOWBUS_QUEUE_EVENTS_MAXLEN"] = str(cap)  # no unread event is trimmed
    with ExitStack() as stack:
        callgrind = stack.enter_context(callgrind_server()) if args.callgrind else None
        url = callgrind.url if callgrind else stack.enter_context(private_server(appendonly=True))
        marks = MarkReader()
        stack.callback(marks.close)
        children = stack.enter_context(workers_dir())  # stopped before the server
        point_flowbus_at(url, KEY_PREFIX)
        counter = CommandCounter(url)
        meter = Meter(counter, callgrind)
        try:
            start_flowbus_worker(
                children,
                url,
                "flowbus-cost",
                [QUEUE],
                prefix=KEY_PREFIX,
                concurrency=CONCURRENCY,
                lease=LEASE,
                env={"FLOWBUS_QUEUE_EVENTS_MAXLEN": str(cap), FIFO_ENV: str(marks.path)},
            )
            report: dict[str, Any] = {
                "benchmark": "redis_cost",
                "machine": machine(counter),
                "setup": {
                    "worker": f"python -m flowbus_worker --concurrency {CONCURRENCY}",
                    "flow": "async flow calling one async task (bench/worker_flows.py)",
                    "runs": args.runs,
                    "rounds": args.rounds,
                    "work": "instructions of the server (callgrind dumps)"
                    if callgrind
                    else "INFO cpu used_cpu_user + used_cpu_sys deltas of the server (µs)",
                },
                "targets": TARGETS,
                **asyncio.run(measure(url, children, marks, meter, args)),
            }
            report["vs_targets"] = verdict(report)
            return report
        finally:
            counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000, help="runs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (flowbus and the floor)")
    parser.add_argument(
        "--callgrind", action="store_true", help="count the server's instructions (valgrind)"
    )
    args = parser.parse_args()
    if args.runs < 10 or args.rounds < 1:
        parser.error("--runs must be at least 10, --rounds at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
