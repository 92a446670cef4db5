"""Wake-up latency across processes: resume → pause returns, complete → wait returns.

Scenarios, on one private server (AOF on), each in its own key prefix and its own processes:

- ``resume``: process A runs an async flow that pauses ``n`` times (keys ``k0``, ``k1``, …);
  process B sees each PAUSED event, waits ``GAP_MS``, stamps t0 and calls
  ``resume_flow_run``; A stamps t1 when ``pause_flow_run`` returns. Latency is t1 - t0.
  Three variants: without input (one round trip), with typed input (``Plain``: the schema
  read and checked first), and with input whose model has a ``field_validator``
  (``Validated``: B asks A, the owner, to judge it before the compare-and-set).
- ``wait``: process B creates a run and moves it to RUNNING; process A starts
  ``wait_for_flow_run`` on it and says it is waiting; B stamps t0 and sets COMPLETED; A stamps
  t1 when the wait returns.
- ``floor``: the least a cross-process wake-up costs on the same server: process B ``XADD`` s an
  entry carrying t0, process A, blocked in ``XREAD BLOCK``, stamps t1 on receipt; with
  redis-py's asyncio client (flowbus's client stack: the ratios use it) and its sync client.
- ``many_paused``: process A starts ``--paused`` async flows that each pause once; then the
  connections it holds (``CLIENT LIST`` delta), its RSS, Redis's memory, and the latency of
  ``RESUMES_OF_MANY`` resumes of random paused runs issued from process B.

Each resume series also reports what one pause → resume cycle cost, figures that hold on a
loaded machine where the latencies do not: CPU of A, of B and of Redis (``INFO cpu``), and
Redis's commands and socket reads (round trips) per cycle.

Stamps are ``CLOCK_MONOTONIC`` (one clock for every process of the machine). The first
``WARMUP`` samples of each scenario are dropped (connections, script loads). Prints one JSON
object on stdout; progress goes to stderr. Usage::

    python bench/resume_latency.py [--n 1000] [--paused 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import random
import sys
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import redis
import redis.asyncio
from _server import CommandCounter, latency_ms, machine, point_flowbus_at, private_server
from pydantic import field_validator

from flowbus import (
    Completed,
    FlowRunContext,
    Pending,
    RunInput,
    Running,
    flow,
    get_client,
    pause_flow_run,
    resume_flow_run,
    wait_for_flow_run,
)
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import close_runtime, get_runtime

#: Samples before each timed series that are dropped.
WARMUP = 20
#: Pause between two samples, so each wake-up finds its reader idle and blocked (ms).
GAP_MS = 1.0
#: Flows started at once in the many-paused scenario; the next wave starts once they paused
#: (one loop turn runs a wave's first steps: a turn of 100,000 outlasts a connect timeout).
WAVE = 5000
#: Resumes of random runs timed in the many-paused scenario.
RESUMES_OF_MANY = 200
#: Pause timeout of every benchmark pause (s): long, so nothing expires.
PAUSE_TIMEOUT = 3600
#: Seconds any single handshake may take before the scenario is declared stuck.
STEP_TIMEOUT = 30
#: Seconds a child process may live (pausing 100,000 runs takes a while).
CHILD_TIMEOUT = 600
#: The queue flow calls use.
QUEUE = "default"
#: Targets: latency in ms; resume p50 over the floor's p50 and p99 over the floor's p99 (the
#: asyncio floor: flowbus's client stack); with many runs paused in one process, resume p50
#: over the floor's p50, the process's connections and its memory per paused run.
TARGETS = {
    "p50_ms": 2.0,
    "p99_ms": 10.0,
    "p50_over_floor_p50": 2.0,
    "p99_over_floor_p99": 5.0,
    "many_paused_p50_over_floor_p50": 3.0,
    "many_paused_connections": 8,
    "many_paused_rss_kib_per_run": 10.0,
}

#: A child's result, sent to the parent over a pipe.
Result = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def rss_kib() -> dict[str, int]:
    """This process's resident set now and at its peak, from ``/proc/self/status``."""
    wanted = {"VmRSS": "rss_kib", "VmHWM": "peak_rss_kib"}
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in wanted:
                found[wanted[name]] = int(value.split()[0])
    return found


