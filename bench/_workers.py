"""Worker processes of a benchmark: started, frozen while the other system runs, metered.

Both systems' workers stay up for the whole run; during a batch of one, the other's processes
are stopped (SIGSTOP), so an idle arq worker's polling never takes CPU from a flowbus batch,
nor the reverse, and batches of the two systems can alternate within one run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from _server import CommandCounter

from flowbus._redis.keys import Keys

#: The folder of the benchmarks and the repository root.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: Seconds any single wait (a process, an event, a batch) may take.
STEP_TIMEOUT = 60.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_env(**extra: str) -> dict[str, str]:
    """This process's environment, with the benchmarks folder importable and ``extra``."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(BENCH) + (os.pathsep + path if path else "")
    env.update(extra)
    return env


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

    def named(self, prefix: str) -> list[Child]:
        return [c for c in self.children if c.name.startswith(prefix)]

    def check_alive(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}"
                )

    def cpu_seconds(self, prefix: str) -> float:
        return sum(proc_cpu_seconds(c.proc.pid) for c in self.named(prefix))

    def freeze(self, prefix: str) -> None:
        """Stop (SIGSTOP) the children named ``prefix…``."""
        for child in self.named(prefix):
            child.proc.send_signal(signal.SIGSTOP)

    def thaw(self, prefix: str) -> None:
        """Continue (SIGCONT) the children named ``prefix…``."""
        for child in self.named(prefix):
            child.proc.send_signal(signal.SIGCONT)

    @contextmanager
    def frozen(self, prefix: str) -> Iterator[None]:
        """The children named ``prefix…`` stopped meanwhile, continued after."""
        self.freeze(prefix)
        try:
            yield
        finally:
            self.thaw(prefix)

    def stop(self, prefix: str) -> None:
        """SIGTERM the children named ``prefix…``; kill those still there after 15 s."""
        chosen = self.named(prefix)
        for child in chosen:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGCONT)
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


@contextmanager
def workers_dir() -> Iterator[Children]:
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-workers-") as tmp:
        children = Children(Path(tmp))
        try:
            yield children
        finally:
            children.stop_all()


def wait_until(what: str, ready: Callable[[], bool], children: Children) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not ready():
        children.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {STEP_TIMEOUT} s")
        time.sleep(0.02)


def start_flowbus_worker(
    children: Children,
    url: str,
    name: str,
    queues: list[str],
    *,
    prefix: str,
    concurrency: int,
    lease: float,
    env: dict[str, str] | None = None,
) -> None:
    """``python -m flowbus_worker worker_flows`` on ``queues``; returns once it beats and
    blocks in its reads.

    An idle worker blocks in XREADGROUP twice (runs, resume requests: one read each for all
    its queues); consumers are only listed by XINFO once delivered something, so blocked
    reads are counted instead.
    """
    args = [sys.executable, "-m", "flowbus_worker", "worker_flows", "--name", name]
    args += [arg for queue in queues for arg in ("--queue", queue)]
    args += ["--concurrency", str(concurrency), "--log-level", "WARNING", "--lease", str(lease)]
    client = redis.Redis.from_url(url, decode_responses=True)
    wanted = blocked_group_reads(client) + 2

    def reading() -> bool:
        return blocked_group_reads(client) >= wanted and bool(
            client.hexists(Keys(prefix).workers(), name)
        )

    try:
        children.start(
            name, args, bench_env(FLOWBUS_REDIS_URL=url, FLOWBUS_KEY_PREFIX=prefix, **(env or {}))
        )
        wait_until(f"flowbus worker {name}", reading, children)
    finally:
        client.close()


def blocked_group_reads(client: redis.Redis) -> int:
    """Connections blocked in XREADGROUP."""
    clients: list[dict[str, Any]] = client.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


@dataclass
class Meter:
    """CPU seconds of one system's workers, the server and the enqueuer over one batch."""

    counter: CommandCounter
    children: Children
    prefix: str
    start: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        return {
            "workers": self.children.cpu_seconds(self.prefix),
            "redis_server": self.counter.cpu_seconds(),
            "enqueuer": time.process_time(),
        }

    def reset(self) -> None:
        self.counter.reset()
        self.start = self.snapshot()

    def read(self, units: int) -> dict[str, Any]:
        """What the batch used, in total and per unit (run or job)."""
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
