"""A ``redis-server`` run under valgrind's callgrind: the instructions it executes between two
marks, a measure of its work that no other load of the machine changes (unlike CPU time).

Needs ``valgrind`` (with ``callgrind_control``) on PATH. The server runs some fifty times
slower than natively, so a benchmark gives it a few hundred runs, not thousands.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import redis

#: Seconds the server may take to start, or to write one dump.
_WAIT = 60.0
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CallgrindServer:
    """One server under callgrind (AOF on, as the benchmarks' own servers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.out = folder / "callgrind.out"
        conf = folder / "redis.conf"
        conf.write_text(
            f'bind 127.0.0.1\nport {self.port}\ndir {folder}\nsave ""\n'
            "appendonly yes\nappendfsync everysec\n"
        )
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}"]
            + ["redis-server", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + _WAIT
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server under callgrind did not start") from None
                time.sleep(0.1)

    def instructions(self) -> int:
        """Instructions executed since the previous call (or the start): a callgrind dump."""
        before = set(self.folder.glob("callgrind.out*"))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], capture_output=True)
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            self.client.ping()  # the dump is written when the server next runs
            new = set(self.folder.glob("callgrind.out*")) - before
            if new:
                (dump,) = new
                time.sleep(0.2)  # written whole
                found = _SUMMARY.search(dump.read_text())
                dump.unlink()
                return int(found.group(1)) if found else 0
            time.sleep(0.05)
        raise TimeoutError("callgrind wrote no dump")

    def stop(self) -> None:
        try:
            self.client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # it closes the connection as it exits
        self.proc.wait(_WAIT)
        self.client.close()


@contextmanager
def callgrind_server() -> Iterator[CallgrindServer]:
    with TemporaryDirectory(prefix="flowbus-bench-callgrind-") as tmp:
        server = CallgrindServer(Path(tmp))
        try:
            yield server
        finally:
            server.stop()
