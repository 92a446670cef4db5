"""What ``FLOWBUS_CLUSTER_WAIT_REPLICAS=1`` costs: a final transition that waits for a replica.

On a private Redis Cluster of one primary and one replica (loopback), the same ``n`` runs'
cancels (``set_flow_run_state(Cancelled())``: one script call) are made one after another
twice, in a fresh process each time: without waiting (the default) and with ``WAIT 1``. Per
cancel it reports the caller's CPU (``getrusage``), the primary's CPU (``INFO cpu``) and the
wall latency (p50, p99; loopback, so the replica's round trip is all WAIT adds), and the
ratios of the waiting run to the default. Prints one JSON object::

    python bench/cluster_wait.py [--n 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from _server import CommandCounter, latency_ms, machine, server_cpu_seconds

from flowbus._redis.local_cluster import LocalCluster

#: Cancels before the measured ones (connections, script loads).
WARMUP = 20


def _primary_cpu(port: int) -> float:
    with redis.Redis(port=port) as client:
        return server_cpu_seconds(client)


def _cancel_runs(url: str, prefix: str, replicas: int, n: int, out: Any) -> None:
    os.environ.update(
        FLOWBUS_REDIS_URL=url,
        FLOWBUS_KEY_PREFIX=prefix,
        FLOWBUS_CLUSTER_WAIT_REPLICAS=str(replicas),
    )
    from flowbus import Cancelled, get_client  # after the environment is set

    async def main() -> dict[str, Any]:
        async with get_client() as client:
            dep = await client.create_deployment("f", "d")
            ids = [(await client.create_flow_run_from_deployment(dep)).id for _ in range(n)]
            for run_id in ids[:WARMUP]:
                await client.set_flow_run_state(run_id, Cancelled())
            latencies = []
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            redis_cpu0 = _primary_cpu(int(url.rsplit(":", 1)[1]))
            for run_id in ids[WARMUP:]:
                t0 = time.perf_counter_ns()
                await client.set_flow_run_state(run_id, Cancelled())
                latencies.append(time.perf_counter_ns() - t0)
            redis_cpu = _primary_cpu(int(url.rsplit(":", 1)[1])) - redis_cpu0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        measured = n - WARMUP
        client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        return {
            "client_cpu_us_per_cancel": round(client_cpu / measured * 1e6, 1),
            "primary_cpu_us_per_cancel": round(redis_cpu / measured * 1e6, 1),
            "latency_ms": latency_ms(latencies),
        }

    out.send(asyncio.run(main()))


def _measure(url: str, prefix: str, replicas: int, n: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_cancel_runs, args=(url, prefix, replicas, n, there))
    proc.start()
    result: dict[str, Any] = here.recv()
    proc.join(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    n = max(args.n, WARMUP + 10)
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp:
        cluster = LocalCluster(Path(tmp), masters=1, replicas=1)
        cluster.start()
        try:
            primary = cluster.nodes[0].port  # the one primary (the replica is nodes[1])
            url = f"redis+cluster://127.0.0.1:{primary}"
            print("cancels without waiting…", file=sys.stderr)
            plain = _measure(url, "nowait", 0, n)
            print("cancels waiting for one replica…", file=sys.stderr)
            waited = _measure(url, "wait1", 1, n)
            counter = CommandCounter(f"redis://127.0.0.1:{primary}")
            described = machine(counter)
            counter.close()
        finally:
            cluster.stop()

    def ratio(key: str) -> float:
        return round(waited[key] / plain[key], 2) if plain[key] else 0.0

    p50 = "p50"
    result = {
        "benchmark": "cluster_wait",
        "cancels": n - WARMUP,
        "no_wait": plain,
        "wait_1_replica": waited,
        "ratio_client_cpu": ratio("client_cpu_us_per_cancel"),
        "ratio_primary_cpu": ratio("primary_cpu_us_per_cancel"),
        "ratio_latency_p50": round(waited["latency_ms"][p50] / plain["latency_ms"][p50], 2),
        "machine": described,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
