"""Configuration from the environment (``FLOWBUS_*``), read once per process."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "flowbus"


class Settings(BaseSettings):
    """Every knob flowbus reads; each maps to ``FLOWBUS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_", frozen=True)

    #: ``redis://``, ``rediss://`` or ``unix://`` URL; unset → the embedded server.
    redis_url: str | None = None
    #: Folder of the embedded server's data, log and URL file.
    home: Path = Field(default_factory=_default_home)
    #: Prefix of every key flowbus writes.
    key_prefix: str = "fb"
    #: Seconds a finished run (hash, history, inputs, results) is kept.
    retention_seconds: int = 7 * 24 * 3600
    #: Cap of each run's history (state changes kept, the newest).
    run_events_maxlen: int = Field(default=1000, ge=1)
    #: Approximate cap of each queue's event stream (entries); at least a watcher's batch, so
    #: a watcher that falls behind the cap can tell (see ``waiters``).
    queue_events_maxlen: int = Field(default=10_000, ge=1000)
    #: Largest encoded run input, parameters or task result accepted (bytes).
    max_payload_bytes: int = 1024 * 1024
    #: Connections in the command pool of one process (callers queue for a free one).
    max_connections: int = 5
    #: Connections for blocking reads of receive_input and run followers (callers queue);
    #: the wait multiplexer holds one more per queue stream it watches.
    max_watch_connections: int = 3
    #: Seconds a blocking stream read waits before it re-checks the state hash.
    recheck_interval: float = 60.0
    #: Seconds a process's runs outlive its last heartbeat before they count as orphaned (a
    #: worker's ``--lease`` sets its own); it beats five times per lease.
    lease_seconds: float = Field(default=5.0, gt=0)
    #: Seconds to connect to Redis before giving up.
    connect_timeout: float = 5.0
    #: Seconds a call to a Redis Cluster waits out a failover (its node timeout, then the
    #: election of a replica) before it fails; blocking readers wait as long as it takes.
    failover_timeout: float = Field(default=30.0, gt=0)
    #: After a resume or a final transition, wait until this many replicas have it
    #: (``WAIT``), so that a failover right after cannot lose it; 0: do not wait.
    cluster_wait_replicas: int = Field(default=0, ge=0)
    #: Milliseconds that wait may take; past them the call goes on regardless (logged).
    cluster_wait_timeout_ms: int = Field(default=1000, ge=1)
    #: Level of the run logs a script shows on stderr (when it configured no logging).
    logging_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
