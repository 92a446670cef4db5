"""Worker logging: text or JSON lines, and one line per run transition."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from flowbus._engine.context import FlowRunContext

#: Logger of the per-run transition lines.
runs_logger = logging.getLogger("flowbus.worker.runs")

#: Record attributes copied into a JSON line when present.
_FIELDS = (
    "worker",
    "run_id",
    "flow",
    "queue",
    "state",
    "state_name",
    "duration",
    "entry_id",
    "flow_run_id",
    "flow_name",
    "task_run_key",
)


class RunFields(logging.Filter):
    """Names the run a line is about: from the record (``get_run_logger``'s fields) or from
    the flow run executing where it was logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            run_id = getattr(record, "flow_run_id", None)
            flow = getattr(record, "flow_name", None)
            if run_id is None and (ctx := FlowRunContext.get()) is not None:
                run_id, flow = str(ctx.flow_run.id), ctx.flow_run.flow_name
            if run_id is not None:
                record.run_id, record.flow = run_id, flow
        return True


class TextFormatter(logging.Formatter):
    """One text line; a line about a run ends with its id and flow unless it names them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        run_id = getattr(record, "run_id", None)
        if run_id is not None and f"flow={getattr(record, 'flow', None)}" not in line:
            line += f" [run={run_id} flow={getattr(record, 'flow', '')}]"
        return line


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
    handler.addFilter(RunFields())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    """The one line a run transition gets (callers ask ``runs_logger.isEnabledFor`` first:
    at WARNING, a worker's default, a run costs no formatting nor call)."""
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
