"""Worker logging: text or JSON lines, and one line per run transition."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

#: Logger of the per-run transition lines.
runs_logger = logging.getLogger("flowbus.worker.runs")

#: Record attributes copied into a JSON line when present.
_FIELDS = ("worker", "run_id", "flow", "queue", "state", "state_name", "duration", "entry_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the run fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, *, json_lines: bool) -> None:
    """Log to stderr at ``level``, as text or JSON lines (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def log_transition(
    *,
    run_id: str,
    flow: str,
    queue: str,
    state: str,
    state_name: str,
    duration: float,
    message: str = "",
) -> None:
    """The one line a run transition gets."""
    if not runs_logger.isEnabledFor(logging.INFO):
        return
    runs_logger.info(
        "run %s flow=%s queue=%s state=%s name=%s duration=%.3fs%s",
        run_id,
        flow,
        queue,
        state,
        state_name,
        duration,
        f" message={message!r}" if message else "",
        extra={
            "run_id": run_id,
            "flow": flow,
            "queue": queue,
            "state": state,
            "state_name": state_name,
            "duration": round(duration, 3),
        },
    )
