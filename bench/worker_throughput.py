"""Worker throughput against arq, and suspend → resume → continued-on-a-worker latency.

On one private server (AOF on, as in the other benchmarks):

1. ``flowbus``: ``--jobs`` runs of a deployed async flow with one trivial task
   (``bench/worker_flows.py``), created with ``create_flow_run_from_deployment`` (64 calls in
   flight) and executed by real ``python -m worker`` processes (``--concurrency 32``): one
   process, then two. Timed from the first create to the last COMPLETED event, read with a
   blocking ``XREAD`` on the queue's events stream.
2. ``arq``: the same number of no-op jobs on the same server (database 1), enqueued with
   ``enqueue_job`` (64 in flight) and run by arq worker processes (``max_jobs`` 32): one, then
   two. Timed from the first enqueue to the last result key written (keyspace notifications,
   so the workers do nothing extra). arq pins redis-py below 8, so it runs from its own venv,
   ``bench/.venv-arq`` (created on first use), through ``bench/_arq_jobs.py``.
3. ``suspend_resume``: ``--samples`` runs of a deployed flow that calls
   ``suspend_flow_run``; once all are Suspended (their entries acknowledged, their slots free),
   each in turn is resumed with ``resume_flow_run``: t0 before the call, t1 when the flow,
   re-executed on a worker, returns from ``suspend_flow_run`` (stamped there and pushed to a
   list). One worker process. Also reported: when the bench saw the run's RUNNING event.

Stamps are ``CLOCK_MONOTONIC``, one clock for all processes of the machine. CPU seconds of
every process (workers from ``/proc``, Redis from ``INFO cpu``) are reported per phase, to
show where the time goes. Prints one JSON object on stdout; progress goes to stderr::

    python bench/worker_throughput.py [--jobs 2000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
import redis.asyncio
from _server import CommandCounter, latency_ms, machine, point_flowbus_at, private_server
from worker_flows import SUSPENDER, TRIVIAL, now_ns

from flowbus import FlowbusClient, get_client, resume_flow_run
from flowbus.keys import Keys
from flowbus.runtime import close_runtime

#: The repository root and the folder of this file.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: arq's own virtual environment (gitignored), made on first use.
ARQ_VENV = BENCH / ".venv-arq"
ARQ_REQUIREMENT = "arq"
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
THROUGHPUT_QUEUE = "tput"
SUSPEND_QUEUE = "susp"
#: Seconds any single wait (an event, a stamp, a process) may take.
STEP_TIMEOUT = 60.0
#: Targets: flowbus runs/s per worker process at least arq's; suspend → continued p50.
TARGETS = {"flowbus_over_arq_min": 1.0, "suspend_resume_p50_ms_max": 20.0}

#: Events of one throughput run (SCHEDULED, PENDING, RUNNING, COMPLETED) and flowbus's cap of
#: a queue's events stream: raised for large ``--jobs`` so no unread event is trimmed.
EVENTS_PER_RUN = 4
DEFAULT_QUEUE_EVENTS_MAXLEN = 10_000
#: Event types a run of the throughput flow must not end in.
BAD_ENDS = {"FAILED", "CRASHED", "CANCELLED"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Children:
    """Worker processes, each logging to a file; every one is stopped by :meth:`stop_all`."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}"
                )

    def cpu_seconds(self, prefix: str) -> float:
        return sum(proc_cpu_seconds(c.proc.pid) for c in self.children if c.name.startswith(prefix))

    def stop(self, prefix: str) -> None:
        """SIGTERM the children named ``prefix…``; kill those still there after 15 s."""
        chosen = [c for c in self.children if c.name.startswith(prefix)]
        for child in chosen:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in chosen:
            try:
                child.proc.wait(15)
            except subprocess.TimeoutExpired:
                log(f"{child.name} (pid {child.proc.pid}) ignored SIGTERM; killing it")
                child.proc.kill()
                child.proc.wait(10)
            if child.proc.returncode not in (0, -signal.SIGTERM):
                log(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
            elif said := child.tail():  # they log at WARNING: anything said matters
                log(f"{child.name} logged:\n{said}")
        self.children = [c for c in self.children if c not in chosen]

    def stop_all(self) -> None:
        self.stop("")


def wait_until(what: str, ready: Callable[[], bool], children: Children) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not ready():
        children.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {STEP_TIMEOUT} s")
        time.sleep(0.02)


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(BENCH) + (os.pathsep + path if path else "")
    env.update(extra)
    return env


# -- flowbus ------------------------------------------------------------------------------


def start_flowbus_worker(children: Children, url: str, name: str) -> None:
    """``python -m worker worker_flows`` on both bench queues; returns once it reads them."""
    args = [
        sys.executable,
        "-m",
        "worker",
        "worker_flows",
        "--queue",
        THROUGHPUT_QUEUE,
        "--queue",
        SUSPEND_QUEUE,
        "--concurrency",
        str(CONCURRENCY),
        "--name",
        name,
        "--log-level",
        "WARNING",
    ]
    env = bench_env(FLOWBUS_REDIS_URL=url, FLOWBUS_KEY_PREFIX=KEY_PREFIX)
    client = redis.Redis.from_url(url, decode_responses=True)
    # an idle worker blocks in XREADGROUP twice per queue (runs, resume requests); consumers
    # are only listed by XINFO once delivered something, so count blocked reads instead
    wanted = blocked_group_reads(client) + 2 * 2

    def reading() -> bool:
        return blocked_group_reads(client) >= wanted and bool(
            client.hexists(Keys(KEY_PREFIX).workers(), name)
        )

    try:
        children.start(name, args, env)
        wait_until(f"flowbus worker {name}", reading, children)
    finally:
        client.close()


def blocked_group_reads(client: redis.Redis) -> int:
    clients: list[dict[str, Any]] = client.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


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


@dataclass
class Meter:
    """CPU seconds of the workers, the server and this process over one timed phase."""

    counter: CommandCounter
    children: Children
    prefix: str
    start: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        info: dict[str, Any] = self.counter.redis.info("cpu")
        return {
            "workers": self.children.cpu_seconds(self.prefix),
            "redis_server": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "enqueuer": time.process_time(),
        }

    def reset(self) -> None:
        self.counter.reset()
        self.start = self.snapshot()

    def read(self, units: int) -> dict[str, Any]:
        end = self.snapshot()
        counts = self.counter.read()
        by_name = sorted(counts.by_command.items(), key=lambda item: (-item[1], item[0]))
        return {
            "cpu_seconds": {k: round(end[k] - self.start[k], 3) for k in end},
            "redis_commands_per_run": round(counts.total / units, 2),
            "redis_round_trips_per_run": round(counts.reads / units, 2),
            "redis_commands_by_name_per_run": {
                name: round(n / units, 2) for name, n in by_name if n / units >= 0.05
            },
        }


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


async def flowbus_throughput(
    client: FlowbusClient,
    events: EventReader,
    deployment: UUID,
    n: int,
    meter: Meter,
    processes: int,
) -> dict[str, Any]:
    await flowbus_batch(client, events, deployment, WARMUP)
    meter.reset()
    timed = await flowbus_batch(client, events, deployment, n)
    used = meter.read(n)
    return {
        "runs": n,
        "seconds": round(timed["seconds"], 3),
        "runs_per_second": round(n / timed["seconds"], 1),
        "runs_per_second_per_process": round(n / timed["seconds"] / processes, 1),
        "enqueue_seconds": round(timed["enqueue_seconds"], 3),
        **used,
    }


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


async def flowbus_phases(
    url: str, jobs: int, samples: int, children: Children, counter: CommandCounter
) -> dict[str, Any]:
    events = EventReader(url, THROUGHPUT_QUEUE)
    meter = Meter(counter, children, "flowbus-")
    result: dict[str, Any] = {}
    try:
        async with get_client() as client:
            trivial = await client.create_deployment(TRIVIAL, "bench", queue=THROUGHPUT_QUEUE)
            suspender = await client.create_deployment(SUSPENDER, "bench", queue=SUSPEND_QUEUE)

            async def throughput(processes: int) -> dict[str, Any]:
                log(f"flowbus: {processes} worker process(es)")
                name = f"flowbus-{processes}"
                await asyncio.to_thread(start_flowbus_worker, children, url, name)
                timed = await flowbus_throughput(client, events, trivial, jobs, meter, processes)
                log(f"  {timed['runs_per_second']} runs/s")
                return timed

            result["1_process"] = await throughput(1)
            log(f"flowbus: suspend → resume → continued, {samples} samples, 1 worker process")
            result["suspend_resume"] = await suspend_resume(client, url, suspender, samples)
            log(f"  p50 {result['suspend_resume']['latency_ms']['p50']} ms")
            result["2_processes"] = await throughput(2)
    finally:
        await events.aclose()
        await close_runtime()
    return result


# -- arq ----------------------------------------------------------------------------------


def arq_python() -> Path:
    """The arq venv's interpreter; the venv is created (once) if it cannot import arq."""
    python = ARQ_VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import arq"]).returncode == 0:
        return python
    log(f"creating {ARQ_VENV.relative_to(ROOT)} with {ARQ_REQUIREMENT} (arq pins redis-py < 8)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", ARQ_VENV], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", ARQ_REQUIREMENT],
        check=True,
        stdout=sys.stderr,
    )
    return python


