"""Worker processes for end-to-end tests, and event-driven waits on runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import anyio

from flowbus._redis.runtime import get_runtime
from flowbus.models import FlowRun

#: The repository root: workers run from here so ``tests.e2e.flows_module`` imports.
ROOT = Path(__file__).resolve().parents[2]
#: Seconds a worker gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0


@dataclass
class WorkerProcess:
    """One ``python -m flowbus_worker`` child process, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (killed if it does not exit within ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, as in a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def ensure_stopped(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def spawn_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str,
    *extra: str,
    queue: str = "default",
    module: str = "tests.e2e.flows_module",
) -> WorkerProcess:
    """Start a worker on the e2e flows with a short lease (2 s) and grace (10 s)."""
    args = [
        sys.executable,
        "-m",
        "flowbus_worker",
        module,
        "--queue",
        queue,
        "--name",
        name,
        "--concurrency",
        "4",
        "--lease",
        "2",
        "--grace",
        "10",
        "--log-level",
        "INFO",
        *extra,
    ]
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProcess(name, proc, log_path, list(extra))


async def wait_for_run(
    run_id: UUID | str, accept: Callable[[FlowRun], bool], within: float = 60.0
) -> FlowRun:
    """The run once ``accept`` holds, re-read at each event; TimeoutError past ``within`` s."""
    runtime = await get_runtime()
    store = runtime.store
    queue = await store.queue_of(run_id)
    async with runtime.waiters.subscribe(queue, str(run_id)) as sub:
        with anyio.fail_after(within):
            run = await store.read_run(run_id)
            while not accept(run):
                await sub.next()
                run = await store.read_run(run_id)
            return run


def is_suspended(run: FlowRun) -> bool:
    return run.state.is_paused() and run.state.name == "Suspended"


def dump_logs(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        sys.stderr.write(f"----- worker {worker.name} (exit {worker.proc.poll()}) -----\n")
        sys.stderr.write(worker.log()[-6000:])


def prefix_env() -> tuple[str, str]:
    return os.environ["FLOWBUS_REDIS_URL"], os.environ["FLOWBUS_KEY_PREFIX"]


async def wait_for_log(worker: WorkerProcess, text: str, within: float = 60.0) -> None:
    """Return once the worker logged ``text``.

    A worker announces nothing in Redis for what this waits on (a warning, a restart), so
    this one wait reads its log file over and over.
    """
    with anyio.fail_after(within):
        while text not in worker.log():
            assert worker.proc.poll() is None, f"{worker.name} exited:\n{worker.log()[-3000:]}"
            await anyio.sleep(0.05)
