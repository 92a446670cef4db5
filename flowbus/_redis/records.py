"""Run records from Redis: a :class:`FlowRun` or :class:`State` built from a run hash's (or an
event's) flat fields, with no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flowbus._core.codec import blob, decode, ms_to_datetime, text
from flowbus._redis.keys import RunKeys
from flowbus.exceptions import MalformedEntry
from flowbus.models import FlowRun
from flowbus.states import State, StateDetails, StateType

#: The message of the FAILED state an expired pause leaves (Prefect's; NEVER_RESUMED in
#: lua/_prelude.lua, which writes it).
NEVER_RESUMED = "The flow was paused and never resumed."


def _uuid_or_none(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def pause_expired(state_type: str, message: str) -> bool:
    """Whether a run in this state failed because its pause expired."""
    return state_type == StateType.FAILED and message == NEVER_RESUMED


@dataclass(frozen=True, slots=True)
class StoredState:
    """A run's state as its hash holds it: the one field ``state``, "<kind> <time ms> <run
    count> <call id> <detail> <name's length in bytes> <name><message>" (pack_state() in
    lua/_prelude.lua; the call is the scripts' own record of the last call applied, absent
    from a state an earlier version wrote)."""

    type: str
    ts_ms: int
    run_count: int
    name: str
    message: str


def unpack_state(raw: bytes | str | None) -> StoredState:
    """The run hash's ``state`` value unpacked; ``ValueError`` if it is not one."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not data:
        raise ValueError("the run hash holds no state")
    kind, ts_ms, run_count, length, rest = data.split(b" ", 4)
    if not length[:1].isdigit():  # the last call applied (an earlier version's state has none)
        _detail, length, rest = rest.split(b" ", 2)
    name_end = int(length)
    if not 0 <= name_end <= len(rest):
        raise ValueError(f"a state name of {name_end} bytes in {len(rest)}")
    return StoredState(
        kind.decode(),
        int(ts_ms),
        int(run_count),
        rest[:name_end].decode(errors="replace"),
        rest[name_end:].decode(errors="replace"),
    )


def state_from_fields(
    fields: Mapping[str, str], stored: StoredState, run_id: UUID | None = None
) -> State:
    """Build a :class:`State` from a run's stored state and its hash's (decoded) other fields
    (``run_id``: the run's id when the caller parsed it already).

    Every value is converted here; the models still validate them: pydantic's compiled
    validation of such small models is quicker than ``model_construct``, which loops over the
    fields in Python.
    """
    pause_key = fields.get("pause_key") or None
    timeout_ms = fields.get("pause_timeout_ms")
    prefix = fields.get("input_prefix")
    keyset = (
        {
            "schema": f"{prefix}-schema",
            "response": f"{prefix}-response",
            "description": f"{prefix}-description",
        }
        if prefix
        else None
    )
    scheduled_ms = fields.get("scheduled_ms")
    details = StateDetails(
        pause_key=pause_key,
        pause_timeout=ms_to_datetime(int(timeout_ms)) if timeout_ms else None,
        pause_reschedule=fields.get("pause_reschedule") == "1",
        run_input_keyset=keyset,
        scheduled_time=ms_to_datetime(int(scheduled_ms)) if scheduled_ms else None,
        flow_run_id=run_id or _uuid_or_none(fields.get("id")),
    )
    return State(
        type=StateType(stored.type),
        name=stored.name,
        message=stored.message or None,
        timestamp=ms_to_datetime(stored.ts_ms),
        state_details=details,
    )


#: Fields of a run hash that hold bytes, not text (``state`` is unpacked from its bytes).
_BINARY_FIELDS = (b"parameters", b"result", b"state")

#: The start of a run-hash field that holds a task result (msgpack): ``task:<task-run key>``.
#: The results live in the run's hash, not a key of their own, so that they are written with
#: the state that ends the run and expire with it.
TASK_RESULT_PREFIX = "task:"
_TASK_RESULT_PREFIX = TASK_RESULT_PREFIX.encode()


def task_result_fields(results: Mapping[str, bytes]) -> Iterator[str | bytes]:
    """The run-hash fields and values of ``results`` (task-run key → result), flat."""
    for key, value in results.items():
        yield TASK_RESULT_PREFIX + key
        yield value


def task_results_of(raw: Mapping[Any, Any]) -> dict[str, bytes]:
    """The task results (task-run key → result) among a run hash's fields."""
    found: dict[str, bytes] = {}
    for field, value in raw.items():
        name = blob(field)
        if name.startswith(_TASK_RESULT_PREFIX):
            found[name[len(_TASK_RESULT_PREFIX) :].decode(errors="replace")] = blob(value)
    return found


def _is_text_field(name: bytes) -> bool:
    return name not in _BINARY_FIELDS and not name.startswith(_TASK_RESULT_PREFIX)


def _text_fields(raw: Mapping[bytes, Any]) -> dict[str, str]:
    """The hash's text fields, decoded (by ``text`` only if some value is not bytes)."""
    try:
        return {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in raw.items()
            if _is_text_field(k)
        }
    except AttributeError:
        return {text(k): text(v) for k, v in raw.items() if _is_text_field(k)}


def run_from_hash(
    raw: Mapping[Any, Any], keys: RunKeys, stored: StoredState | None = None
) -> FlowRun:
    """Parse the hash of the run of ``keys`` (its id and queue are its key's; a hash written
    by an earlier version holds them as fields too), whose state is ``stored`` when the
    caller knows it (else the hash's); raise :class:`MalformedEntry` if it is not one of
    ours."""
    fields = _text_fields(raw)
    try:
        if stored is None:
            stored = unpack_state(raw.get(b"state"))
        params = decode(blob(raw[b"parameters"])) if raw.get(b"parameters") else {}
        run_id = UUID(keys.run_id)
        return FlowRun(
            id=run_id,
            name=fields.get("name", ""),
            flow_name=fields["flow_name"],
            queue=keys.queue,
            deployment_id=UUID(fields["deployment_id"]) if fields.get("deployment_id") else None,
            parent_flow_run_id=UUID(fields["parent_id"]) if fields.get("parent_id") else None,
            parameters=params,
            state=state_from_fields(fields, stored, run_id),
            run_count=stored.run_count,
            created=ms_to_datetime(int(fields.get("created_ms") or 0)),
        )
    except (KeyError, ValueError, OverflowError, OSError) as exc:  # OSError: a time too large
        raise MalformedEntry("run hash", str(exc), fields) from exc
