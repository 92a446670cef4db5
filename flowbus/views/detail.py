"""Everything about one run in one round trip: state, history, payloads, and what a pause asks.

Payloads (parameters, result, task results) are decoded without pickle; a value that cannot be
decoded is shown as a note, never raised, since any Redis content must be displayable.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from flowbus._core.codec import blob, decode
from flowbus._redis.events import RunEvent, history_events
from flowbus._redis.records import TASK_RESULT_PREFIX, task_results_of
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError, FlowRunNotFound
from flowbus.states import StateType
from flowbus.views.fields import InputChoice, InputField, example_input, parse_choices, parse_schema
from flowbus.views.runs import FIELDS, RunSummary, safe_text, summary_from_fields

#: Task results listed at most (a run of thousands of tasks shows the first ones).
MAX_TASK_RESULTS = 200


@dataclass(frozen=True, slots=True)
class PauseInfo:
    """What a paused or suspended run waits for."""

    key: str
    deadline: datetime | None
    suspended: bool
    wants_input: bool
    description: str
    schema: dict[str, Any] | None
    fields: list[InputField]
    #: The models to choose from when the input is one of several (``fields`` is then empty).
    choices: list[InputChoice] = field(default_factory=list)

    def prefill(self) -> dict[str, Any]:
        """Input with every default (of the first model, for a choice of several)."""
        return self.choices[0].prefill() if self.choices else example_input(self.fields)


@dataclass(frozen=True, slots=True)
class RunDetail:
    summary: RunSummary
    parameters: Any
    events: list[RunEvent]
    result: Any = None
    has_result: bool = False
    traceback: str = ""
    task_results: dict[str, Any] = field(default_factory=dict)
    pause: PauseInfo | None = None

    @property
    def resume_command(self) -> str:
        """A ``flowbus resume`` line to paste (input prefilled with the defaults)."""
        line = f"flowbus resume {self.summary.id}"
        if self.pause and self.pause.wants_input:
            line += " --input " + shlex.quote(json.dumps(self.pause.prefill()))
        return line

    def as_json(self) -> dict[str, Any]:
        pause = self.pause
        return {
            **self.summary.as_json(),
            "parameters": self.parameters,
            "result": self.result if self.has_result else None,
            "traceback": self.traceback or None,
            "task_results": self.task_results,
            "history": [
                {
                    "time": e.timestamp.isoformat(),
                    "from": e.from_type or None,
                    "to": e.type.value,
                    "name": e.name,
                    "message": e.message,
                    "run_count": e.run_count,
                    "pause_key": e.pause_key or None,
                }
                for e in self.events
            ],
            "pause": None
            if pause is None
            else {
                "key": pause.key,
                "deadline": pause.deadline.isoformat() if pause.deadline else None,
                "suspended": pause.suspended,
                "wants_input": pause.wants_input,
                "description": pause.description,
                "schema": pause.schema,
                "choices": [c.title for c in pause.choices],
                "resume_command": self.resume_command,
            },
        }


def decoded(raw: Any) -> Any:
    """A stored msgpack payload as a value, or a note saying why it cannot be shown."""
    if raw is None:
        return None
    try:
        return decode(blob(raw))
    except FlowbusError as exc:
        return f"<cannot show: {exc}>"


async def read_detail(runtime: Runtime, run_id: UUID | str) -> RunDetail:
    """The run, its history, payloads and pause; :class:`FlowRunNotFound` if unknown."""
    keys = await runtime.store.run_keys(run_id)
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.hmget(keys.run, [*FIELDS, "parameters", "result", "traceback"])
    pipe.lrange(keys.history, 0, -1)
    pipe.hgetall(keys.input)
    pipe.hscan(keys.run, 0, match=f"{TASK_RESULT_PREFIX}*", count=MAX_TASK_RESULTS)
    values, events_raw, inputs_raw, (_, results_raw) = await pipe.execute()
    summary = summary_from_fields(values[: len(FIELDS)], keys.run_id, keys.queue)
    if summary is None:
        raise FlowRunNotFound(run_id)
    params_raw, result_raw, tb_raw = values[len(FIELDS) :]
    events = history_events(keys.history, str(run_id), summary.flow_name, events_raw)
    completed = summary.state_type == StateType.COMPLETED
    return RunDetail(
        summary=summary,
        parameters=decoded(params_raw) if params_raw else {},
        events=events,
        result=decoded(result_raw) if completed else None,
        has_result=completed,
        traceback=safe_text(tb_raw) if summary.state_type == StateType.FAILED else "",
        task_results={k: decoded(v) for k, v in task_results_of(results_raw).items()},
        pause=_pause_info(summary, {safe_text(k): v for k, v in inputs_raw.items()}),
    )


def _pause_info(run: RunSummary, inputs: dict[str, Any]) -> PauseInfo | None:
    if run.state_type != StateType.PAUSED:
        return None
    prefix = run.input_prefix
    schema: dict[str, Any] | None = None
    if prefix:
        try:
            loaded = json.loads(safe_text(inputs.get(f"{prefix}-schema")))
            schema = loaded if isinstance(loaded, dict) else None
        except ValueError:
            schema = None
    return PauseInfo(
        key=run.pause_key,
        deadline=run.deadline,
        suspended=run.state_name != "Paused",
        wants_input=bool(prefix),
        description=safe_text(inputs.get(f"{prefix}-description")) if prefix else "",
        schema=schema,
        fields=parse_schema(schema) if schema else [],
        choices=parse_choices(schema) if schema else [],
    )
