"""Redis Cluster scaling: 3 queues on 3 shards against the same on 1 shard and on a plain server.

Three queues are named one per primary of a 3-master cluster (``flowbus queues --spread``'s
names), and served by 3 ``python -m flowbus_worker`` processes (one queue each,
``--concurrency``, 32 by default) running the trivial flow of ``bench/worker_flows.py``, on:

- ``plain``: one ``redis-server`` (the baseline, measured in the same run);
- ``one_shard``: a 1-master cluster (every slot on one node);
- ``three_shards``: a 3-master cluster (each queue on its own node).

Each round enqueues ``--runs`` runs (round-robin over the queues) while the workers are
stopped (SIGSTOP), then lets them drain, timed from their continuation to the last COMPLETED
event. The figure that holds on a loaded machine is the server side: ``INFO cpu`` of each node
over enqueue and drain, per run (µs), per shard and summed, and its ratio to the plain
server's; ratios and targets use it net of what each server spends idle over the same time
(its timers and a cluster's gossip, measured with the workers stopped: no per-run cost).
Runs/s on a 2-core machine is bound by the Python clients, not by Redis; the projection
divides a second of one shard's CPU by its per-run cost.

Counts come with the CPU: the commands each server ran per run (the same on every setup,
split by shard) and the socket reads it served per run (``INFO stats``
``total_reads_processed``: one per round trip of a client's batch). A shard serving a third of
the traffic runs more event-loop turns per run than one server (each turn wakes it for fewer
clients' batches, and costs a wake-up, the reads, the reply writes and an AOF write), and the
enqueuer's batches, for three queues, are split in three: such per-turn costs are what three
shards spend beyond one shard, whose instructions per run they match. ``--concurrency`` (the
runs each worker takes at once) changes the batches.

Prints one JSON object on stdout; progress goes to stderr::

    python bench/cluster_scaling.py [--runs 3000] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
from _server import CommandCounter, machine, point_flowbus_at, server_cpu_seconds
from _workers import STEP_TIMEOUT, Children, bench_env, log, wait_until, workers_dir
from worker_flows import TRIVIAL

from flowbus import FlowbusClient, get_client
from flowbus._redis.connect import close_client, open_client
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.keys import Keys
from flowbus._redis.local_cluster import LocalCluster
from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus.views.queues import spread_names

KEY_PREFIX = "cscale"
QUEUES = 3
CONCURRENCY = 32
ENQUEUE_CONCURRENCY = 64
#: Seconds each server's idle CPU is measured over (the workers stopped).
IDLE_SECONDS = 3.0
#: Seconds the completions reader waits between two reads of a queue's events, and the most
#: events one read returns (a queue's events stream holds 10,000: more than a round writes).
READ_PAUSE = 0.1
READ_COUNT = 10_000
#: A worker's lease (s): it is stopped while runs are enqueued, and must not be taken for dead.
LEASE = 120.0
#: Acceptance: cluster per-run Redis CPU at most this times the plain server's; the busiest
#: shard at most this times the idlest (an even split).
TARGETS = {"three_shards_over_plain_max": 1.2, "shard_split_max_over_min": 1.2}


class Setup:
    """The servers of one configuration: their URL for flowbus, and one client per primary."""

    def __init__(self, name: str, url: str, nodes: list[EmbeddedServer]) -> None:
        self.name, self.url, self.node_url = name, url, nodes[0].url
        self.primaries = [redis.Redis.from_url(n.url, decode_responses=True) for n in nodes]

    def cpu_seconds(self) -> list[float]:
        """CPU seconds of each primary."""
        return [server_cpu_seconds(c) for c in self.primaries]

    def counts(self) -> list[tuple[int, int]]:
        """Commands run and socket reads served so far, by primary."""
        stats: list[dict[str, Any]] = [c.info("stats") for c in self.primaries]
        return [(s["total_commands_processed"], s["total_reads_processed"]) for s in stats]

    def blocked_group_reads(self) -> int:
        clients: list[list[dict[str, Any]]] = [c.client_list() for c in self.primaries]
        return sum(
            1
            for node in clients
            for c in node
            if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
        )

    def close(self) -> None:
        for client in self.primaries:
            client.close()


@contextmanager
def servers(kind: str, tmp: Path) -> Iterator[Setup]:
    """``plain`` (one server), ``one_shard`` or ``three_shards`` (clusters), AOF on."""
    if kind == "plain":
        with EmbeddedServer(tmp / kind) as server:
            setup = Setup(kind, server.url, [server])
            yield setup
            setup.close()
        return
    masters = 1 if kind == "one_shard" else QUEUES
    with LocalCluster(tmp / kind, masters=masters) as cluster:
        setup = Setup(kind, cluster.url, cluster.nodes[:masters])
        yield setup
        setup.close()


def start_worker(children: Children, setup: Setup, name: str, queue: str, concurrency: int) -> None:
    """A worker serving ``queue``; returns once it blocks in its two group reads."""
    args = [sys.executable, "-m", "flowbus_worker", "worker_flows", "--name", name]
    args += ["--queue", queue, "--concurrency", str(concurrency), "--log-level", "WARNING"]
    args += ["--lease", str(LEASE)]
    wanted = setup.blocked_group_reads() + 2  # its runs and its resume requests
    env = bench_env(FLOWBUS_REDIS_URL=setup.url, FLOWBUS_KEY_PREFIX=KEY_PREFIX)
    children.start(name, args, env)
    wait_until(f"worker {name}", lambda: setup.blocked_group_reads() >= wanted, children)


class Completions:
    """Counts COMPLETED events of the queues, one blocking ``XREAD`` per queue (each queue
    is its own slot, so its own read on a cluster), from pinned ids.

    It is the benchmark's instrument, not part of a run: each read waits ``READ_PAUSE``
    after the one before, so it wakes a few times a second whatever the servers' pace (read
    at once, it woke per batch of events, and a shard serving a third of the traffic woke it
    more often per run than one server did: 0.19-0.20 XREADs per run summed over 3 shards,
    0.12-0.15 on one server). The drain's end is the time of the last COMPLETED
    event, its entry id's milliseconds (the server's wall clock), so the pause delays nothing
    measured.
    """

    def __init__(self, url: str, queues: list[str]) -> None:
        self.redis = open_client(url, max_connections=len(queues) + 1, connect_timeout=10)
        self.cursors = {Keys(KEY_PREFIX).queue(q).events(): "0-0" for q in queues}
        #: Wall-clock time (s) of the last COMPLETED event read.
        self.last_completed = 0.0

    async def pin(self) -> None:
        for stream in self.cursors:
            last: Any = await self.redis.xrevrange(stream, count=1)
            self.cursors[stream] = last[0][0] if last else "0-0"

    async def wait(self, n: int) -> float:
        """Read until ``n`` COMPLETED events; the wall-clock time (s) of the last one."""
        seen = 0
        reads = {s: asyncio.create_task(self._read(s)) for s in self.cursors}
        try:
            while seen < n:
                done, _ = await asyncio.wait(reads.values(), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    stream, completed = task.result()
                    seen += completed
                    reads[stream] = asyncio.create_task(self._read(stream, READ_PAUSE))
        finally:
            for task in reads.values():
                task.cancel()
            await asyncio.gather(*reads.values(), return_exceptions=True)
        return self.last_completed

    async def _read(self, stream: str, pause: float = 0.0) -> tuple[str, int]:
        await asyncio.sleep(pause)
        reply: Any = await self.redis.xread(
            {stream: self.cursors[stream]}, count=READ_COUNT, block=int(STEP_TIMEOUT * 1000)
        )
        if not reply:
            raise TimeoutError(f"no run of {stream} completed within {STEP_TIMEOUT} s")
        completed = 0
        for _stream, entries in reply:
            for entry_id, fields in entries:
                self.cursors[stream] = entry_id
                kind = fields.get(b"type")
                if kind in (b"FAILED", b"CRASHED", b"CANCELLED"):
                    raise RuntimeError(f"run {fields.get(b'run_id')!r} ended {kind!r}")
                if kind == b"COMPLETED":
                    completed += 1
                    at = int(entry_id.split(b"-", 1)[0]) / 1000
                    self.last_completed = max(self.last_completed, at)
        return stream, completed

    async def aclose(self) -> None:
        await close_client(self.redis)


async def enqueue(client: FlowbusClient, deployments: list[UUID], n: int) -> None:
    """``n`` runs, round-robin over ``deployments`` (64 creates in flight)."""
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await client.create_flow_run_from_deployment(deployments[i % len(deployments)])

    await asyncio.gather(*(one(i) for i in range(n)))


def idle_cpu_per_second(setup: Setup, children: Children) -> list[float]:
    """CPU seconds per second each primary spends with no client sending anything (its own
    timers, a cluster's gossip): the workers stopped, over ``IDLE_SECONDS``."""
    with children.frozen("w"):
        before, started = setup.cpu_seconds(), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        after, elapsed = setup.cpu_seconds(), time.perf_counter() - started
    return [(a - b) / elapsed for a, b in zip(after, before, strict=True)]


async def one_round(
    setup: Setup,
    children: Children,
    deployments: list[UUID],
    queues: list[str],
    runs: int,
    idle: list[float],
) -> dict[str, Any]:
    """Enqueue ``runs`` with the workers stopped, drain them; rates and Redis CPU (also net of
    what the servers spend idle over the same time)."""
    completions = Completions(setup.url, queues)
    await completions.pin()
    counts_before = setup.counts()
    cpu_before, began = setup.cpu_seconds(), time.perf_counter()
    workers_before = children.cpu_seconds("w")
    with children.frozen("w"):
        async with get_client() as client:
            await enqueue(client, deployments, runs)
        started = time.time()  # the clock of the events' entry ids
    finished = await completions.wait(runs)
    await completions.aclose()
    cpu = [after - before for after, before in zip(setup.cpu_seconds(), cpu_before, strict=True)]
    elapsed = time.perf_counter() - began
    net = [max(0.0, used - rate * elapsed) for used, rate in zip(cpu, idle, strict=True)]
    counts = [
        (commands - commands_before, reads - reads_before)
        for (commands, reads), (commands_before, reads_before) in zip(
            setup.counts(), counts_before, strict=True
        )
    ]
    return {
        "runs_per_second": runs / (finished - started),
        "redis_cpu_us_per_run_by_shard": [seconds * 1e6 / runs for seconds in cpu],
        "net_of_idle_us_per_run_by_shard": [seconds * 1e6 / runs for seconds in net],
        "redis_commands_per_run_by_shard": [commands / runs for commands, _ in counts],
        "redis_reads_per_run_by_shard": [reads / runs for _, reads in counts],
        "worker_cpu_us_per_run": (children.cpu_seconds("w") - workers_before) * 1e6 / runs,
    }


async def measure(
    kind: str, queues: list[str], runs: int, rounds: int, concurrency: int, tmp: Path
) -> Any:
    """One configuration: its servers, 3 workers, ``rounds`` rounds (medians reported)."""
    with servers(kind, tmp) as setup, workers_dir() as children:
        point_flowbus_at(setup.url, KEY_PREFIX)
        try:
            async with get_client() as client:
                deployments = [
                    await client.create_deployment(TRIVIAL, f"d-{q}", queue=q) for q in queues
                ]
            for i, queue in enumerate(queues):
                start_worker(children, setup, f"w{i}", queue, concurrency)
            idle = idle_cpu_per_second(setup, children)
            await one_round(setup, children, deployments, queues, min(runs, 150), idle)  # warm-up
            measured = [
                await one_round(setup, children, deployments, queues, runs, idle)
                for _ in range(rounds)
            ]
            log(f"{kind}: {[round(m['runs_per_second']) for m in measured]} runs/s")
            counter = CommandCounter(setup.node_url)
            about = machine(counter)
            counter.close()
            summary = summarize(measured)
            summary["idle_cpu_us_per_second_by_shard"] = [round(r * 1e6) for r in idle]
            return summary, about
        finally:
            await close_runtime()


def summarize(measured: list[dict[str, Any]]) -> dict[str, Any]:
    shards = len(measured[0]["redis_cpu_us_per_run_by_shard"])

    def median_by_shard(name: str) -> list[float]:
        return [statistics.median(m[name][i] for m in measured) for i in range(shards)]

    by_shard = median_by_shard("redis_cpu_us_per_run_by_shard")
    net = median_by_shard("net_of_idle_us_per_run_by_shard")
    commands = median_by_shard("redis_commands_per_run_by_shard")
    reads = median_by_shard("redis_reads_per_run_by_shard")
    return {
        "runs_per_second": round(statistics.median(m["runs_per_second"] for m in measured), 1),
        "redis_cpu_us_per_run_by_shard": [round(us, 1) for us in by_shard],
        "redis_cpu_us_per_run": round(sum(by_shard), 1),
        "net_of_idle_us_per_run_by_shard": [round(us, 1) for us in net],
        "net_of_idle_us_per_run": round(sum(net), 1),
        "redis_commands_per_run": round(sum(commands), 2),
        "redis_reads_per_run_by_shard": [round(n, 3) for n in reads],
        "redis_reads_per_run": round(sum(reads), 3),
        "worker_cpu_us_per_run": round(
            statistics.median(m["worker_cpu_us_per_run"] for m in measured), 1
        ),
    }


async def queue_names(tmp: Path) -> dict[str, str]:
    """Queue name → node of a 3-master cluster: one name per primary."""
    with servers("three_shards", tmp / "names") as setup:
        point_flowbus_at(setup.url, KEY_PREFIX)
        try:
            return dict(await spread_names(await get_runtime(), "bench"))
        finally:
            await close_runtime()


async def run(runs: int, rounds: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-cluster-") as name:
        tmp = Path(name)
        queues = list(await queue_names(tmp))
        log(f"queues {queues}, one per shard of 3")
        results: dict[str, Any] = {}
        about: Any = None
        for kind in ("plain", "one_shard", "three_shards"):
            results[kind], about = await measure(kind, queues, runs, rounds, concurrency, tmp)
    plain, three, one = results["plain"], results["three_shards"], results["one_shard"]
    split = three["net_of_idle_us_per_run_by_shard"]
    # N shards each spending a second of CPU serve N * 1e6 / (a run's summed µs) runs/s
    per_shard = 1e6 / three["net_of_idle_us_per_run"]
    ratios = {
        "three_shards_over_plain": round(
            three["net_of_idle_us_per_run"] / plain["net_of_idle_us_per_run"], 3
        ),
        "one_shard_over_plain": round(
            one["net_of_idle_us_per_run"] / plain["net_of_idle_us_per_run"], 3
        ),
        "three_shards_over_plain_raw": round(
            three["redis_cpu_us_per_run"] / plain["redis_cpu_us_per_run"], 3
        ),
        "shard_split_max_over_min": round(max(split) / max(min(split), 1e-9), 3),
        "three_shards_over_plain_reads": round(
            three["redis_reads_per_run"] / plain["redis_reads_per_run"], 3
        ),
        "three_shards_over_one_shard_runs_per_second": round(
            three["runs_per_second"] / one["runs_per_second"], 3
        ),
    }
    return {
        "benchmark": "cluster_scaling",
        "runs_per_round": runs,
        "rounds": rounds,
        "worker_concurrency": concurrency,
        "queues": queues,
        **results,
        "ratios": ratios,
        "targets": TARGETS,
        "meets_targets": ratios["three_shards_over_plain"] <= TARGETS["three_shards_over_plain_max"]
        and ratios["shard_split_max_over_min"] <= TARGETS["shard_split_max_over_min"],
        "projection_redis_bound_runs_per_second": {
            "one_server": round(1e6 / plain["net_of_idle_us_per_run"]),
            "three_shards": round(QUEUES * per_shard),
            "per_shard": round(per_shard),
            "note": "N shards, queues spread evenly, enough client CPU: N times per_shard",
        },
        "machine": about,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3000, help="runs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help="runs each worker takes at once"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.runs, args.rounds, args.concurrency))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