def start_arq_worker(children: Children, python: Path, env: dict[str, str], name: str) -> None:
    """Start an arq worker; returns once it has polled the queue (its health check appears)."""
    client = redis.Redis.from_url(env["BENCH_ARQ_REDIS_URL"])
    health = "arq:queue:health-check"
    try:
        client.delete(health)
        children.start(name, [str(python), str(BENCH / "_arq_jobs.py"), "worker"], env)
        wait_until(f"arq worker {name}", lambda: bool(client.exists(health)), children)
    finally:
        client.close()


def arq_batch(
    python: Path, env: dict[str, str], jobs: int, meter: Meter, processes: int
) -> dict[str, Any]:
    meter.reset()
    args = [str(python), str(BENCH / "_arq_jobs.py"), "drive", "--jobs", str(jobs)]
    args += ["--warmup", str(WARMUP)]
    out = subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT * 2
    )
    if out.returncode != 0:
        raise RuntimeError(f"arq driver failed ({out.returncode}):\n{out.stderr[-3000:]}")
    driven: dict[str, Any] = json.loads(out.stdout)
    used = meter.read(jobs + WARMUP)
    used["cpu_seconds"]["enqueuer"] = round(driven["driver_cpu_seconds"], 3)
    used["note"] = (
        "server CPU and Redis commands include the driver's warm-up jobs and idle polls "
        "(per run: divided by jobs + warm-up); enqueuer CPU is the timed batch only"
    )
    return {
        "runs": jobs,
        "seconds": round(driven["seconds"], 3),
        "runs_per_second": round(jobs / driven["seconds"], 1),
        "runs_per_second_per_process": round(jobs / driven["seconds"] / processes, 1),
        "enqueue_seconds": round(driven["enqueue_seconds"], 3),
        **used,
        "settings": {k: driven[k] for k in ("max_jobs", "poll_delay_s")},
        "versions": {k: driven[k] for k in ("arq", "redis_py")},
    }


