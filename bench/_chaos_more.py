"""The chaos scenarios about requests and input: resume storm, fuzz, SIGTERM hand-off."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from typing import Any

import anyio
import msgpack
from _chaos import QUEUE, all_until, completions, create_runs, final, now, records, stage
from chaos_flows import PAUSER, SLOW, STEPS, ZOMBIE

from flowbus import aresume_flow_run
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import FlowbusError
from flowbus.models import FlowRun
from flowbus.states import StateType

#: Resumes per run in the storm: this many from Python, as many by raw XADD.
STORM_EACH = 5


def paused(run: FlowRun) -> bool:
    return run.state.is_paused() or run.state.is_final()


async def resume_storm(runs: int) -> dict[str, Any]:
    async with stage(lease=2.0) as st:
        st.start_worker(concurrency=runs)
        created = await create_runs(PAUSER, runs)
        await all_until(created, paused, 60)
        runtime = await get_runtime()
        requests = runtime.store.keys.queue(QUEUE).resume_requests()

        async def by_python(run: FlowRun) -> tuple[str, int]:
            try:
                await aresume_flow_run(run.id)
            except FlowbusError:
                return str(run.id), 0
            return str(run.id), 1

        async def by_xadd(run: FlowRun, n: int) -> tuple[str, int]:
            fields = {"run_id": str(run.id), "request_id": f"{run.id}-{n}"}
            await runtime.redis.xadd(requests, fields)  # type: ignore[arg-type]
            return str(run.id), 0  # its outcome says whether it won

        calls = [by_python(r) for r in created for _ in range(STORM_EACH)]
        calls += [by_xadd(r, n) for r in created for n in range(STORM_EACH)]
        random.shuffle(calls)
        direct = await asyncio.gather(*calls)
        ended = await all_until(created, final, 60)
        outcomes = await _outcomes(runtime, runs * STORM_EACH)
        winners: dict[str, int] = {str(r.id): 0 for r in created}
        for run_id, won in direct:
            winners[run_id] += won
        for run_id, status in outcomes:
            winners[run_id] += status == "accepted"
        continued: dict[str, int] = {}
        for run_id, *_ in await records(st, "continued"):
            continued[run_id] = continued.get(run_id, 0) + 1
        bad = {
            str(r.id)
            for r, end in zip(created, ended, strict=True)
            if end is None
            or end.state.type is not StateType.COMPLETED
            or winners[str(r.id)] != 1
            or continued.get(str(r.id)) != 1
        }
        return {
            "runs": runs,
            "resumes": runs * STORM_EACH * 2,
            "winners": sum(winners.values()),
            "outcomes": len(outcomes),
            "violations": len(bad),
        }


async def _outcomes(runtime: Any, expected: int) -> list[tuple[str, str]]:
    """``(run id, status)`` of every resume outcome, once ``expected`` of them are there."""
    stream = runtime.store.keys.queue(QUEUE).resume_outcomes()
    seen: list[tuple[str, str]] = []
    cursor = "0-0"
    while len(seen) < expected:
        reply = await runtime.redis.xread({stream: cursor}, block=30_000)
        if not reply:
            break
        for entry_id, fields in reply[0][1]:
            cursor = entry_id
            seen.append((fields[b"run_id"].decode(), fields[b"status"].decode()))
    return seen


FIELDS = ["run_id", "flow", "run_count", "input", "request_id", "action", "type", "deadline"]
STREAMS = ("stream", "resume_requests", "control", "events")


def _junk(other: str) -> bytes:
    kind = random.randrange(9)
    if kind == 0:
        return random.randbytes(random.randrange(64))
    if kind == 1:
        return random.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"])
    if kind == 2:
        return b"z" * random.randrange(100_000, 400_000)
    if kind == 3:
        return b""
    if kind == 4:
        depth = random.randrange(100, 6000)
        return b"[" * depth + b"]" * depth
    if kind == 5:
        return msgpack.packb(random.choice([[1, 2], "s", 3, None, {1: 2}]))
    if kind == 6:
        return other.encode()
    if kind == 7:
        return random.choice([b"COMPLETED", b"cancel", b"suspend", b"{}", b"1e999", b"-1"])
    return json.dumps({"x": random.random()}).encode()


async def fuzz(entries: int) -> dict[str, Any]:
    async with stage(lease=2.0) as st:
        workers = [st.start_worker(concurrency=8) for _ in range(2)]
        runtime = await get_runtime()
        qkeys = runtime.store.keys.queue(QUEUE)
        other = await runtime.store.create_run(STEPS, queue="other")
        valid: list[FlowRun] = []
        for i in range(entries):
            if i % 20 == 0:
                valid += await create_runs(STEPS, 1)
            names = random.sample(FIELDS, random.randrange(len(FIELDS)))
            fields = {n: _junk(str(other.id)) for n in names} or {"": b""}
            stream = getattr(qkeys, random.choice(STREAMS))()
            await runtime.redis.xadd(stream, fields)  # type: ignore[arg-type]
        valid += await create_runs(STEPS, 1)
        ended = await all_until(valid, final, 120)
        return {
            "entries_tried": entries,
            "valid_runs": len(valid),
            "valid_runs_not_completed": sum(
                1 for e in ended if e is None or e.state.type is not StateType.COMPLETED
            ),
            "worker_exits": sum(1 for w in workers if w.proc.poll() is not None),
        }


def running(run: FlowRun) -> bool:
    return run.state.is_running() or run.state.is_final()


async def sigterm_handoff(each: int) -> dict[str, Any]:
    async with stage(lease=2.0) as st:
        first = st.start_worker(concurrency=2 * each, grace=20.0)
        pausing = await create_runs(PAUSER, each)
        slow = await create_runs(SLOW, each, seconds=2.0)
        await all_until(pausing, paused, 60)
        await all_until(slow, running, 60)
        first.proc.send_signal(signal.SIGTERM)
        st.start_worker(concurrency=2 * each)
        suspended = await all_until(
            pausing, lambda r: r.state.name == "Suspended" or r.state.is_final(), 60
        )
        for run in pausing:
            await aresume_flow_run(run.id)
        ended = await all_until([*pausing, *slow], final, 60)
        code = await asyncio.to_thread(first.proc.wait, 60)
        return {
            "paused": each,
            "running": each,
            "handed_off_as_suspensions": sum(
                1 for r in suspended if r is not None and r.state.name == "Suspended"
            ),
            "completed": sum(
                1 for e in ended if e is not None and e.state.type is StateType.COMPLETED
            ),
            "lost": sum(1 for e in ended if e is None or e.state.type is not StateType.COMPLETED),
            "stopped_worker_exit_code": code,
        }


async def zombie_fencing(runs: int) -> dict[str, Any]:
    """Runs on worker A, frozen (SIGSTOP) in a long task past its lease; worker B takes them
    over; A is continued (SIGCONT) while B still runs them: A must change nothing."""
    async with stage(lease=1.0) as st:
        first = st.start_worker(concurrency=runs)
        created = await create_runs(ZOMBIE, runs, seconds=2.0)
        await all_until(created, lambda r: r.run_count >= 1 or r.state.is_final(), 60)
        await _first_steps(st, runs)
        first.proc.send_signal(signal.SIGSTOP)
        frozen_at = now()
        st.start_worker(concurrency=runs)
        await all_until(created, lambda r: r.run_count >= 2 or r.state.is_final(), 60)
        await asyncio.sleep(0.5)  # B is in the long task now
        thawed_at = now()
        first.proc.send_signal(signal.SIGCONT)
        ended = await all_until(created, final, 60)
        await asyncio.sleep(1.0)  # what A still does once thawed
        runtime = await get_runtime()
        results = [await runtime.store.read_result(r.id) for r in created]
        twice = sum(1 for n in (await completions([r.id for r in created])).values() if n != 1)
        stale_tasks = sum(
            1
            for _run, pid, _i, at in await records(st, "tasks")
            if int(pid) == first.proc.pid and float(at) > thawed_at
        )
        return {
            "runs": runs,
            "frozen_seconds": round(thawed_at - frozen_at, 2),
            "completed": sum(1 for e in ended if e is not None and e.state.is_completed()),
            "stale_transitions_accepted": twice
            + sum(1 for pid in results if pid == first.proc.pid),
            "stale_tasks_run": stale_tasks,
        }


async def _first_steps(st: Any, runs: int) -> None:
    """Wait until every run finished its first task (it is in the long one then)."""
    runtime = await get_runtime()
    with anyio.fail_after(60):
        while await runtime.redis.llen(st.key("tasks")) < runs:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
