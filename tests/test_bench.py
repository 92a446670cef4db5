"""The benchmarks still run and print their JSON (tiny sizes: a smoke test, not a measurement).

``bench/worker_throughput.py`` runs flowbus alone: its peers (arq, taskiq) are installed into
venvs of their own first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import own_servers

pytestmark = own_servers

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.timeout(150)
def test_flow_overhead_prints_its_figures() -> None:
    result = run_bench("flow_overhead.py", "--runs", "20")
    assert result["benchmark"] == "flow_overhead"
    assert result["flowbus"]["sequential_sync"]["runs"] == 20
    assert result["flowbus"]["concurrent_async"]["round_trips_per_run"] < 1
    assert set(result["flowbus_over_baseline"]) == {"sequential", "concurrent"}


@pytest.mark.timeout(150)
def test_resume_latency_prints_its_figures() -> None:
    result = run_bench("resume_latency.py", "--n", "40", "--paused", "100")
    assert result["benchmark"] == "resume_latency"
    assert result["many_paused"]["paused_runs"] == 100
    assert {"resume", "wait", "many_paused_resume"} <= set(result["vs_targets"])
    assert {"resume_with_input", "resume_validated"} <= set(result)
    assert result["resume"]["per_pause_and_resume"]["script_calls"] >= 2  # the pause and the resume


@pytest.mark.timeout(150)
def test_scaling_prints_its_figures() -> None:
    result = run_bench(
        "scaling.py", "--runs", "20", "--rounds", "1", "--backlog", "40", "--paused", "40"
    )
    assert result["benchmark"] == "scaling"
    assert result["vs_targets"]["blocking_connections_1_10_50"] == [3, 3, 3]
    fifty = result["queues_per_worker"]["50_queues"]
    assert len(fifty["spread"]["over_1_queue_rounds"]) == len(fifty["busy"]["rounds"]) == 1
    assert result["retention"]["runs"] == 20
    assert set(result["paused_runs"]) == {"floor", "40"}
    assert result["vs_targets"]["paused_connections"]["40"] <= 8


@pytest.mark.timeout(150)
def test_scaling_measures_only_the_curves_asked_for() -> None:
    result = run_bench("scaling.py", "--only", "paused", "--paused", "30")
    assert "queues_per_worker" not in result and "retention" not in result
    assert set(result["vs_targets"]) >= {"paused_rss_kib_per_run", "paused_ok"}


@pytest.mark.timeout(200)
def test_cluster_scaling_prints_its_figures() -> None:
    result = run_bench("cluster_scaling.py", "--runs", "30", "--rounds", "1", timeout=190)
    assert result["benchmark"] == "cluster_scaling"
    assert len(result["queues"]) == 3
    assert len(result["three_shards"]["redis_cpu_us_per_run_by_shard"]) == 3
    assert len(result["one_shard"]["redis_cpu_us_per_run_by_shard"]) == 1
    assert len(result["three_shards"]["redis_reads_per_run_by_shard"]) == 3
    assert result["three_shards"]["redis_commands_per_run"] > 0
    assert result["ratios"]["three_shards_over_plain"] > 0


@pytest.mark.timeout(150)
@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(),
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
def test_ui_latency_prints_its_figures() -> None:
    result = run_bench("ui_latency.py", "--n", "3", "--paused", "20", "--idle-seconds", "1")
    assert result["benchmark"] == "ui_latency"
    assert result["pause_to_visible_ms"]["samples"] == 3
    assert result["idle"]["inbox_rows_shown"] == 20


@pytest.mark.timeout(150)
def test_worker_throughput_prints_its_figures() -> None:
    result = run_bench(
        "worker_throughput.py",
        *("--systems", "flowbus", "--processes", "1", "--rounds", "1"),
        *("--jobs", "30", "--warmup", "5", "--samples", "0"),
    )
    assert result["benchmark"] == "worker_throughput"
    flowbus = result["throughput"]["1_process"]["flowbus"]
    assert flowbus["extra_marks"] == 0  # every run ran once
    assert flowbus["redis_per_job"]["drain"]["commands"] > 0
    assert set(flowbus["cpu_us_per_job_median"]) == {
        "workers",
        "redis_drain",
        "producer",
        "redis_enqueue",
    }


@pytest.mark.timeout(150)
def test_redis_cost_prints_its_figures() -> None:
    result = run_bench("redis_cost.py", "--runs", "20", "--rounds", "1")
    assert result["benchmark"] == "redis_cost"
    assert result["retention"]["runs"] == 20
    assert result["cpu"]["over_floor_median"] > 0
    assert {"redis_cpu_ok", "retention_ok"} <= set(result["vs_targets"])


@pytest.mark.timeout(120)
def test_cluster_wait_prints_its_figures() -> None:
    result = run_bench("cluster_wait.py", "--n", "40")
    assert result["benchmark"] == "cluster_wait"
    assert result["wait_1_replica"]["primary_cpu_us_per_cancel"] > 0
