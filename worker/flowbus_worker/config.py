"""The worker's configuration: what it runs, where from, and its timings."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field


def default_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything ``python -m flowbus_worker`` is told on its command line."""

    modules: tuple[str, ...]
    queues: tuple[str, ...] = ("default",)
    #: Runs executed at once, over all queues.
    concurrency: int = 4
    #: Consumer name in every consumer group, and key of this worker's heartbeat.
    name: str = field(default_factory=default_name)
    #: Seconds running flows get to finish after SIGTERM/SIGINT.
    grace: float = 30.0
    #: Seconds without a heartbeat after which a worker's runs may be claimed by another.
    lease: float = 5.0
    #: Seconds between heartbeats.
    heartbeat: float = 1.0
    #: Longest sleep of an idle deadline sweeper (a new deadline wakes it at once).
    sweep_interval: float = 30.0
    #: Deliveries after which a run whose worker died again ends CRASHED instead of re-running.
    max_deliveries: int = 3
    #: Seconds a run of a flow no live worker of its queue runs waits for one, then FAILs.
    unknown_flow_timeout: float = 60.0
    #: Milliseconds one blocking stream read waits before it is re-issued.
    block_ms: int = 2000
    #: Write logs as JSON lines.
    json_logs: bool = False

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))