def pair(t0s: list[int], t1s: list[int]) -> list[int]:
    """t1 - t0 per sample, warm-up dropped."""
    if len(t0s) != len(t1s):
        raise AssertionError(f"{len(t0s)} starts but {len(t1s)} wake-ups")
    return [t1 - t0 for t0, t1 in zip(t0s, t1s, strict=True)][WARMUP:]


def entries(reply: Any) -> list[tuple[str, dict[bytes, bytes]]]:
    """The entries of a one-stream ``XREAD`` reply (RESP2, bytes)."""
    if not reply:
        raise TimeoutError(f"no stream entry within {STEP_TIMEOUT} s")
    return [(entry_id.decode(), fields) for entry_id, fields in reply[0][1]]


def raw(url: str) -> redis.asyncio.Redis:
    """A plain client; no socket timeout (redis-py's default of 5 s would cut blocking reads)."""
    return redis.asyncio.Redis.from_url(url, socket_timeout=None)


async def gap() -> None:
    await asyncio.sleep(GAP_MS / 1000)


async def brpop(client: redis.asyncio.Redis, key: str) -> str:
    """Block for the next item of list ``key``; fail if none comes within STEP_TIMEOUT."""
    reply: Any = await client.brpop([key], timeout=STEP_TIMEOUT)
    if reply is None:
        raise TimeoutError(f"nothing arrived on {key} within {STEP_TIMEOUT} s")
    return bytes(reply[1]).decode()