def arq_phases(
    url: str, jobs: int, poll_delay: float, children: Children, counter: CommandCounter
) -> dict[str, Any]:
    python = arq_python()
    base, _, _db = url.rpartition("/")
    env = bench_env(
        BENCH_ARQ_REDIS_URL=f"{base}/1",
        BENCH_ARQ_MAX_JOBS=str(CONCURRENCY),
        BENCH_ARQ_POLL_DELAY=str(poll_delay),
    )
    meter = Meter(counter, children, "arq-")
    result: dict[str, Any] = {}
    log("arq: 1 worker process")
    start_arq_worker(children, python, env, "arq-1")
    result["1_process"] = arq_batch(python, env, jobs, meter, 1)
    log(f"  {result['1_process']['runs_per_second']} jobs/s")
    log("arq: 2 worker processes")
    start_arq_worker(children, python, env, "arq-2")
    result["2_processes"] = arq_batch(python, env, jobs, meter, 2)
    log(f"  {result['2_processes']['runs_per_second']} jobs/s")
    return result


# -- report -------------------------------------------------------------------------------


def verdict(flowbus: dict[str, Any], arq: dict[str, Any]) -> dict[str, Any]:
    ratios = {
        procs: round(flowbus[procs]["runs_per_second"] / arq[procs]["runs_per_second"], 2)
        for procs in ("1_process", "2_processes")
    }
    p50 = flowbus["suspend_resume"]["latency_ms"]["p50"]
    return {
        "flowbus_over_arq_runs_per_second": ratios,
        "throughput_ok": all(r >= TARGETS["flowbus_over_arq_min"] for r in ratios.values()),
        "suspend_resume_p50_ms": p50,
        "suspend_resume_ok": p50 <= TARGETS["suspend_resume_p50_ms_max"],
    }


