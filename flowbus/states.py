"""States of flow and task runs, mirroring Prefect's names and helpers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from flowbus._core.bridge import in_async_context, run_blocking
from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, PausedRun, UnfinishedRun


class StateType(StrEnum):
    """The kind of a state; the name is free text within a kind."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"


#: Kinds a run never leaves except by an explicit retry.
FINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


def now() -> datetime:
    """The current time, timezone-aware (every timestamp flowbus keeps is UTC)."""
    return datetime.now(UTC)


class StateDetails(BaseModel):
    """Facts a state carries beyond its kind and name."""

    model_config = ConfigDict(frozen=True)

    pause_key: str | None = None
    #: Absolute time after which the pause can no longer be resumed.
    pause_timeout: datetime | None = None
    #: True for a suspension: the run leaves its process and is re-enqueued on resume.
    pause_reschedule: bool = False
    #: Names of the schema, response and description entries of a pause waiting for input.
    run_input_keyset: dict[str, str] | None = None
    scheduled_time: datetime | None = None
    retry: bool = False
    #: The run this state belongs to (set on the states flowbus returns and reads).
    flow_run_id: UUID | None = None
    #: The task run of a task's state (derived from its flow run and task-run key).
    task_run_id: UUID | None = None


class State(BaseModel):
    """A state of a run: kind, name, message, time and details.

    Task states also hold the task's return value (or exception), read with :meth:`result`.
    """

    type: StateType
    name: str
    message: str | None = None
    timestamp: datetime = Field(default_factory=now)
    state_details: StateDetails = Field(default_factory=StateDetails)
    _data: Any = PrivateAttr(default=None)
    #: Reads the persisted result of a completed state read from Redis (set by the store;
    #: compares equal for the same run).
    _source: Callable[[], Coroutine[Any, Any, Any]] | None = PrivateAttr(default=None)

    def with_source(self, source: Callable[[], Coroutine[Any, Any, Any]]) -> State:
        """Let :meth:`result` read the run's persisted result when no value is attached."""
        self._source = source
        return self

    def with_data(self, data: Any) -> State:
        """Attach a result (or exception) to this state and return it."""
        self._data = data
        return self

    def result(self, raise_on_failure: bool = True, _sync: bool | None = None) -> Any:
        """The value the run returned; re-raises its exception if it failed.

        As in Prefect 3 this is awaitable in async code (it dispatches to :meth:`aresult`)
        and plain in sync code; ``_sync=True`` forces the plain value.
        """
        if _sync is None and in_async_context():
            return self.aresult(raise_on_failure)
        if self._needs_source():
            assert self._source is not None
            self._data = run_blocking(self._source)
        return self._value(raise_on_failure)

    async def aresult(self, raise_on_failure: bool = True) -> Any:
        """:meth:`result` for async code."""
        if self._needs_source():
            assert self._source is not None
            self._data = await self._source()
        return self._value(raise_on_failure)

    def _needs_source(self) -> bool:
        return self._data is None and self._source is not None and self.is_completed()

    def _value(self, raise_on_failure: bool) -> Any:
        if isinstance(self._data, BaseException):
            if raise_on_failure:
                raise self._data
            return self._data
        if raise_on_failure and not self.is_completed():
            error = _unfinished_error(self)
            if error is not None:
                raise error
        return self._data

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_suspended(self) -> bool:
        return self.is_paused() and self.state_details.pause_reschedule

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    def __str__(self) -> str:
        suffix = f" ({self.message})" if self.message else ""
        return f"{self.name}{suffix}"


def _unfinished_error(state: State) -> Exception | None:
    """Prefect's exception for the result of a state that did not complete."""
    errors: dict[StateType, type[Exception]] = {
        StateType.PAUSED: PausedRun,
        StateType.CANCELLED: CancelledRun,
        StateType.CRASHED: CrashedRun,
        StateType.FAILED: FailedRun,
    }
    error = errors.get(state.type)
    if error is not None:
        return error(state.message or f"Run is {state.name}.")
    if state.is_final():
        return None
    return UnfinishedRun(f"Run is in {state.type.value} state, its result is not available.")


def _state(
    type_: StateType,
    default_name: str,
    name: str | None,
    message: str | None,
    data: Any = None,
    **details: Any,
) -> State:
    state = State(
        type=type_,
        name=name or default_name,
        message=message,
        state_details=StateDetails(**details),
    )
    return state.with_data(data)


# Constructors keep Prefect's capitalised names so imports port unchanged.
def Scheduled(
    scheduled_time: datetime | None = None,
    name: str | None = None,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    return _state(
        StateType.SCHEDULED,
        "Scheduled",
        name,
        message,
        data,
        scheduled_time=scheduled_time or now(),
        **details,
    )


def AwaitingRetry(
    scheduled_time: datetime | None = None, message: str | None = None, **details: Any
) -> State:
    """A SCHEDULED state named "AwaitingRetry" (a run waiting for its next attempt)."""
    return Scheduled(scheduled_time, name="AwaitingRetry", message=message, **details)


def Late(scheduled_time: datetime | None = None, message: str | None = None) -> State:
    """A SCHEDULED state named "Late" (a run past its start time)."""
    return Scheduled(scheduled_time, name="Late", message=message)


def Retrying(message: str | None = None, **details: Any) -> State:
    """A RUNNING state named "Retrying"."""
    return Running(name="Retrying", message=message, **details)


def Pending(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.PENDING, "Pending", name, message, data, **details)


def Running(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.RUNNING, "Running", name, message, data, **details)


def Completed(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.COMPLETED, "Completed", name, message, data, **details)


def Failed(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.FAILED, "Failed", name, message, data, **details)


def Crashed(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.CRASHED, "Crashed", name, message, data, **details)


def Cancelling(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.CANCELLING, "Cancelling", name, message, data, **details)


def Cancelled(
    name: str | None = None, message: str | None = None, data: Any = None, **details: Any
) -> State:
    return _state(StateType.CANCELLED, "Cancelled", name, message, data, **details)


def Paused(
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    name: str | None = None,
    message: str | None = None,
) -> State:
    """A PAUSED state; ``timeout_seconds`` or ``pause_expiration_time`` set its deadline."""
    if timeout_seconds is not None and pause_expiration_time is not None:
        raise ValueError("Give timeout_seconds or pause_expiration_time, not both")
    if timeout_seconds is not None:
        pause_expiration_time = now() + timedelta(seconds=timeout_seconds)
    details = StateDetails(
        pause_key=pause_key, pause_timeout=pause_expiration_time, pause_reschedule=reschedule
    )
    return State(
        type=StateType.PAUSED, name=name or "Paused", message=message, state_details=details
    )


def Suspended(
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | None = None,
    pause_key: str | None = None,
    name: str = "Suspended",
    message: str | None = None,
) -> State:
    """A PAUSED state named "Suspended" with ``pause_reschedule=True``, as in Prefect."""
    return Paused(
        timeout_seconds=timeout_seconds,
        pause_expiration_time=pause_expiration_time,
        reschedule=True,
        pause_key=pause_key,
        name=name,
        message=message,
    )
