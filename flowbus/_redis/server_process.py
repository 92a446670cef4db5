"""One Redis-compatible server process, launched on a data directory of its own.

Attached (the test suite's, one per session) or detached (the user's default server, see
:mod:`flowbus._redis.embedded`).

A server is recognised by the ``config_file`` its ``INFO`` reports, never by its port alone: a
port freed by a dead server can be taken by someone else's, which must not be reused or shut down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from flowbus._redis.server_program import Program, choose, record
from flowbus.exceptions import ConfigurationError

log = logging.getLogger(__name__)

#: Seconds a probe (INFO, PING, SHUTDOWN) waits to connect and for each reply.
PROBE_TIMEOUT = 1.0
#: Seconds between two probes while a server starts or stops.
POLL_INTERVAL = 0.05
#: Launches tried on fresh ports when another process binds the chosen free port first.
PORT_ATTEMPTS = 5
#: Lines of the server log quoted by a failed start.
LOG_TAIL_LINES = 20
#: Log text of EADDRINUSE, the one failure a launch on another port cures.
_PORT_TAKEN = "already in use"


class ServerStartError(ConfigurationError):
    """Raised when a launched server does not answer in time; the message quotes its log."""

    def __init__(self, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{reason} (log {log_path}):\n{log_tail}")
        self.log_path = log_path


class PortTaken(ServerStartError):
    """Raised when the fixed port asked for is taken by another process."""


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What ``flowbus server status`` shows of a running server."""

    url: str
    pid: int
    program: str
    data_dir: Path
    log_file: Path
    uptime_seconds: int


def _owner_only(path: Path) -> None:
    """Drop group and other permissions from ``path`` and what it holds (one level deep)."""
    for item in (path, *path.glob("*"), *path.glob("*/*")):
        mode = item.stat().st_mode & 0o777
        if mode & 0o077:
            item.chmod(mode & 0o700)


