"""Worker throughput against arq, and suspend → resume → continued-on-a-worker latency.

On one private server (AOF on, as in the other benchmarks), with both systems' workers up:

1. ``flowbus``: batches of ``--jobs`` runs of a deployed async flow with one trivial task
   (``bench/worker_flows.py``), created with ``create_flow_run_from_deployment`` (64 calls in
   flight) and executed by real ``python -m flowbus_worker`` processes (``--concurrency 32``). Timed
   from the first create to the last COMPLETED event, read with a blocking ``XREAD`` on the
   queue's events stream.
2. ``arq``: batches of as many no-op jobs on the same server (database 1), enqueued with
   ``enqueue_job`` (64 in flight) and run by arq worker processes (``max_jobs`` 32). Timed
   from the first enqueue to the last result key written (keyspace notifications, so the
   workers do nothing extra). arq pins redis-py below 8, so it runs from its own venv,
   ``bench/.venv-arq`` (created on first use), through ``bench/_arq_jobs.py``.

   With one worker process per system, then two, ``--rounds`` rounds alternate the systems
   (flowbus first in even rounds, arq first in odd ones); during a batch of one system the
   other's workers are stopped (SIGSTOP). The ratio is of the median rates, so the machine's
   drift over a run weighs on both systems alike.
3. ``suspend_resume``: ``--samples`` runs of a deployed flow that calls
   ``suspend_flow_run``; once all are Suspended (their entries acknowledged, their slots free),
   each in turn is resumed with ``resume_flow_run``: t0 before the call, t1 when the flow,
   re-executed on a worker, returns from ``suspend_flow_run`` (stamped there and pushed to a
   list). One worker process. Also reported: when the bench saw the run's RUNNING event.

Stamps are ``CLOCK_MONOTONIC``, one clock for all processes of the machine. CPU seconds of
every process (workers from ``/proc``, Redis from ``INFO cpu``) are reported per batch, and
their median per run, to show where the time goes. Prints one JSON object on stdout; progress
goes to stderr::

    python bench/worker_throughput.py [--jobs 2000] [--rounds 3] [--samples 200]
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
from collections import deque
from collections.abc import Callable
from typing import Any
from uuid import UUID

import _workers
import redis
import redis.asyncio
from _arq_runner import arq_batch, arq_env, arq_python, start_arq_worker
from _server import CommandCounter, latency_ms, machine, point_flowbus_at, private_server
from _workers import STEP_TIMEOUT, Children, Meter, log, workers_dir
from worker_flows import SUSPENDER, TRIVIAL, now_ns

from flowbus import FlowbusClient, get_client, resume_flow_run
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime

#: Runs a worker process executes at once: flowbus ``--concurrency``, arq ``max_jobs``.
CONCURRENCY = 32
#: Create / enqueue calls in flight in the enqueuing process (both systems).
ENQUEUE_CONCURRENCY = 64
#: Runs (jobs) before each timed throughput batch, neither timed nor counted.
WARMUP = 100
#: Suspend-resume samples dropped at the start (connections, script loads).
WARMUP_SAMPLES = 10
#: Pause before each resume, so the worker is idle and blocked in its read (ms).
GAP_MS = 2.0
KEY_PREFIX = "bench"
#: Seconds of a flowbus worker's lease: its workers are stopped while arq runs, and must not
#: take each other for dead when they continue (nothing is pending between batches anyway).
LEASE = 120.0
THROUGHPUT_QUEUE = "tput"
SUSPEND_QUEUE = "susp"
#: Targets: flowbus runs/s per worker process at least arq's; suspend → continued p50.
TARGETS = {"flowbus_over_arq_min": 1.0, "suspend_resume_p50_ms_max": 20.0}

#: Events of one throughput run (SCHEDULED, PENDING, RUNNING, COMPLETED) and flowbus's cap of
#: a queue's events stream: raised for large ``--jobs`` so no unread event is trimmed.
EVENTS_PER_RUN = 4
DEFAULT_QUEUE_EVENTS_MAXLEN = 10_000
#: Event types a run of the throughput flow must not end in.
BAD_ENDS = {"FAILED", "CRASHED", "CANCELLED"}


# -- flowbus ------------------------------------------------------------------------------


def start_flowbus_worker(children: Children, url: str, name: str) -> None:
    """A flowbus worker on both bench queues; returns once it reads them."""
    _workers.start_flowbus_worker(
        children,
        url,
        name,
        [THROUGHPUT_QUEUE, SUSPEND_QUEUE],
        prefix=KEY_PREFIX,
        concurrency=CONCURRENCY,
        lease=LEASE,
    )


class EventReader:
    """A blocking reader of one queue's events stream, from a pinned cursor."""

    def __init__(self, url: str, queue: str) -> None:
        self.redis = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self.stream = Keys(KEY_PREFIX).queue(queue).events()
        self.cursor = "0-0"
        self.buffer: deque[tuple[dict[str, str], int]] = deque()

    async def pin(self) -> None:
        """Read only events published from now on."""
        last: Any = await self.redis.xrevrange(self.stream, count=1)
        self.cursor = last[0][0] if last else "0-0"
        self.buffer.clear()

    async def next(self) -> tuple[dict[str, str], int]:
        """The next event and when this process received it (CLOCK_MONOTONIC ns)."""
        while not self.buffer:
            reply: Any = await self.redis.xread(
                {self.stream: self.cursor}, count=1000, block=int(STEP_TIMEOUT * 1000)
            )
            stamp = now_ns()
            if not reply:
                raise TimeoutError(f"no event on {self.stream} within {STEP_TIMEOUT} s")
            for entry_id, fields in reply[0][1]:
                self.cursor = entry_id
                self.buffer.append((fields, stamp))
        return self.buffer.popleft()

    async def count(self, n: int, wanted: Callable[[dict[str, str]], bool]) -> int:
        """Read until ``n`` events are ``wanted``; the receipt stamp of the last one."""
        seen = 0
        stamp = 0
        while seen < n:
            event, stamp = await self.next()
            if event.get("type") in BAD_ENDS:
                raise RuntimeError(f"run {event.get('run_id')} ended {event}")
            seen += wanted(event)
        return stamp

    async def aclose(self) -> None:
        await self.redis.aclose()


