"""The user's default server: started by flowbus itself when no ``FLOWBUS_REDIS_URL`` is set.

flowbus launches ``redis-server``, ``valkey-server`` or the one bundled by
``flowbus[embedded]`` as a detached daemon that all the user's processes share through a URL
file; the file outlives the server, so a restart comes back where its clients look.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flowbus._redis.server_process import (
    EmbeddedServer,
    PortTaken,
    ServerStartError,
    ServerStatus,
    write_private,
)
from flowbus._redis.server_program import ServerMismatch, ServerNotFound, find_server_binary
from flowbus._redis.url_file import url_file
from flowbus.exceptions import ConfigurationError
from flowbus.settings import Settings

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerNotRunning",
    "ServerMismatch",
    "ServerNotFound",
    "ServerStartError",
    "ServerStatus",
    "default_server_url",
    "find_server_binary",
    "server_status",
    "stop_default_server",
]


class EmbeddedServerNotRunning(ConfigurationError):
    """Raised when the default embedded server is needed but not running and may not start."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"no embedded server is running for {home}")
        self.home = home


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """Serialise processes that look for, start or stop the default server."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (home / "redis.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _default_server(home: Path, *, port: int | None = None) -> EmbeddedServer | None:
    """The server the URL file names, whether or not it still runs (``port`` overrides)."""
    try:
        parts = urlsplit(url_file(home).read_text().strip())
        named = parts.port
    except (OSError, ValueError):
        return None
    password = unquote(parts.password) if parts.password else None
    return EmbeddedServer(home / "redis", port=port or named, password=password, detach=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server binds: closed connections of the old server (TIME_WAIT) do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_default(home: Path) -> str:
    """Start the default server where its clients look: the port and password of the URL
    file when the port is free (clients of a stopped or crashed server reconnect by
    themselves), else a fresh port, with the same password, in a new URL file."""
    server = _default_server(home)
    if server is None or not server.password:  # none before: a password keeps others out
        server = EmbeddedServer(home / "redis", password=secrets.token_urlsafe(24), detach=True)
    if server.port and not _port_free(server.port):
        server = EmbeddedServer(home / "redis", password=server.password, detach=True)
    try:
        url = server.start()
    except PortTaken:  # taken between the check and the launch
        server = EmbeddedServer(home / "redis", password=server.password, detach=True)
        url = server.start()
    tmp = home / "redis.url.tmp"
    write_private(tmp, url + "\n")
    os.replace(tmp, url_file(home))
    return url


def default_server_url(settings: Settings, *, start: bool = True) -> str:
    """The URL of the user's shared embedded server, started detached if none runs.

    Its data lives in ``home/redis`` and its URL, password included, in ``home/redis.url``
    (mode 0600), so every process and shell of the user finds the same server.

    Raises:
        EmbeddedServerNotRunning: ``start`` is False and no server runs.
        ServerNotFound, ServerMismatch, ServerStartError: as :meth:`EmbeddedServer.start`.
    """
    home = settings.home
    with _home_lock(home):
        server = _default_server(home)
        if server is not None and server.is_alive():
            return server.url
        if not start:
            raise EmbeddedServerNotRunning(home)
        return _start_default(home)


def stop_default_server(settings: Settings) -> bool:
    """Shut the default server down; True if it was running.

    The URL file stays: the next start takes the same port and password again.
    """
    with _home_lock(settings.home):
        server = _default_server(settings.home)
        running = server is not None and server.is_alive()
        if server is not None and running:
            server.stop()
        return running


def server_status(settings: Settings) -> ServerStatus | None:
    """The default server's status; None when it does not run."""
    with _home_lock(settings.home):
        server = _default_server(settings.home)
        return server.status() if server is not None else None
