"""Worker throughput against arq and taskiq, and suspend → resume → continued latency.

On one private server (AOF ``everysec``, automatic AOF rewrites off so none lands inside a
measured window), with every system's workers up:

1. Throughput, the peers' way: for each system, ``--jobs`` jobs are enqueued while its
   workers are stopped (SIGSTOP), then its workers are continued and the drain is timed,
   from the continue to the last job's completion mark. Every job ends with the same mark,
   one byte into a FIFO the benchmark reads (``bench/_mark.py``), so the systems finish by
   the same sign and the mark costs Redis nothing. The producer runs before the window, not
   in it: only the workers and Redis run while it is timed.

   - ``flowbus``: a deployed async flow calling one async task (``bench/worker_flows.py``),
     created with ``create_flow_run_from_deployment`` (64 calls in flight, in this
     process), executed by ``python -m flowbus_worker --concurrency 32``;
   - ``arq``: a no-op job, result kept (arq's default), ``enqueue_job`` (64 in flight),
     ``arq.run_worker`` with ``max_jobs`` 32 (``bench/_arq_jobs.py``);
   - ``taskiq``: a no-op task on taskiq-redis's ``RedisStreamBroker`` with its result
     backend, ``kiq()`` (64 in flight), one receiver with ``max_async_tasks`` 32 on uvloop
     (``bench/_taskiq_jobs.py``).

   arq and taskiq each run from a venv of their own under ``bench/``, made on first use
   (``bench/_peers.py``; arq pins redis-py below 8). With one worker process per system, then two,
   ``--rounds`` rounds run each system once, in an order that rotates every round; a
   warm-up drain of ``WARMUP`` jobs precedes each timed one, and every other system's
   workers are stopped meanwhile. Each round gives its own ratios (flowbus's drain rate over
   each peer's), reported with their spread, next to each system's CPU µs per job (workers,
   Redis while draining, producer and Redis while enqueuing) and Redis commands per job.
   The headline ratio is the median of the rounds': this shared machine's speed moves by a
   third for tens of seconds at a time (the same code's CPU per job with it), and such a
   spell slows whichever system drains in it. Nine rounds, three of every order, keep three
   back-to-back runs' medians within ±10 % of each other, where three rounds moved by ±15 %.
2. ``suspend_resume``: ``--samples`` runs of a deployed flow that calls
   ``suspend_flow_run``; once all are Suspended (their entries acknowledged, their slots free),
   each in turn is resumed with ``resume_flow_run``: t0 before the call, t1 when the flow,
   re-executed on a worker, returns from ``suspend_flow_run`` (stamped there and pushed to a
   list). One worker process. Also reported: when the bench saw the run's RUNNING event.

CPU seconds of workers come from ``/proc``, Redis's from ``INFO cpu``, producers' from their
own ``process_time``. Prints one JSON object on stdout; progress goes to stderr. About ten
minutes on an idle two-core machine::

    python bench/worker_throughput.py [--jobs 10000] [--rounds 9] [--processes 1,2]
        [--systems flowbus,arq,taskiq] [--warmup 200] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
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
from _mark import MarkReader
from _peers import PEERS, Peer
from _server import CommandCounter, latency_ms, machine, point_flowbus_at, private_server
from _workers import STEP_TIMEOUT, Children, log, workers_dir
from worker_flows import SUSPENDER, TRIVIAL, now_ns

from flowbus import FlowbusClient, get_client, resume_flow_run
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime

#: Runs a worker process executes at once: flowbus ``--concurrency``, arq ``max_jobs``,
#: taskiq ``max_async_tasks``.
CONCURRENCY = 32
#: Create / enqueue calls in flight in the producer (every system).
ENQUEUE_CONCURRENCY = 64
#: Jobs drained before each timed drain (``--warmup``), neither timed nor counted.
WARMUP = 200
#: Suspend-resume samples dropped at the start (connections, script loads).
WARMUP_SAMPLES = 10
#: Pause before each resume, so the worker is idle and blocked in its read (ms).
GAP_MS = 2.0
KEY_PREFIX = "bench"
#: Seconds of a flowbus worker's lease: its workers are stopped while the others run, and
#: must not take each other for dead when they continue.
LEASE = 600.0
THROUGHPUT_QUEUE = "tput"
SUSPEND_QUEUE = "susp"
SYSTEMS = ("flowbus", "arq", "taskiq")
#: Targets: flowbus's drain rate over taskiq's in every round, over arq's (median; the
#: ratios to arq measured before the reliability work), suspend → continued p50.
TARGETS = {
    "flowbus_over_taskiq_min": {"1_process": 1.0, "2_processes": 1.0},
    "flowbus_over_arq_median": {"1_process": 1.58, "2_processes": 2.05},
    "suspend_resume_p50_ms_max": 20.0,
}
#: Event types a run of the suspender must not end in.
BAD_ENDS = {"FAILED", "CRASHED", "CANCELLED"}


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


# -- the systems -------------------------------------------------------------------------


async def create_runs(
    client: FlowbusClient, deployment: UUID, n: int, parameters: dict[str, Any] | None = None
) -> list[str]:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            run = await client.create_flow_run_from_deployment(deployment, parameters)
            return str(run.id)

    return await asyncio.gather(*(one() for _ in range(n)))


class Flowbus:
    """flowbus's side: its workers, and its producer in this process."""

    name = "flowbus"

    def __init__(self, url: str, client: FlowbusClient, deployment: UUID) -> None:
        self.url, self.client, self.deployment = url, client, deployment
        self.pending_of = redis.Redis.from_url(url, decode_responses=True)
        self.info: dict[str, Any] = {}

    def start_worker(self, children: Children, name: str, fifo: str) -> None:
        """A flowbus worker on both bench queues; returns once it reads them."""
        _workers.start_flowbus_worker(
            children,
            self.url,
            name,
            [THROUGHPUT_QUEUE, SUSPEND_QUEUE],
            prefix=KEY_PREFIX,
            concurrency=CONCURRENCY,
            lease=LEASE,
            env={"BENCH_MARK_FIFO": fifo},
        )

    async def enqueue(self, n: int) -> dict[str, float]:
        cpu, start = time.process_time(), time.perf_counter()
        await create_runs(self.client, self.deployment, n)
        return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}

    def pending(self) -> int:
        """Entries not acknowledged yet: a run still finishing."""
        stream = Keys(KEY_PREFIX).queue(THROUGHPUT_QUEUE).stream()
        return int(self.pending_of.xpending(stream, "flowbus-workers")["pending"])

    def close(self) -> None:
        self.pending_of.close()