@contextmanager
def workers_dir() -> Iterator[Children]:
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-workers-") as tmp:
        children = Children(Path(tmp))
        try:
            yield children
        finally:
            children.stop_all()


def run(jobs: int, samples: int, arq_poll_delay: float) -> dict[str, Any]:
    events_per_batch = EVENTS_PER_RUN * (jobs + WARMUP)
    if events_per_batch > DEFAULT_QUEUE_EVENTS_MAXLEN // 2:  # the reader must never lag a trim
        os.environ["FLOWBUS_QUEUE_EVENTS_MAXLEN"] = str(2 * events_per_batch)
    with private_server(appendonly=True) as url, workers_dir() as children:
        point_flowbus_at(url, KEY_PREFIX)  # the workers inherit this environment too
        counter = CommandCounter(url)
        try:
            server = {k: counter.config(k) for k in ("appendonly", "appendfsync", "save")}
            flowbus = asyncio.run(flowbus_phases(url, jobs, samples, children, counter))
            children.stop("flowbus-")
            arq = arq_phases(url, jobs, arq_poll_delay, children, counter)
            children.stop("arq-")
            return {
                "benchmark": "worker_throughput",
                "machine": machine(counter),
                "server": server,
                "setup": {
                    "flowbus_flow": "async flow calling one async task (returns its argument)",
                    "flowbus_worker": f"python -m worker --concurrency {CONCURRENCY}, "
                    "log level WARNING, default lease/heartbeat",
                    "arq_job": "async no-op job, result kept (arq's default)",
                    "arq_worker": f"arq.run_worker, max_jobs {CONCURRENCY}, log level WARNING",
                    "enqueue_in_flight": ENQUEUE_CONCURRENCY,
                    "warmup_runs_per_batch": WARMUP,
                    "timed": "first create/enqueue → last completion seen (flowbus: COMPLETED "
                    "event by XREAD; arq: result key written, by keyspace notification)",
                    "clock": "CLOCK_MONOTONIC (latency), perf_counter (throughput)",
                },
                "targets": TARGETS,
                "flowbus": flowbus,
                "arq": arq,
                "vs_targets": verdict(flowbus, arq),
            }
        finally:
            counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="runs (jobs) per throughput batch")
    parser.add_argument("--samples", type=int, default=200, help="suspend-resume samples")
    parser.add_argument(
        "--arq-poll-delay",
        type=float,
        default=0.005,
        help="arq's poll_delay (s); its default 0.5 caps a worker near 2 x max_jobs jobs/s",
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.samples < 2:
        parser.error("--jobs must be at least 1 and --samples at least 2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args.jobs, args.samples, args.arq_poll_delay)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
