"""Run logs on the console, as Prefect prints them when a flow runs as a script.

A script that calls a flow sees the run's life (created, state changes, finished) and its
``get_run_logger()`` lines on stderr, at ``FLOWBUS_LOGGING_LEVEL`` (default INFO). A process
that configured logging itself (a worker, a test runner, an application) is left alone.
``log_prints=True`` turns ``print`` inside the run into INFO lines of the run's logger.
"""

from __future__ import annotations

import builtins
import logging
import sys
from contextvars import ContextVar
from typing import Any

#: The logger a ``print`` goes to while a run with ``log_prints`` executes, else ``None``.
print_logger: ContextVar[logging.LoggerAdapter[logging.Logger] | None] = ContextVar(
    "flowbus_print_logger", default=None
)
_original_print = builtins.print
_configured = False


class RunFormatter(logging.Formatter):
    """``12:00:00.123 | INFO    | Flow run 'name' - message`` (Prefect's console layout)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(origin)s - %(message)s")
        self.default_time_format = "%H:%M:%S"
        self.default_msec_format = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return super().formatTime(record, "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        task = getattr(record, "task_run_name", None)
        run = getattr(record, "flow_run_name", None)
        record.origin = (
            f"Task run {task!r}" if task else f"Flow run {run!r}" if run else record.name
        )
        return super().format(record)


class LifecycleLog(logging.LoggerAdapter[logging.Logger]):
    """A logger of flowbus's own lines about a run's life (created, paused, resumed, finished).

    Logging looks up the file and line of its caller, and in a coroutine that makes Python
    build the coroutine's frame object, which the coroutine then keeps: a paused run would hold
    one (some 250 bytes) for each such line said in a coroutine it still waits in, and more for
    the call's arguments. These lines' records name no file or line instead (as logging's do
    when it cannot look); a line with options (``exc_info``, ...) is logged the usual way.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if kwargs:
            super().log(level, msg, *args, **kwargs)
        elif self.isEnabledFor(level):
            logger = self.logger
            record = logger.makeRecord(
                logger.name, level, "(unknown file)", 0, msg, args, None, extra=self.extra
            )
            logger.handle(record)


def ensure_console_logs(level: str) -> None:
    """Show flowbus's run logs on stderr, once per process, unless logging is configured."""
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    package = logging.getLogger("flowbus")
    if root.handlers or package.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RunFormatter())
    package.addHandler(handler)
    package.setLevel(level.upper())


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", **kwargs: Any) -> None:
    run_logger = print_logger.get()
    target = kwargs.get("file")
    if run_logger is None or target not in (None, sys.stdout):
        _original_print(*args, sep=sep, end=end, **kwargs)
        return
    run_logger.info((sep if sep is not None else " ").join(str(a) for a in args))


def capture_prints() -> None:
    """Route ``print`` through :data:`print_logger` (a no-op outside a ``log_prints`` run)."""
    if builtins.print is not _print:
        builtins.print = _print