def is_completed(event: dict[str, str]) -> bool:
    return event.get("type") == "COMPLETED"


def is_suspended(event: dict[str, str]) -> bool:
    return event.get("type") == "PAUSED" and event.get("name") == "Suspended"


def completed(run_id: str) -> Callable[[dict[str, str]], bool]:
    return lambda event: event.get("run_id") == run_id and is_completed(event)


async def create_runs(
    client: FlowbusClient, deployment: UUID, n: int, parameters: dict[str, Any] | None = None
) -> list[str]:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            run = await client.create_flow_run_from_deployment(deployment, parameters)
            return str(run.id)

    return await asyncio.gather(*(one() for _ in range(n)))


async def flowbus_batch(
    client: FlowbusClient, events: EventReader, deployment: UUID, n: int
) -> dict[str, float]:
    """Create ``n`` runs; seconds from the first create to the n-th COMPLETED event."""
    await events.pin()
    start = time.perf_counter()
    done = asyncio.create_task(events.count(n, is_completed))
    await create_runs(client, deployment, n)
    enqueued = time.perf_counter()
    await done
    end = time.perf_counter()
    return {"seconds": end - start, "enqueue_seconds": enqueued - start}


async def suspend_resume(
    client: FlowbusClient, url: str, deployment: UUID, samples: int
) -> dict[str, Any]:
    """Suspend ``samples`` (+ warm-up) runs, then resume each in turn, timing the wake-up."""
    total = samples + WARMUP_SAMPLES
    stamps_key = f"{KEY_PREFIX}:bench:continued"
    events = EventReader(url, SUSPEND_QUEUE)
    raw = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
    try:
        await events.pin()
        ids = await create_runs(client, deployment, total, {"stamps": stamps_key})
        await events.count(total, is_suspended)
        ack_wait = await all_acknowledged(raw, Keys(KEY_PREFIX).queue(SUSPEND_QUEUE).stream())
        log(f"  {total} runs suspended; their entries acknowledged {ack_wait * 1000:.1f} ms later")
        t0s, calls, seen, continued = list[int](), list[int](), list[int](), list[int]()
        for run_id in ids:
            await asyncio.sleep(GAP_MS / 1000)
            t0 = now_ns()
            await resume_flow_run(run_id)
            calls.append(now_ns() - t0)
            seen.append(await running_again(events, run_id) - t0)
            reply: Any = await raw.blpop([stamps_key], timeout=STEP_TIMEOUT)
            if reply is None:
                raise TimeoutError(f"run {run_id} did not continue within {STEP_TIMEOUT} s")
            stamped_id, stamp = reply[1].split()
            if stamped_id != run_id:
                raise AssertionError(f"resumed {run_id} but {stamped_id} continued")
            continued.append(int(stamp) - t0)
            t0s.append(t0)
            await events.count(1, completed(run_id))
    finally:
        await raw.aclose()
        await events.aclose()
    return {
        "what": "resume_flow_run() called in the bench (t0) → suspend_flow_run() returns in "
        "the flow re-executed on a worker (t1); one worker process, runs resumed one at a time",
        "entries_acknowledged_ms_after_last_suspended_event": round(ack_wait * 1000, 1),
        "latency_ms": latency_ms(continued[WARMUP_SAMPLES:]),
        "running_event_seen_by_bench_ms": latency_ms(seen[WARMUP_SAMPLES:]),
        "resume_call_ms": latency_ms(calls[WARMUP_SAMPLES:]),
    }