def write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def _free_port() -> int:
    # Racy by nature (the port is free only now); start() retries when it loses the race.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(value: object) -> str:
    """A config-file string argument, safe for paths with spaces or quotes."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedServer:
    """One server process whose config, data, log and pidfile live in ``data_dir``.

    Attached (the default) the server is this process's child. With ``detach=True`` it
    daemonizes in its own session and outlives the Python process that started it.
    ``fsync_always`` trades write speed for losing nothing acknowledged on a machine crash.
    ``extra_config`` lines are appended to the config file (a cluster node's settings).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        appendonly: bool = True,
        password: str | None = None,
        fsync_always: bool = False,
        detach: bool = False,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir.resolve()
        #: TCP port on 127.0.0.1; 0 until start() picks a free one.
        self.port = port or 0
        self.pid: int | None = None
        self.password = password
        self._binary = binary
        self._appendonly = appendonly
        self._fsync_always = fsync_always
        self._detach = detach
        self._extra_config = tuple(extra_config)
        self._conf = self.data_dir / "server.conf"
        self._log = self.data_dir / "server.log"
        self._pidfile = self.data_dir / "server.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        """Launch the server and wait until it answers PING; return its URL.

        Raises:
            ServerNotFound: no binary was given and none is installed.
            ServerMismatch: the data directory was written by a program this one cannot read.
            PortTaken: the fixed port asked for is taken.
            ServerStartError: the server exited or stayed silent for ``timeout`` seconds.
        """
        picked = self.port == 0
        for _ in range(PORT_ATTEMPTS if picked else 1):
            if picked:
                self.port = _free_port()
            if self._launch(timeout):
                return self.url
        raise PortTaken(f"port {self.port} is taken", self._log, self._log_tail(0))

    def restart(self, timeout: float = 10.0) -> str:
        """Start again on the same port and data dir, after ``kill``, ``stop`` or neither."""
        if self.is_alive():
            self.stop(timeout)
        return self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (SHUTDOWN fsyncs the AOF); SIGKILL after ``timeout`` seconds."""
        pid = self._probe()
        if pid is not None:
            self.pid = pid
            try:
                with self._client() as client:
                    client.shutdown()
            except RedisError as exc:
                log.warning("SHUTDOWN of server %s failed: %s", self.pid, exc)
        if not self._wait_exit(timeout):
            log.warning("server %s ignored SHUTDOWN for %s s, killing it", self.pid, timeout)
            self.kill()
        self._proc = self.pid = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: writes not yet fsynced may be lost."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait_exit(PROBE_TIMEOUT)
        self._proc = self.pid = None

    def is_alive(self) -> bool:
        """Whether this server (not merely something on its port) answers PING."""
        return self._probe() is not None

    def status(self) -> ServerStatus | None:
        """This server's pid, program, files and uptime; None when it does not run."""
        if self._probe() is None:
            return None
        try:
            with self._client() as client:
                info = client.info("server")
        except RedisError:
            return None
        name = str(info.get("server_name") or "redis")
        version = str(info.get(f"{name}_version") or info.get("redis_version"))
        return ServerStatus(
            url=self.url,
            pid=int(info["process_id"]),
            program=str(Program(str(info.get("executable", "?")), name, version)),
            data_dir=self.data_dir,
            log_file=self._log,
            uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, timeout: float) -> bool:
        """Spawn once and wait; False when the port was taken meanwhile."""
        # the config holds the password, the data everything: the owner's only
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.data_dir)
        program = choose(self.data_dir, self._binary)
        binary = program.binary
        write_private(self._conf, self._config())
        log_start = self._log.stat().st_size if self._log.exists() else 0
        self._pidfile.unlink(missing_ok=True)  # so a pidfile read after a failure is this launch's
        # Config errors go to stderr before the server opens its log, so both share one file.
        log_fd = os.open(self._log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(log_fd, "ab") as out:
            proc = subprocess.Popen(
                [binary, str(self._conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=self._detach,
                umask=0o077,  # files the server creates (AOF, pidfile) are the owner's only
            )
        if self._detach:
            proc.wait(timeout)  # the daemonizing parent exits at once; its child lives on
        else:
            self._proc, self.pid = proc, proc.pid
        deadline = time.monotonic() + timeout
        # A detached launch is judged by its daemon, once the parent has exited cleanly.
        while proc.poll() is None or (self._detach and proc.returncode == 0):
            if (pid := self._probe()) is not None:
                self.pid = pid
                log.info("started %s (pid %s) at port %s", binary, pid, self.port)
                record(self.data_dir, program)
                return True
            if _PORT_TAKEN in self._log_tail(log_start) or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        if self.pid is None and self._pidfile.exists():  # a daemon still loading, or stuck
            self.pid = int(self._pidfile.read_text())
        self.kill()
        if _PORT_TAKEN in self._log_tail(log_start):
            return False
        raise ServerStartError(f"{binary} did not start", self._log, self._log_tail(log_start))

    def _config(self) -> str:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {_quote(self.data_dir)}",
            f"logfile {_quote(self._log)}",
            f"pidfile {_quote(self._pidfile)}",
            'save ""',
            f"daemonize {'yes' if self._detach else 'no'}",
            f"appendonly {'yes' if self._appendonly else 'no'}",
            f"appendfsync {'always' if self._fsync_always else 'everysec'}",
        ]
        if self.password:
            lines.append(f"requirepass {_quote(self.password)}")
        lines.extend(self._extra_config)
        return "\n".join(lines) + "\n"

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=PROBE_TIMEOUT,
            socket_connect_timeout=PROBE_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )

    def _probe(self) -> int | None:
        """The pid of this server if it runs and is done loading, else None."""
        try:
            with self._client() as client:
                info = client.info("server")
                if info.get("config_file") != str(self._conf):
                    return None
                client.ping()  # refused with LOADING while the AOF is replayed
                return int(info["process_id"])
        except RedisError:
            return None

    def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        # A detached server is not our child: watch it stop answering instead.
        deadline = time.monotonic() + timeout
        while self._probe() is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def _log_tail(self, start: int) -> str:
        with self._log.open("rb") as f:  # created by the first _launch
            f.seek(start)
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
