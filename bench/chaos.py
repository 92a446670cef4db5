"""Fault injection against real workers and servers; prints one JSON line of figures.

Each scenario runs on a private server of its own (AOF on) with real ``python -m
flowbus_worker`` processes, and is bounded in time:

- ``worker_kill``: a backlog of runs of a few tasks on 3 workers, one of them ``kill -9``-ed
  every 1–2 s (and replaced): lost runs, runs completed twice, tasks re-run although their
  result was persisted before the kill (outside the in-flight window), and orphan recovery
  (kill → the run's next execution starts elsewhere), p50/max.
- ``redis_kill``: runs created steadily while the server is ``kill -9``-ed and restarted,
  with ``appendfsync everysec`` and ``always``: runs lost (created, then gone), stuck (not
  final), workers reconnected.
- ``resume_storm``: runs paused in-process, each resumed 10 times at once (5 by
  ``resume_flow_run``, 5 by raw ``XADD`` resume requests): exactly one winner per run.
- ``fuzz``: random bytes, invalid UTF-8, huge, empty and deeply nested fields, wrong
  msgpack, other queues' ids in every stream a worker reads, interleaved with valid runs.
- ``sigterm_handoff``: a worker holding paused and running runs gets SIGTERM while another
  starts: paused runs become suspensions resumed elsewhere, running ones finish.
- ``zombie_fencing``: runs on a worker frozen (SIGSTOP) in a long task past its lease, taken
  over by another, then continued while the other still runs them: transitions of the stale
  execution that went through (must be none), and tasks it still started (their results are
  refused; it learns of the takeover from the control stream, so it may start one more).

``violations`` sums everything that must be zero. ``--short`` (about a minute) runs in
``make test``::

    python bench/chaos.py [--short]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from typing import Any

from _chaos import (
    QUEUE,
    Stage,
    all_until,
    completions,
    create_runs,
    final,
    now,
    quantiles,
    records,
    stage,
)
from _chaos_more import fuzz, resume_storm, sigterm_handoff, zombie_fencing
from _workers import log
from chaos_flows import STEP_COUNT, STEP_SECONDS, STEPS

from flowbus._redis.runtime import get_runtime
from flowbus.states import StateType

#: Seconds after a task's end within which a kill may still lose its result (batched writes).
IN_FLIGHT = 0.1


async def worker_kill(runs: int, kills: int) -> dict[str, Any]:
    async with stage(lease=1.0) as st:
        for _ in range(3):
            st.start_worker(concurrency=4)
        created = await create_runs(STEPS, runs)
        started = now()
        waiting = asyncio.ensure_future(all_until(created, final, 120))
        while len(st.killed) < kills and not waiting.done():
            await asyncio.sleep(random.uniform(1.0, 2.0))
            if not waiting.done():
                st.kill_one()
                st.start_worker(concurrency=4)
        ended = await waiting
        done = [r for r in ended if r is not None]
        twice = sum(1 for n in (await completions([r.id for r in created])).values() if n > 1)
        rerun, recovery = await _kill_figures(st)
        return {
            "runs": runs,
            "kills": len(st.killed),
            "lost": runs - len(done),
            "not_completed": sum(1 for r in done if r.state.type is not StateType.COMPLETED),
            "completed_twice": twice,
            "tasks_rerun_outside_in_flight_window": rerun,
            "orphan_recovery_seconds": quantiles(recovery),
            "lease_seconds": st.lease,
            "seconds": round(now() - started, 2),
            "worker_exits": st.exits(),
        }


async def _kill_figures(st: Stage) -> tuple[int, list[float]]:
    """Tasks re-run though finished before their worker's kill; kill → re-execution times."""
    kills = dict(st.killed)
    ends: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run_id, pid, i, at in await records(st, "tasks"):
        ends.setdefault((run_id, i), []).append((int(pid), float(at)))
    rerun = 0
    for done in ends.values():
        for (pid, at), _later in zip(done, done[1:], strict=False):
            if pid in kills and at < kills[pid] - IN_FLIGHT:
                rerun += 1
    starts: dict[str, list[tuple[int, float]]] = {}
    for run_id, pid, at in await records(st, "starts"):
        starts.setdefault(run_id, []).append((int(pid), float(at)))
    recovery = []
    for execs in starts.values():
        for (pid, _at), (other, again) in zip(execs, execs[1:], strict=False):
            if pid in kills and other != pid:
                recovery.append(again - kills[pid])
    return rerun, recovery


async def redis_kill(runs: int, *, always: bool) -> dict[str, Any]:
    async with stage(lease=2.0, fsync_always=always) as st:
        workers = [st.start_worker(concurrency=8) for _ in range(2)]
        created = []
        for i in range(runs):
            if i == runs // 2:
                st.server.kill()
                await asyncio.sleep(0.3)
                st.server.restart()
            created += await create_runs(STEPS, 1)
        ended = await all_until(created, final, 60)
        runtime = await get_runtime()
        store = runtime.store
        lost = stuck = 0
        for run, end in zip(created, ended, strict=True):
            if end is None:
                exists = await runtime.redis.exists(store.keys.queue(QUEUE).run(run.id).run)
                lost, stuck = (lost, stuck + 1) if exists else (lost + 1, stuck)
        beats = await runtime.redis.hgetall(store.keys.workers())
        return {
            "appendfsync": "always" if always else "everysec",
            "runs": runs,
            "lost": lost,
            "stuck": stuck,
            "workers": len(workers),
            "reconnected": sum(1 for w in workers if w.proc.poll() is None and beats),
            "worker_exits": st.exits(),
        }


async def main(short: bool) -> dict[str, Any]:
    began = time.monotonic()
    log("chaos: worker kill -9 under load")
    kill = await worker_kill(240 if short else 500, 4 if short else 8)
    log("chaos: redis kill -9 and restart")
    redis = {
        mode: await redis_kill(60 if short else 200, always=mode == "always")
        for mode in ("everysec", "always")
    }
    log("chaos: resume storm")
    storm = await resume_storm(10 if short else 50)
    log("chaos: fuzz")
    fuzzed = await fuzz(300 if short else 2000)
    log("chaos: SIGTERM hand-off")
    handoff = await sigterm_handoff(4 if short else 10)
    log("chaos: zombie fencing")
    zombie = await zombie_fencing(3 if short else 10)
    violations = (
        kill["lost"]
        + kill["completed_twice"]
        + kill["tasks_rerun_outside_in_flight_window"]
        + kill["worker_exits"]
        + redis["always"]["lost"]
        + sum(r["stuck"] + r["worker_exits"] for r in redis.values())
        + storm["violations"]
        + fuzzed["worker_exits"]
        + fuzzed["valid_runs_not_completed"]
        + handoff["lost"]
        + zombie["stale_transitions_accepted"]
    )
    return {
        "benchmark": "chaos",
        "short": short,
        "flow": f"{STEP_COUNT} tasks of {STEP_SECONDS}s (worker kill, redis kill)",
        "worker_kill": kill,
        "redis_kill": redis,
        "resume_storm": storm,
        "fuzz": fuzzed,
        "zombie_fencing": zombie,
        "sigterm_handoff": handoff,
        "violations": violations,
        "seconds": round(time.monotonic() - began, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="the bounded form make test runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(main(args.short))), flush=True)
    sys.exit(0)