def run_child(
    conn: Connection,
    url: str,
    prefix: str,
    name: str,
    args: tuple[Any, ...],
) -> None:
    """Entry point of every child: point flowbus at the server, run ``CHILDREN[name]``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    point_flowbus_at(url, prefix)

    async def main() -> Result:
        try:
            return await CHILDREN[name](conn, url, prefix, *args)
        finally:
            await close_runtime()

    try:
        result = asyncio.run(main())
    except BaseException as exc:  # the parent reports it
        conn.send({"error": f"{name}: {type(exc).__name__}: {exc}"})
        raise
    conn.send(result)
    conn.close()


# -- 1. resume path -----------------------------------------------------------------------

_stamps: list[int] = []
_signals: redis.asyncio.Redis | None = None


class Plain(RunInput):
    n: int


class Validated(RunInput):
    n: int

    @field_validator("n")
    @classmethod
    def even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("n must be even")
        return value


#: What the pauses of each resume variant wait for.
INPUTS: dict[str, Any] = {"none": None, "input": Plain, "validated": Validated}


@flow(name="bench-pauser")
async def pauser(times: int, run_id_list: str, variant: str) -> int:
    """Pause ``times`` times under keys k0, k1, …, stamping each return."""
    assert _signals is not None
    await _signals.lpush(run_id_list, str(FlowRunContext.require("bench").flow_run.id))
    for i in range(times):
        await pause_flow_run(INPUTS[variant], timeout=PAUSE_TIMEOUT, key=f"k{i}")
        _stamps.append(now_ns())
    return times


async def resume_holder(
    conn: Connection, url: str, prefix: str, times: int, variant: str
) -> Result:
    global _signals
    _signals = raw(url)
    cpu = time.process_time()
    try:
        await pauser(times, f"{prefix}:bench:run-ids", variant)
    finally:
        await _signals.aclose()
    return {"t1": list(_stamps), "cpu_s": time.process_time() - cpu}


async def next_pause(
    client: redis.asyncio.Redis, stream: str, cursor: str, run_id: str, key: str
) -> str:
    """Block until the queue's events stream shows the run PAUSED under ``key``; the new
    cursor."""
    while True:
        reply = await client.xread({stream: cursor}, block=STEP_TIMEOUT * 1000)
        for cursor, fields in entries(reply):
            if (fields.get(b"run_id"), fields.get(b"type"), fields.get(b"pause_key")) == (
                run_id.encode(),
                b"PAUSED",
                key.encode(),
            ):
                return cursor


async def resume_driver(
    conn: Connection, url: str, prefix: str, times: int, variant: str
) -> Result:
    client = raw(url)
    try:
        run_id = await brpop(client, f"{prefix}:bench:run-ids")
        stream = Keys(prefix).queue(QUEUE).events()
        cursor, t0s, calls = "0-0", list[int](), list[int]()
        cpu = time.process_time()
        for i in range(times):
            cursor = await next_pause(client, stream, cursor, run_id, f"k{i}")
            await gap()
            given = None if variant == "none" else {"n": 2 * i}
            t0s.append(now_ns())
            await resume_flow_run(run_id, given)
            calls.append(now_ns() - t0s[-1])
        return {"t0": t0s, "call_ns": calls, "cpu_s": time.process_time() - cpu}
    finally:
        await client.aclose()


# -- 2. wait path -------------------------------------------------------------------------


async def subscribed(run_id: str, task: asyncio.Task[Any]) -> None:
    """Until the waiter ``task`` is subscribed to ``run_id`` (peeks at the waiters)."""
    waiters = (await get_runtime()).waiters
    deadline = time.monotonic() + STEP_TIMEOUT
    while not any(run_id in w.subscribers for w in waiters.watchers.values()):
        if task.done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # and let it send its read of the run


async def wait_holder(conn: Connection, url: str, prefix: str, times: int) -> Result:
    client = raw(url)

    async def wait(run_id: str) -> int:
        run = await wait_for_flow_run(run_id, timeout=STEP_TIMEOUT)
        stamp = now_ns()
        if not run.state.is_completed():
            raise AssertionError(f"run {run_id} ended {run.state.type}")
        return stamp

    t1s = []
    # first use now: concurrent first calls of get_runtime() on one loop each build a runtime
    await get_runtime()
    try:
        for _ in range(times):
            run_id = await brpop(client, f"{prefix}:bench:todo")
            task = asyncio.get_running_loop().create_task(wait(run_id))
            await subscribed(run_id, task)
            await client.lpush(f"{prefix}:bench:ready", run_id)
            t1s.append(await task)
        return {"t1": t1s}
    finally:
        await client.aclose()


async def wait_driver(conn: Connection, url: str, prefix: str, times: int) -> Result:
    client = raw(url)
    t0s, calls = list[int](), list[int]()
    try:
        async with get_client() as flows:
            for _ in range(times):
                run = await flows.create_flow_run("bench-waited")
                await flows.set_flow_run_state(run.id, Pending())
                await flows.set_flow_run_state(run.id, Running())
                await client.lpush(f"{prefix}:bench:todo", str(run.id))
                await brpop(client, f"{prefix}:bench:ready")
                await gap()
                t0s.append(now_ns())
                await flows.set_flow_run_state(run.id, Completed())
                calls.append(now_ns() - t0s[-1])
        return {"t0": t0s, "call_ns": calls}
    finally:
        await client.aclose()


# -- 3. raw floor -------------------------------------------------------------------------


async def floor_reader(conn: Connection, url: str, prefix: str, times: int, sync: bool) -> Result:
    stream, lat = f"{prefix}:bench:floor", list[int]()
    if sync:
        lat = await asyncio.to_thread(sync_floor_reader, url, stream, times)
    else:
        client, cursor = raw(url), "0-0"
        try:
            while len(lat) < times:
                reply = await client.xread({stream: cursor}, block=STEP_TIMEOUT * 1000)
                stamp = now_ns()
                got = entries(reply)
                cursor = got[-1][0]
                lat.extend(stamp - int(fields[b"t0"]) for _, fields in got)
        finally:
            await client.aclose()
    return {"latency_ns": lat}


def sync_floor_reader(url: str, stream: str, times: int) -> list[int]:
    client, cursor, lat = redis.Redis.from_url(url, socket_timeout=None), "0-0", list[int]()
    try:
        while len(lat) < times:
            reply = client.xread({stream: cursor}, block=STEP_TIMEOUT * 1000)
            stamp = now_ns()
            got = entries(reply)
            cursor = got[-1][0]
            lat.extend(stamp - int(fields[b"t0"]) for _, fields in got)
    finally:
        client.close()
    return lat


async def floor_writer(conn: Connection, url: str, prefix: str, times: int, sync: bool) -> Result:
    stream, client = f"{prefix}:bench:floor", raw(url)
    try:
        for _ in range(times):
            await gap()
            await client.xadd(stream, {"t0": now_ns()})
    finally:
        await client.aclose()
    return {}


# -- 4. many paused runs in one process ---------------------------------------------------


@flow(name="bench-sleeper")
async def sleeper(results: str) -> None:
    """Pause once; on resume, report this run's id and the wake-up stamp."""
    await pause_flow_run(timeout=PAUSE_TIMEOUT, key="only")
    stamp = now_ns()
    assert _signals is not None
    await _signals.lpush(results, f"{FlowRunContext.require('bench').flow_run.id} {stamp}")


