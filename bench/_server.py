"""What every benchmark shares: a throwaway Redis server and the commands it counted.

A benchmark owns its server (a temp dir, a free port) so no other client's traffic mixes into
``INFO`` counters and no data survives the run.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis

from flowbus._redis.embedded import EmbeddedServer
from flowbus.settings import get_settings

#: Commands the counter itself sends (``INFO``, ``CONFIG RESETSTAT``); never counted.
_OWN_COMMANDS = ("info", "config")


@contextmanager
def private_server(*, appendonly: bool = True) -> Iterator[str]:
    """Start a server in a temp dir on a free port, yield its URL, stop it and delete its data."""
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp:
        server = EmbeddedServer(Path(tmp), appendonly=appendonly)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


def point_flowbus_at(url: str, key_prefix: str) -> None:
    """Make this process's flowbus use ``url``; must run before flowbus first reads settings."""
    os.environ["FLOWBUS_REDIS_URL"] = url
    os.environ["FLOWBUS_KEY_PREFIX"] = key_prefix
    get_settings.cache_clear()


@dataclass(frozen=True)
class Counts:
    """Commands executed between :meth:`CommandCounter.reset` and :meth:`CommandCounter.read`."""

    #: Calls by command name, those run inside Lua scripts included.
    by_command: dict[str, int]
    #: Socket reads the server processed: one per round trip of an unpipelined client.
    reads: int

    @property
    def total(self) -> int:
        return sum(self.by_command.values())


def server_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the server has used (``INFO cpu``: user + system)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CommandCounter:
    """Reads a server's ``INFO commandstats`` deltas, leaving out its own probes."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)

    def reset(self) -> None:
        self.redis.config_resetstat()

    def read(self) -> Counts:
        info: dict[str, Any] = self.redis.info("stats", "commandstats")
        by_command = {
            name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in info.items()
            if name.startswith("cmdstat_")
            and not name.removeprefix("cmdstat_").startswith(_OWN_COMMANDS)
        }
        # the INFO just sent was read before it ran; CONFIG RESETSTAT's read was reset with it
        return Counts(by_command, int(info["total_reads_processed"]) - 1)

    def cpu_seconds(self) -> float:
        return server_cpu_seconds(self.redis)

    def config(self, name: str) -> str:
        return str(self.redis.config_get(name)[name])

    def server_version(self) -> str:
        info: dict[str, Any] = self.redis.info("server")
        return str(info["redis_version"])

    def close(self) -> None:
        self.redis.close()


def machine(counter: CommandCounter) -> dict[str, Any]:
    """What the figures were measured on (every benchmark reports it)."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": counter.server_version(),
        "redis_py": version("redis"),
        "hiredis": version("hiredis"),
        "flowbus": version("flowbus"),
    }


def latency_ms(samples_ns: list[int]) -> dict[str, float]:
    """Percentiles (ms) of latencies measured in nanoseconds."""
    ms = [s / 1e6 for s in samples_ns]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "samples": len(ms),
        "p50": round(cuts[49], 3),
        "p90": round(cuts[89], 3),
        "p99": round(cuts[98], 3),
        "max": round(max(ms), 3),
        "mean": round(statistics.fmean(ms), 3),
    }