class PeerSystem:
    """A peer's side: its workers and producer, in its own venv."""

    def __init__(self, peer: Peer, url: str, fifo: str) -> None:
        self.peer, self.name = peer, peer.name
        self.env = peer.env(url, CONCURRENCY, fifo)
        self.peer.python()  # before the rounds: it may create the venv
        self.client = redis.Redis.from_url(self.env["BENCH_PEER_REDIS_URL"])
        self.info: dict[str, Any] = {}

    def start_worker(self, children: Children, name: str, fifo: str) -> None:
        self.peer.start_worker(children, self.env, name)

    async def enqueue(self, n: int) -> dict[str, float]:
        reported = await asyncio.to_thread(self.peer.enqueue, self.env, n)
        self.info = {k: reported[k] for k in ("versions", "settings")}
        return {k: reported[k] for k in ("seconds", "cpu_seconds")}

    def pending(self) -> int:
        if self.name == "arq":  # queued (and in progress) jobs stay in arq's queue
            return int(self.client.zcard("arq:queue"))
        if self.client.type("bench") != b"stream":  # taskiq's list broker acknowledges nothing
            return int(self.client.llen("bench"))
        return int(self.client.xpending("bench", "bench")["pending"])  # taskiq's group

    def close(self) -> None:
        self.client.close()


System = Flowbus | PeerSystem


