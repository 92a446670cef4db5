"""The arq side of ``bench/worker_throughput.py``, driven from flowbus's environment.

arq pins redis-py below 8, so its workers and its driver run from their own venv
(``bench/.venv-arq``, made on first use) through ``bench/_arq_jobs.py``; this module starts
them and reads what they report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
from _workers import BENCH, ROOT, STEP_TIMEOUT, Children, Meter, bench_env, log, wait_until

#: arq's own virtual environment (gitignored), made on first use.
ARQ_VENV = BENCH / ".venv-arq"
ARQ_REQUIREMENT = "arq"


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


def arq_env(url: str, max_jobs: int, poll_delay: float) -> dict[str, str]:
    """The environment of arq's processes: database 1 of the benchmark's server."""
    base, _, _db = url.rpartition("/")
    return bench_env(
        BENCH_ARQ_REDIS_URL=f"{base}/1",
        BENCH_ARQ_MAX_JOBS=str(max_jobs),
        BENCH_ARQ_POLL_DELAY=str(poll_delay),
    )


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
    python: Path, env: dict[str, str], jobs: int, warmup: int, meter: Meter
) -> dict[str, Any]:
    """``jobs`` no-op jobs (after ``warmup`` untimed ones) through the running arq workers."""
    meter.reset()
    args = [str(python), str(BENCH / "_arq_jobs.py"), "drive", "--jobs", str(jobs)]
    args += ["--warmup", str(warmup)]
    out = subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT * 2
    )
    if out.returncode != 0:
        raise RuntimeError(f"arq driver failed ({out.returncode}):\n{out.stderr[-3000:]}")
    driven: dict[str, Any] = json.loads(out.stdout)
    used = meter.read(jobs + warmup)
    used["cpu_seconds"]["enqueuer"] = round(driven["driver_cpu_seconds"], 3)
    return {
        "runs": jobs,
        "seconds": round(driven["seconds"], 3),
        "runs_per_second": round(jobs / driven["seconds"], 1),
        "enqueue_seconds": round(driven["enqueue_seconds"], 3),
        **used,
        "settings": {k: driven[k] for k in ("max_jobs", "poll_delay_s")},
        "versions": {k: driven[k] for k in ("arq", "redis_py")},
    }