async def all_acknowledged(raw: redis.asyncio.Redis, stream: str) -> float:
    """Seconds until no entry of ``stream`` is pending: every suspended run freed its slot."""
    start = time.perf_counter()
    while True:
        pending: Any = await raw.xpending(stream, "flowbus-workers")
        if not pending["pending"]:
            return time.perf_counter() - start
        if time.perf_counter() - start > STEP_TIMEOUT:
            raise TimeoutError(f"{pending['pending']} entries of {stream} stay unacknowledged")
        await asyncio.sleep(0.001)


async def running_again(events: EventReader, run_id: str) -> int:
    """Receipt stamp of the run's next RUNNING event (after PENDING: it runs on a worker)."""
    while True:
        event, stamp = await events.next()
        if event.get("run_id") == run_id and event.get("type") == "RUNNING":
            return stamp
        if event.get("type") in BAD_ENDS:
            raise RuntimeError(f"run {event.get('run_id')} ended {event}")


# -- rounds -------------------------------------------------------------------------------


async def flowbus_throughput(
    client: FlowbusClient, events: EventReader, deployment: UUID, n: int, meter: Meter
) -> dict[str, Any]:
    await flowbus_batch(client, events, deployment, WARMUP)
    meter.reset()
    timed = await flowbus_batch(client, events, deployment, n)
    return {
        "runs": n,
        "seconds": round(timed["seconds"], 3),
        "runs_per_second": round(n / timed["seconds"], 1),
        "enqueue_seconds": round(timed["enqueue_seconds"], 3),
        **meter.read(n),
    }