def per_job(counts: Any, jobs: int) -> dict[str, Any]:
    by_name = sorted(counts.by_command.items(), key=lambda item: (-item[1], item[0]))
    return {
        "commands": round(counts.total / jobs, 2),
        "round_trips": round(counts.reads / jobs, 2),
        "by_name": {name: round(n / jobs, 2) for name, n in by_name if n / jobs >= 0.05},
    }


# -- rounds ------------------------------------------------------------------------------


class Throughput:
    """Every system's workers, and drains of one system at a time."""

    def __init__(
        self,
        children: Children,
        counter: CommandCounter,
        marks: MarkReader,
        systems: list[System],
        warmup: int,
    ) -> None:
        self.children, self.counter, self.marks = children, counter, marks
        self.systems, self.warmup = systems, warmup

    def add_workers(self, processes: int) -> None:
        for system in self.systems:
            system.start_worker(self.children, f"{system.name}-{processes}", str(self.marks.path))

    async def drain(self, system: System, jobs: int) -> dict[str, Any]:
        """Enqueue ``jobs`` with every worker stopped, then time ``system``'s drain of them."""
        children, counter = self.children, self.counter
        prefix = f"{system.name}-"
        with contextlib.ExitStack() as others:
            for other in self.systems:
                if other is not system:
                    others.enter_context(children.frozen(f"{other.name}-"))
            with children.frozen(prefix):
                counter.reset()
                redis_start = counter.cpu_seconds()
                produced = await system.enqueue(jobs)
                enqueued = counter.read()
                redis_enqueued = counter.cpu_seconds()
                counter.reset()
                workers_start = children.cpu_seconds(prefix)
                start = time.perf_counter()
            end = await asyncio.to_thread(self.marks.wait, jobs, max(STEP_TIMEOUT, jobs / 50))
            workers_end = children.cpu_seconds(prefix)
            redis_end = counter.cpu_seconds()
            drained = counter.read()
            await settle(system)
            extra = self.marks.surplus()
        seconds = end - start
        return {
            "jobs": jobs,
            "seconds": round(seconds, 3),
            "jobs_per_second": round(jobs / seconds, 1),
            "enqueue_seconds": round(produced["seconds"], 3),
            "cpu_us_per_job": {
                "workers": round((workers_end - workers_start) / jobs * 1e6, 1),
                "redis_drain": round((redis_end - redis_enqueued) / jobs * 1e6, 1),
                "producer": round(produced["cpu_seconds"] / jobs * 1e6, 1),
                "redis_enqueue": round((redis_enqueued - redis_start) / jobs * 1e6, 1),
            },
            "redis_per_job": {"drain": per_job(drained, jobs), "enqueue": per_job(enqueued, jobs)},
            "extra_marks": extra,
        }

    async def rounds(self, processes: int, jobs: int, rounds: int) -> dict[str, Any]:
        """``rounds`` rounds of one drain per system, their order rotating every round."""
        await asyncio.to_thread(self.add_workers, processes)
        batches: dict[str, list[dict[str, Any]]] = {s.name: [] for s in self.systems}
        for round_ in range(rounds):
            shift = round_ % len(self.systems)
            for system in self.systems[shift:] + self.systems[:shift]:
                if self.warmup:
                    await self.drain(system, self.warmup)
                batches[system.name].append(await self.drain(system, jobs))
            rates = ", ".join(f"{name} {b[-1]['jobs_per_second']}" for name, b in batches.items())
            log(f"{processes} process(es), round {round_ + 1}: jobs/s drained: {rates}")
        result: dict[str, Any] = {
            s.name: summary(batches[s.name], processes, s.info) for s in self.systems
        }
        if "flowbus" in batches:
            result["ratios"] = {
                f"flowbus_over_{name}": ratios(batches["flowbus"], peer)
                for name, peer in batches.items()
                if name != "flowbus"
            }
            each = ", ".join(f"{k} {v['rounds']}" for k, v in result["ratios"].items())
            log(f"{processes} process(es): per-round ratios {each}")
        return result


