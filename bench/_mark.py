"""The completion mark of every benchmarked job, whatever system runs it: a byte into a FIFO.

flowbus's flow, arq's job and taskiq's task all end by calling :func:`mark`, so a drain ends
by the same sign for every system, and the sign costs a job one ``write(2)`` and Redis
nothing. The reader takes the marks in batches (a blocking ``select``, then a pause of
``BATCH_SECONDS`` before the next): woken for every mark, it would cost the machine a
context switch per job, a tenth of a job's CPU. Without
``BENCH_MARK_FIFO`` in the environment (other benchmarks) :func:`mark` does nothing. This
module imports nothing but the standard library: every system's venv imports it.
"""

from __future__ import annotations

import os
import select
import tempfile
import time
from pathlib import Path

FIFO_ENV = "BENCH_MARK_FIFO"
#: Seconds the reader lets marks gather between reads: the precision of a drain's end.
BATCH_SECONDS = 0.002

_fd: int | None = None


def mark() -> None:
    """Tell the benchmark one job ended (a byte; writes under PIPE_BUF are atomic)."""
    global _fd
    if _fd is None:
        path = os.environ.get(FIFO_ENV)
        if not path:
            return
        _fd = os.open(path, os.O_WRONLY)  # the reader holds it open: this does not block
    os.write(_fd, b".")


class MarkReader:
    """The reading end: counts marks, waiting for them with a blocking ``select``."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="flowbus-bench-marks-")
        self.path = Path(self._dir.name) / "marks"
        os.mkfifo(self.path, 0o600)
        # read-write: never EOF while no writer is open, and writers never block on open
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def wait(self, n: int, timeout: float) -> float:
        """Block until ``n`` marks came; ``perf_counter`` when the n-th was read."""
        seen = 0
        deadline = time.perf_counter() + timeout
        while seen < n:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                raise TimeoutError(f"{seen} of {n} jobs marked within {timeout} s")
            seen += len(os.read(self._fd, n - seen))
            if seen < n:
                time.sleep(BATCH_SECONDS)
        return time.perf_counter()

    def surplus(self) -> int:
        """Marks that came beyond those waited for (a job run twice), read without waiting."""
        extra = 0
        while select.select([self._fd], [], [], 0)[0]:
            extra += len(os.read(self._fd, 65536))
        return extra

    def close(self) -> None:
        os.close(self._fd)
        self._dir.cleanup()