def summary(batches: list[dict[str, Any]], processes: int) -> dict[str, Any]:
    """Medians over the rounds of one system and worker count; each round's own figures."""
    rate = statistics.median(b["runs_per_second"] for b in batches)
    cpu = {
        part: round(statistics.median(b["cpu_seconds"][part] / b["runs"] for b in batches) * 1e6)
        for part in ("workers", "redis_server", "enqueuer")
    }
    cpu["total"] = round(
        statistics.median(sum(b["cpu_seconds"].values()) / b["runs"] for b in batches) * 1e6
    )
    first = batches[0]
    return {
        "runs_per_second_median": round(rate, 1),
        "runs_per_second_per_process": round(rate / processes, 1),
        "cpu_us_per_run_median": cpu,
        "rounds": [
            {k: b[k] for k in ("runs_per_second", "seconds", "enqueue_seconds", "cpu_seconds")}
            for b in batches
        ],
        "redis_commands_per_run": first["redis_commands_per_run"],
        "redis_round_trips_per_run": first["redis_round_trips_per_run"],
        "redis_commands_by_name_per_run": first["redis_commands_by_name_per_run"],
        **{k: first[k] for k in ("settings", "versions") if k in first},
    }


class Bench:
    """Both systems' workers, the flowbus client and the arq driver of one run."""

    def __init__(self, url: str, children: Children, counter: CommandCounter, args: Any) -> None:
        self.url, self.children, self.args = url, children, args
        self.flowbus_meter = Meter(counter, children, "flowbus-")
        self.arq_meter = Meter(counter, children, "arq-")
        self.arq_env = arq_env(url, CONCURRENCY, args.arq_poll_delay)
        self.arq_python = arq_python()  # before the loop runs: it may create arq's venv

    async def run(self) -> dict[str, Any]:
        events = EventReader(self.url, THROUGHPUT_QUEUE)
        result: dict[str, Any] = {"flowbus": {}, "arq": {}, "per_round_ratios": {}}
        try:
            async with get_client() as client:
                trivial = await client.create_deployment(TRIVIAL, "bench", queue=THROUGHPUT_QUEUE)
                suspender = await client.create_deployment(SUSPENDER, "bench", queue=SUSPEND_QUEUE)
                for processes, key in ((1, "1_process"), (2, "2_processes")):
                    flowbus, arq = await self.rounds(client, events, trivial, processes)
                    result["flowbus"][key] = summary(flowbus, processes)
                    result["arq"][key] = summary(arq, processes)
                    result["per_round_ratios"][key] = [
                        round(f["runs_per_second"] / a["runs_per_second"], 2)
                        for f, a in zip(flowbus, arq, strict=True)
                    ]
                    if processes == 1:
                        result["flowbus"]["suspend_resume"] = await self.suspend_resume(
                            client, suspender
                        )
        finally:
            await events.aclose()
            await close_runtime()
        return result

    async def suspend_resume(self, client: FlowbusClient, deployment: UUID) -> dict[str, Any]:
        samples = self.args.samples
        log(f"flowbus: suspend → resume → continued, {samples} samples, 1 worker process")
        with self.children.frozen("arq-"):
            measured = await suspend_resume(client, self.url, deployment, samples)
        log(f"  p50 {measured['latency_ms']['p50']} ms")
        return measured

    async def rounds(
        self, client: FlowbusClient, events: EventReader, deployment: UUID, processes: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Start one more worker of each system, then alternate their batches."""
        children, jobs = self.children, self.args.jobs
        await asyncio.to_thread(start_flowbus_worker, children, self.url, f"flowbus-{processes}")
        await asyncio.to_thread(
            start_arq_worker, children, self.arq_python, self.arq_env, f"arq-{processes}"
        )
        flowbus: list[dict[str, Any]] = []
        arq: list[dict[str, Any]] = []
        for round_ in range(self.args.rounds):
            for system in ("flowbus", "arq") if round_ % 2 == 0 else ("arq", "flowbus"):
                if system == "flowbus":
                    with children.frozen("arq-"):
                        batch = await flowbus_throughput(
                            client, events, deployment, jobs, self.flowbus_meter
                        )
                    flowbus.append(batch)
                else:
                    with children.frozen("flowbus-"):
                        batch = await asyncio.to_thread(
                            arq_batch, self.arq_python, self.arq_env, jobs, WARMUP, self.arq_meter
                        )
                    arq.append(batch)
            log(
                f"{processes} process(es), round {round_ + 1}: flowbus "
                f"{flowbus[-1]['runs_per_second']} runs/s, arq {arq[-1]['runs_per_second']} jobs/s"
            )
        return flowbus, arq


# -- report -------------------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    flowbus, arq = result["flowbus"], result["arq"]
    setups = ("1_process", "2_processes")
    ratios = {
        s: round(flowbus[s]["runs_per_second_median"] / arq[s]["runs_per_second_median"], 2)
        for s in setups
    }
    cpu = {
        s: round(
            arq[s]["cpu_us_per_run_median"]["total"] / flowbus[s]["cpu_us_per_run_median"]["total"],
            2,
        )
        for s in setups
    }
    p50 = flowbus["suspend_resume"]["latency_ms"]["p50"]
    return {
        "flowbus_over_arq_runs_per_second": ratios,
        "arq_over_flowbus_cpu_per_run": cpu,
        "throughput_ok": all(r >= TARGETS["flowbus_over_arq_min"] for r in ratios.values()),
        "suspend_resume_p50_ms": p50,
        "suspend_resume_ok": p50 <= TARGETS["suspend_resume_p50_ms_max"],
    }


def run(args: Any) -> dict[str, Any]:
    events_per_batch = EVENTS_PER_RUN * (args.jobs + WARMUP)
    if events_per_batch > DEFAULT_QUEUE_EVENTS_MAXLEN // 2:  # the reader must never lag a trim
        os.environ["FLOWBUS_QUEUE_EVENTS_MAXLEN"] = str(2 * events_per_batch)
    with private_server(appendonly=True) as url, workers_dir() as children:
        point_flowbus_at(url, KEY_PREFIX)  # the workers inherit this environment too
        counter = CommandCounter(url)
        try:
            server = {k: counter.config(k) for k in ("appendonly", "appendfsync", "save")}
            measured = asyncio.run(Bench(url, children, counter, args).run())
            report = {
                "benchmark": "worker_throughput",
                "machine": machine(counter),
                "server": server,
                "setup": {
                    "flowbus_flow": "async flow calling one async task (returns its argument)",
                    "flowbus_worker": f"python -m flowbus_worker --concurrency {CONCURRENCY}, "
                    f"log level WARNING, --lease {LEASE:g} (stopped while arq runs)",
                    "arq_job": "async no-op job, result kept (arq's default)",
                    "arq_worker": f"arq.run_worker, max_jobs {CONCURRENCY}, log level WARNING, "
                    f"poll_delay {args.arq_poll_delay} s",
                    "enqueue_in_flight": ENQUEUE_CONCURRENCY,
                    "warmup_runs_per_batch": WARMUP,
                    "rounds": args.rounds,
                    "timed": "first create/enqueue → last completion seen (flowbus: COMPLETED "
                    "event by XREAD; arq: result key written, by keyspace notification)",
                    "clock": "CLOCK_MONOTONIC (latency), perf_counter (throughput)",
                },
                "targets": TARGETS,
                **measured,
            }
            report["vs_targets"] = verdict(report)
            return report
        finally:
            counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="runs (jobs) per throughput batch")
    parser.add_argument("--rounds", type=int, default=3, help="batches of each system per setup")
    parser.add_argument("--samples", type=int, default=200, help="suspend-resume samples")
    parser.add_argument(
        "--arq-poll-delay",
        type=float,
        default=0.005,
        help="arq's poll_delay (s); its default 0.5 caps a worker near 2 x max_jobs jobs/s",
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.samples < 2 or args.rounds < 1:
        parser.error("--jobs and --rounds must be at least 1, --samples at least 2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