async def settle(system: System) -> None:
    """Wait until ``system`` has acknowledged every job (the last ones finish after their mark)."""
    deadline = time.perf_counter() + STEP_TIMEOUT
    while system.pending():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{system.name}: jobs stay unacknowledged")
        await asyncio.sleep(0.005)


def summary(batches: list[dict[str, Any]], processes: int, info: dict[str, Any]) -> dict[str, Any]:
    """Medians over the rounds of one system and worker count; each round's rate."""
    rate = statistics.median(b["jobs_per_second"] for b in batches)
    return {
        "jobs_per_second_median": round(rate, 1),
        "jobs_per_second_per_process": round(rate / processes, 1),
        "rounds": [{k: b[k] for k in ("jobs_per_second", "cpu_us_per_job")} for b in batches],
        "cpu_us_per_job_median": cost(batches)["cpu_us"],
        "redis_per_job": batches[0]["redis_per_job"],
        "extra_marks": sum(b["extra_marks"] for b in batches),
        **info,
    }


def ratios(flowbus: list[dict[str, Any]], peer: list[dict[str, Any]]) -> dict[str, Any]:
    """flowbus's rate over the peer's, round by round, their spread, and what a job cost
    each side in those rounds (median CPU µs per process kind, Redis commands)."""
    each = [
        round(f["jobs_per_second"] / p["jobs_per_second"], 2)
        for f, p in zip(flowbus, peer, strict=True)
    ]
    middle = round(statistics.median(each), 2)
    return {
        "rounds": each,
        "median": middle,
        "min": min(each),
        "max": max(each),
        "spread_pct": round((max(each) - min(each)) / middle * 100, 1),
        "per_job": {"flowbus": cost(flowbus), "peer": cost(peer)},
    }


