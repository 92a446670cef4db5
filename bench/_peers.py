"""The peers flowbus is measured against (arq, taskiq), each run from a venv of its own.

arq pins redis-py below 8, and neither's dependencies may change flowbus's: their workers
and producers never run in flowbus's environment. Each has a venv under ``bench/``
(gitignored, made on first use) and a module that runs only there,
``bench/_<peer>_jobs.py``, with two commands:

- ``worker``: one worker process, ``CONCURRENCY`` jobs at once, logging at WARNING;
- ``enqueue --jobs N``: enqueue ``N`` jobs (64 calls in flight) and print one JSON object
  (its CPU and wall seconds, the peer's versions and settings).

Every job is the same no-op ending in :func:`_mark.mark`. Each peer uses its own database of
the benchmark's server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from _workers import BENCH, ROOT, STEP_TIMEOUT, Children, bench_env, log, wait_until


def _arq_ready(client: redis.Redis) -> bool:
    """arq writes its health-check key once it polled the queue."""
    return bool(client.exists("arq:queue:health-check"))


def _taskiq_ready(client: redis.Redis) -> bool:
    """taskiq's broker blocks in its read (XREADGROUP, or BRPOP for a list) once it listens."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    clients: list[dict[str, Any]] = client.client_list()
    reads = ("xreadgroup", "brpop")
    return any(c.get("cmd") in reads and str(c.get("db")) == db for c in clients)


@dataclass(frozen=True)
class Peer:
    name: str
    #: pip requirements of its venv.
    requirements: tuple[str, ...]
    #: Database of the benchmark's server it uses.
    db: int
    ready: Callable[[redis.Redis], bool]

    @property
    def venv(self) -> Path:
        return BENCH / f".venv-{self.name}"

    @property
    def module(self) -> Path:
        return BENCH / f"_{self.name}_jobs.py"

    def python(self) -> Path:
        """The venv's interpreter; the venv is made (once) if it cannot import the peer."""
        python = self.venv / "bin" / "python"
        probe = [str(python), "-c", f"import {self.name}"]
        if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return python
        log(f"creating {self.venv.relative_to(ROOT)} with {' '.join(self.requirements)}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", self.venv], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *self.requirements], check=True, stdout=sys.stderr)
        return python

    def env(self, url: str, concurrency: int, fifo: Path, **extra: str) -> dict[str, str]:
        base, _, _db = url.rpartition("/")
        return bench_env(
            BENCH_PEER_REDIS_URL=f"{base}/{self.db}",
            BENCH_PEER_CONCURRENCY=str(concurrency),
            BENCH_MARK_FIFO=str(fifo),
            **extra,
        )

    def start_worker(self, children: Children, env: dict[str, str], name: str) -> None:
        """Start one worker process; returns once it listens to its queue."""
        client = redis.Redis.from_url(env["BENCH_PEER_REDIS_URL"])
        try:
            client.delete("arq:queue:health-check")
            children.start(name, [str(self.python()), str(self.module), "worker"], env)
            wait_until(f"{self.name} worker {name}", lambda: self.ready(client), children)
        finally:
            client.close()

    def enqueue(self, env: dict[str, str], jobs: int) -> dict[str, Any]:
        """Enqueue ``jobs`` jobs in a producer process of the peer's venv; what it reports."""
        args = [str(self.python()), str(self.module), "enqueue", "--jobs", str(jobs)]
        out = subprocess.run(
            args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT * 2
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"{self.name} producer failed ({out.returncode}):\n{out.stderr[-3000:]}"
            )
        reported: dict[str, Any] = json.loads(out.stdout)
        return reported


ARQ = Peer("arq", ("arq",), 1, _arq_ready)
TASKIQ = Peer("taskiq", ("taskiq", "taskiq-redis", "uvloop"), 2, _taskiq_ready)
PEERS = {peer.name: peer for peer in (ARQ, TASKIQ)}