async def all_paused(client: redis.asyncio.Redis, deadlines: str, count: int) -> None:
    """Until ``count`` pauses have a deadline (each pause adds one to the queue's set)."""
    limit = time.monotonic() + CHILD_TIMEOUT
    while await client.zcard(deadlines) < count:
        if time.monotonic() > limit:
            raise TimeoutError(f"fewer than {count} runs paused")
        await asyncio.sleep(0.05)


def warm_up(count: int) -> int:
    """Paused runs whose memory is not counted per run: the first pause of a process also
    pays for its watcher, pools and caches."""
    return max(1, min(200, count // 10))


async def many_holder(conn: Connection, url: str, prefix: str, count: int) -> Result:
    global _signals
    _signals = raw(url)
    await _signals.ping()  # connected before the flows keep the loop busy
    await get_runtime()  # once, before the flows race to create it
    before = rss_kib()
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    warm = warm_up(count)
    for size in [warm, *(min(WAVE, count - start) for start in range(warm, count, WAVE))]:
        tasks += [loop.create_task(sleeper(f"{prefix}:bench:woken")) for _ in range(size)]
        await all_paused(_signals, Keys(prefix).queue(QUEUE).deadlines(), len(tasks))
        if len(tasks) == warm:
            first = rss_kib()
    seconds = time.perf_counter() - started
    members: list[Any] = await _signals.zrange(Keys(prefix).queue(QUEUE).runs(), 0, -1)
    ids = [bytes(member).decode() for member in members]
    conn.send({"ids": ids, "seconds_to_pause_all": round(seconds, 2), "rss_before": before,
               "rss_first": first, "rss_paused": rss_kib()})  # fmt: skip
    await asyncio.to_thread(conn.recv)  # the resumes are done
    result = {"rss_after_resumes": rss_kib()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _signals.aclose()
    return result


async def many_driver(conn: Connection, url: str, prefix: str, ids: list[str]) -> Result:
    client = raw(url)
    t0s, t1s, calls = list[int](), list[int](), list[int]()
    try:
        for run_id in ids:
            await gap()
            t0s.append(now_ns())
            await resume_flow_run(run_id)
            calls.append(now_ns() - t0s[-1])
            woken_id, stamp = (await brpop(client, f"{prefix}:bench:woken")).split()
            if woken_id != run_id:
                raise AssertionError(f"resumed {run_id} but {woken_id} woke")
            t1s.append(int(stamp))
        return {"t0": t0s, "t1": t1s, "call_ns": calls}
    finally:
        await client.aclose()


CHILDREN: dict[str, Callable[..., Coroutine[Any, Any, Result]]] = {
    "resume_holder": resume_holder,
    "resume_driver": resume_driver,
    "wait_holder": wait_holder,
    "wait_driver": wait_driver,
    "floor_reader": floor_reader,
    "floor_writer": floor_writer,
    "many_holder": many_holder,
    "many_driver": many_driver,
}


# -- the parent ---------------------------------------------------------------------------


class Children:
    """Child processes of one scenario (spawned, so each has a fresh interpreter)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.context = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess] = []
        self.conns: dict[str, Connection] = {}

    def start(self, name: str, *args: Any) -> Connection:
        ours, theirs = self.context.Pipe()
        proc = self.context.Process(
            target=run_child, args=(theirs, self.url, self.prefix, name, args), name=name
        )
        proc.start()
        theirs.close()
        self.procs.append(proc)
        self.conns[name] = ours
        return ours

    def collect(self, *names: str, timeout: float = CHILD_TIMEOUT) -> dict[str, Result]:
        """The next message of each named child; fails at the first error or timeout."""
        pending = {self.conns[name]: name for name in names}
        results: dict[str, Result] = {}
        deadline = time.monotonic() + timeout
        while pending:
            ready = wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"{sorted(pending.values())} sent nothing in {timeout} s")
            for conn in ready:
                assert isinstance(conn, Connection)
                name = pending.pop(conn)
                message: Result = conn.recv()
                if "error" in message:
                    raise RuntimeError(message["error"])
                results[name] = message
        return results

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                log(f"{proc.name} (pid {proc.pid}) did not exit; terminating it")
                proc.terminate()
                proc.join()


def pair_run(url: str, prefix: str, waker: str, woken: str, *args: Any) -> dict[str, Result]:
    """Start the woken side, then the waker; both results."""
    with Children(url, prefix) as children:
        children.start(woken, *args)
        children.start(waker, *args)
        return children.collect(woken, waker)


#: What each resume variant's pause waits for, and what B sends.
VARIANTS = {
    "none": "no input",
    "input": "typed input (Plain: schema read and checked in B)",
    "validated": "typed input with a field_validator (Validated: A judges it before the "
    "compare-and-set)",
}


def resume_path(
    url: str, counter: CommandCounter, total: int, variant: str = "none"
) -> dict[str, Any]:
    """Latency of ``total`` pause → resume cycles, and what each cycle cost (CPU of A, B and
    Redis, commands, server reads: figures that hold on a loaded machine)."""
    counter.reset()
    server_cpu = counter.cpu_seconds()
    results = pair_run(url, f"resume-{variant}", "resume_driver", "resume_holder", total, variant)
    server_cpu = counter.cpu_seconds() - server_cpu
    counts = counter.read()
    samples = pair(results["resume_driver"]["t0"], results["resume_holder"]["t1"])
    return {
        "what": "resume_flow_run() called in B → pause_flow_run() returns in A (one run, "
        f"n pauses under distinct keys), {VARIANTS[variant]}",
        "latency_ms": latency_ms(samples),
        "resume_call_in_B_ms": latency_ms(results["resume_driver"]["call_ns"][WARMUP:]),
        "per_pause_and_resume": {
            "what": "one cycle: A pauses, B sees PAUSED and resumes, A returns (whole series)",
            "cpu_us_A": round(results["resume_holder"]["cpu_s"] / total * 1e6),
            "cpu_us_B": round(results["resume_driver"]["cpu_s"] / total * 1e6),
            "cpu_us_redis": round(server_cpu / total * 1e6),
            "redis_commands": round(counts.total / total, 1),
            "redis_reads": round(counts.reads / total, 1),
            "script_calls": round(counts.by_command.get("fcall", 0) / total, 2),
        },
    }


def wait_path(url: str, total: int) -> dict[str, Any]:
    results = pair_run(url, "wait", "wait_driver", "wait_holder", total)
    samples = pair(results["wait_driver"]["t0"], results["wait_holder"]["t1"])
    return {
        "what": "set_flow_run_state(Completed) in B → wait_for_flow_run() returns in A",
        "latency_ms": latency_ms(samples),
        "set_state_call_in_B_ms": latency_ms(results["wait_driver"]["call_ns"][WARMUP:]),
    }


def floor(url: str, total: int, *, sync: bool) -> dict[str, Any]:
    prefix = "floor-sync" if sync else "floor-async"
    results = pair_run(url, prefix, "floor_writer", "floor_reader", total, sync)
    client = "redis.Redis (sync)" if sync else "redis.asyncio.Redis"
    return {
        "what": f"XADD in B → XREAD BLOCK returns in A, {client}, one connection each",
        "latency_ms": latency_ms(results["floor_reader"]["latency_ns"][WARMUP:]),
    }


def client_ids(counter: CommandCounter) -> dict[int, str]:
    """Id → current command of every connection of the server."""
    return {int(c["id"]): str(c["cmd"]) for c in counter.redis.client_list()}


def used_memory(counter: CommandCounter) -> int:
    info: dict[str, Any] = counter.redis.info("memory")
    return int(info["used_memory"])


def many_paused(
    url: str, counter: CommandCounter, count: int, prefix: str = "many"
) -> dict[str, Any]:
    time.sleep(0.2)  # connections of the previous scenario's children close
    before, memory_before = client_ids(counter), used_memory(counter)
    with Children(url, prefix) as children:
        holder = children.start("many_holder", count)
        paused = children.collect("many_holder")["many_holder"]
        after, memory_after = client_ids(counter), used_memory(counter)
        held = [cmd for cid, cmd in after.items() if cid not in before]
        log(f"  {count} paused in {paused['seconds_to_pause_all']} s; resuming random runs")
        picked = random.Random(0).sample(paused["ids"], min(RESUMES_OF_MANY + WARMUP, count))
        children.start("many_driver", picked)
        driven = children.collect("many_driver")["many_driver"]
        holder.send("done")
        done = children.collect("many_holder")["many_holder"]
    rss_before, rss_paused = paused["rss_before"]["rss_kib"], paused["rss_paused"]["rss_kib"]
    rss_first, first = paused["rss_first"]["rss_kib"], warm_up(count)
    return {
        "what": f"{count} async flows paused in one process A; resumes of random runs from B",
        "paused_runs": count,
        "seconds_to_pause_all": paused["seconds_to_pause_all"],
        "connections_held_by_A": len(held),
        "of_which_benchmark_signalling": 1,
        "connections_held_by_A_by_last_command": {c: held.count(c) for c in sorted(set(held))},
        "rss_kib_A": {
            "after_import": rss_before,
            "all_paused": rss_paused,
            "peak": paused["rss_paused"]["peak_rss_kib"],
            "after_resumes": done["rss_after_resumes"]["rss_kib"],
            f"after_the_first_{first}_paused": rss_first,
            "per_paused_run": round((rss_paused - rss_first) / (count - first), 2),
            "per_paused_run_with_the_first": round((rss_paused - rss_before) / count, 2),
        },
        "redis_used_memory_bytes_per_paused_run": round((memory_after - memory_before) / count),
        "resume_latency_ms": latency_ms(pair(driven["t0"], driven["t1"])),
        "resume_call_in_B_ms": latency_ms(driven["call_ns"][WARMUP:]),
    }


def verdict(
    latency: dict[str, float], floor: dict[str, float], p50_ratio: float, p99_ratio: float | None
) -> dict[str, Any]:
    """The targets a series meets: its p50 and p99, and their ratios to the floor's."""
    out: dict[str, Any] = {
        "p50_ok": latency["p50"] <= TARGETS["p50_ms"],
        "p99_ok": latency["p99"] <= TARGETS["p99_ms"],
        "p50_over_floor_p50": round(latency["p50"] / floor["p50"], 2),
        "p99_over_floor_p99": round(latency["p99"] / floor["p99"], 2),
    }
    out["p50_ratio_ok"] = out["p50_over_floor_p50"] <= p50_ratio
    if p99_ratio is not None:
        out["p99_ratio_ok"] = out["p99_over_floor_p99"] <= p99_ratio
    return out


def run(n: int, paused: int) -> dict[str, Any]:
    total = n + WARMUP
    with private_server(appendonly=True) as url:
        counter = CommandCounter(url)
        try:
            server = {k: counter.config(k) for k in ("appendonly", "appendfsync", "save")}
            log(f"floor: XADD → XREAD BLOCK, {n} samples, asyncio client then sync client")
            floor_async = floor(url, total, sync=False)
            floor_sync = floor(url, total, sync=True)
            log(f"resume path, {n} samples")
            resume = resume_path(url, counter, total)
            log(f"resume path with typed input, then with owner-judged input, {n} samples each")
            with_input = resume_path(url, counter, total, "input")
            validated = resume_path(url, counter, total, "validated")
            log(f"wait path, {n} samples")
            waited = wait_path(url, total)
            log(f"many paused: {paused} paused runs in one process")
            many = many_paused(url, counter, paused)
            base, sync_base = floor_async["latency_ms"], floor_sync["latency_ms"]
            p50, p99 = TARGETS["p50_over_floor_p50"], TARGETS["p99_over_floor_p99"]
            rss = many["rss_kib_A"]["per_paused_run"]
            return {
                "benchmark": "resume_latency",
                "machine": machine(counter),
                "server": server,
                "clock": "CLOCK_MONOTONIC, stamped in both processes",
                "gap_ms_between_samples": GAP_MS,
                "warmup_samples_dropped": WARMUP,
                "targets": TARGETS,
                "floor": {"asyncio": floor_async, "sync": floor_sync},
                "resume": resume,
                "resume_with_input": with_input,
                "resume_validated": validated,
                "wait": waited,
                "many_paused": many,
                "vs_targets": {
                    "floor": "asyncio (flowbus's client stack); *_over_sync_floor: the sync one",
                    "resume": verdict(resume["latency_ms"], base, p50, p99),
                    "resume_with_input": verdict(with_input["latency_ms"], base, p50, p99),
                    "resume_validated": verdict(validated["latency_ms"], base, p50, None),
                    "resume_validated_p50_over_resume_p50": round(
                        validated["latency_ms"]["p50"] / resume["latency_ms"]["p50"], 2
                    ),
                    "resume_validated_p50_over_resume_with_input_p50": round(
                        validated["latency_ms"]["p50"] / with_input["latency_ms"]["p50"], 2
                    ),
                    "wait": verdict(waited["latency_ms"], base, p50, p99),
                    "many_paused_resume": verdict(
                        many["resume_latency_ms"],
                        base,
                        TARGETS["many_paused_p50_over_floor_p50"],
                        None,
                    ),
                    "many_paused_connections_ok": many["connections_held_by_A"]
                    <= TARGETS["many_paused_connections"],
                    "many_paused_rss_ok": rss <= TARGETS["many_paused_rss_kib_per_run"],
                    "resume_p50_over_sync_floor_p50": round(
                        resume["latency_ms"]["p50"] / sync_base["p50"], 2
                    ),
                    "resume_p99_over_sync_floor_p99": round(
                        resume["latency_ms"]["p99"] / sync_base["p99"], 2
                    ),
                    "wait_p50_over_sync_floor_p50": round(
                        waited["latency_ms"]["p50"] / sync_base["p50"], 2
                    ),
                },
            }
        finally:
            counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000, help="samples per latency series")
    parser.add_argument("--paused", type=int, default=10_000, help="runs paused in one process")
    args = parser.parse_args()
    if args.n < 2 or args.paused < 2:
        parser.error("--n and --paused must be at least 2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    result = run(args.n, args.paused)
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