def cost(batches: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = {
        part: round(statistics.median(b["cpu_us_per_job"][part] for b in batches))
        for part in batches[0]["cpu_us_per_job"]
    }
    redis_per_job = batches[0]["redis_per_job"]
    return {
        "cpu_us": cpu,
        "redis_commands": {k: redis_per_job[k]["commands"] for k in ("drain", "enqueue")},
    }


# -- report ------------------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    ok = True
    for setup, setup_result in result["throughput"].items():
        given = setup_result.get("ratios", {})
        if "flowbus_over_taskiq" in given:
            low = given["flowbus_over_taskiq"]["min"]
            found[f"flowbus_over_taskiq_min_{setup}"] = low
            ok &= low >= TARGETS["flowbus_over_taskiq_min"].get(setup, 1.0)
        if "flowbus_over_arq" in given:
            middle = given["flowbus_over_arq"]["median"]
            found[f"flowbus_over_arq_median_{setup}"] = middle
            ok &= middle >= TARGETS["flowbus_over_arq_median"].get(setup, 1.0)
    found["throughput_ok"] = ok
    if "suspend_resume" in result:
        p50 = result["suspend_resume"]["latency_ms"]["p50"]
        found["suspend_resume_p50_ms"] = p50
        found["suspend_resume_ok"] = p50 <= TARGETS["suspend_resume_p50_ms_max"]
    return found


async def measure(
    url: str, children: Children, counter: CommandCounter, args: Any
) -> dict[str, Any]:
    marks = MarkReader()
    result: dict[str, Any] = {"throughput": {}}
    systems: list[System] = []
    try:
        async with get_client() as client:
            trivial = await client.create_deployment(TRIVIAL, "bench", queue=THROUGHPUT_QUEUE)
            suspender = await client.create_deployment(SUSPENDER, "bench", queue=SUSPEND_QUEUE)
            for name in args.systems:
                fifo = str(marks.path)
                flowbus = name == "flowbus"
                peer = PeerSystem(PEERS[name], url, fifo) if not flowbus else None
                systems.append(Flowbus(url, client, trivial) if peer is None else peer)
            bench = Throughput(children, counter, marks, systems, args.warmup)
            for processes in range(1, max(args.processes) + 1):
                setup = "1_process" if processes == 1 else f"{processes}_processes"
                if processes in args.processes:
                    result["throughput"][setup] = await bench.rounds(
                        processes, args.jobs, args.rounds
                    )
                else:
                    await asyncio.to_thread(bench.add_workers, processes)
                if processes == 1 and args.samples and "flowbus" in args.systems:
                    result["suspend_resume"] = await timed_resumes(
                        bench, client, url, suspender, args
                    )
    finally:
        for system in systems:
            system.close()
        marks.close()
        await close_runtime()
    return result


async def timed_resumes(
    bench: Throughput, client: FlowbusClient, url: str, deployment: UUID, args: Any
) -> dict[str, Any]:
    log(f"flowbus: suspend → resume → continued, {args.samples} samples, 1 worker process")
    with contextlib.ExitStack() as others:
        for system in bench.systems:
            if system.name != "flowbus":
                others.enter_context(bench.children.frozen(f"{system.name}-"))
        measured = await suspend_resume(client, url, deployment, args.samples)
    log(f"  p50 {measured['latency_ms']['p50']} ms")
    return measured


def run(args: Any) -> dict[str, Any]:
    with private_server(appendonly=True) as url, workers_dir() as children:
        point_flowbus_at(url, KEY_PREFIX)  # the workers inherit this environment too
        counter = CommandCounter(url)
        try:
            # a rewrite (a fork and a copy of the data) would land in some window, not others
            counter.redis.config_set("auto-aof-rewrite-percentage", 0)
            names = ("appendonly", "appendfsync", "save", "auto-aof-rewrite-percentage")
            server = {k: counter.config(k) for k in names}
            measured = asyncio.run(measure(url, children, counter, args))
            report = {
                "benchmark": "worker_throughput",
                "machine": machine(counter),
                "server": server,
                "setup": {
                    "jobs_per_drain": args.jobs,
                    "warmup_jobs_per_drain": args.warmup,
                    "rounds": args.rounds,
                    "concurrency_per_worker_process": CONCURRENCY,
                    "enqueue_in_flight": ENQUEUE_CONCURRENCY,
                    "flowbus": "async flow calling one async task, then the mark; "
                    f"python -m flowbus_worker --concurrency {CONCURRENCY}, log level WARNING, "
                    f"--lease {LEASE:g}",
                    "arq": f"no-op job, then the mark, result kept; arq.run_worker, max_jobs "
                    f"{CONCURRENCY}, log level WARNING, poll_delay 0.005 s",
                    "taskiq": "no-op task, then the mark; RedisStreamBroker and "
                    f"RedisAsyncResultBackend, one receiver, max_async_tasks {CONCURRENCY}, "
                    "uvloop, log level WARNING",
                    "timed": "drain only: from continuing the system's workers (jobs enqueued "
                    "while they were stopped) to the last job's mark (a byte into a FIFO)",
                    "cpu": "workers over the drain (/proc); Redis over the drain and over the "
                    "enqueue (INFO cpu); producer over the enqueue (its process_time)",
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
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per timed drain")
    parser.add_argument("--rounds", type=int, default=9, help="timed drains of each system")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="jobs drained before each")
    parser.add_argument("--samples", type=int, default=200, help="suspend-resume samples (0: none)")
    parser.add_argument(
        "--processes", default="1,2", help="worker processes per system to measure, e.g. 1,2"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems to measure")
    args = parser.parse_args()
    args.processes = sorted({int(p) for p in args.processes.split(",")})
    args.systems = list(dict.fromkeys(s.strip() for s in args.systems.split(",")))
    if unknown := set(args.systems) - set(SYSTEMS):
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.jobs < 1 or args.rounds < 1 or args.warmup < 0 or args.samples < 0 or args.samples == 1:
        parser.error("--jobs, --rounds at least 1; --warmup at least 0; --samples 0 or at least 2")
    if min(args.processes) < 1:
        parser.error("--processes must be at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
