"""Every error flowbus raises.

Tree::

    FlowbusError
    ├── ConfigurationError          bad settings, unreachable Redis
    │   └── ServerNotFound, ServerMismatch, ServerStartError, EmbeddedServerNotRunning
    │                               (flowbus._redis.embedded)
    ├── ObjectNotFound              unknown run or deployment
    │   ├── FlowRunNotFound
    │   └── DeploymentNotFound
    ├── InvalidStateTransition      the run store refused a state change
    │   ├── StaleExecution          ... made by an execution a newer one superseded
    │   ├── PauseRefused (RuntimeError)  pause or suspension of a run that is not RUNNING
    │   └── NotPausedError          resume of a run that is not paused
    │       ├── HolderGone          ... whose process is gone (the run is CRASHED)
    │       └── StillSuspending     resume of a run still on its way to Suspended
    ├── PauseNotAllowed (RuntimeError)  pause/suspend from a task, a subflow, no deployment
    ├── FlowPauseTimeout            the pause expired before a resume
    ├── FlowRunTimeout (TimeoutError)   a run exceeded its flow's timeout_seconds
    ├── TaskRunTimeout (TimeoutError)   a task exceeded its timeout_seconds
    ├── UpstreamTaskError           a task's wait_for did not complete
    ├── FlowRunWaitTimeout          wait_for_flow_run gave up
    ├── InvalidRunInput (RuntimeError)  run input failed validation
    ├── ResumeRefused (RuntimeError)  a resume whose pause's schema is gone or no JSON
    ├── InvalidInputKey (pydantic.ValidationError)  a flow run input key with invalid characters
    ├── ObjectAlreadyExists
    │   └── InputKeyExists          a flow run input key that is taken
    ├── PayloadTooLarge             an encoded payload is over the limit
    ├── SerializationError          a value cannot be encoded or decoded
    ├── MalformedEntry              a stream entry flowbus cannot read
    ├── FlowRunCancelled            the run was cancelled while it waited
    ├── ClientNotOpen               a client used outside ``async with``
    ├── MissingContext (RuntimeError)  a run-only call made outside a run
    ├── NonDeterminismError         a re-run reached a fired pause key with another input type
    └── PausedRun, CancelledRun, CrashedRun, FailedRun, UnfinishedRun  state.result() of a
        run that did not complete
    Pause (BaseException)           control flow: the run leaves its process

Where Prefect raises a built-in type, the flowbus class also derives from it and carries
Prefect's message, so ``except RuntimeError`` and ``pytest.raises(..., match=...)`` port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import pydantic
from pydantic_core import InitErrorDetails

if TYPE_CHECKING:
    from flowbus.states import State


class FlowbusError(Exception):
    """Raised for any flowbus failure; the root of the tree above."""


class ConfigurationError(FlowbusError):
    """Raised when settings are invalid or the configured Redis cannot be reached."""


class ObjectNotFound(FlowbusError):
    """Raised when a run or deployment id names nothing in Redis."""


class FlowRunNotFound(ObjectNotFound):
    """Raised when no flow run has the given id."""

    def __init__(self, run_id: UUID | str) -> None:
        self.run_id = str(run_id)
        super().__init__(f"Flow run {self.run_id} not found")


class DeploymentNotFound(ObjectNotFound):
    """Raised when no deployment has the given id or ``flow/name``."""

    def __init__(self, ref: UUID | str) -> None:
        self.ref = str(ref)
        super().__init__(f"Deployment {self.ref!r} not found")


class InvalidStateTransition(FlowbusError):
    """Raised when the run store refuses a state change; nothing was written.

    ``state`` is the run's current state, ``reason`` the rule that refused it.
    """

    def __init__(self, run_id: UUID | str, reason: str, state: State | None = None) -> None:
        self.run_id = str(run_id)
        self.reason = reason
        self.state = state
        current = f" (current state: {state.type.value} {state.name!r})" if state else ""
        super().__init__(f"Flow run {self.run_id}: {reason}{current}")


class NotPausedError(InvalidStateTransition):
    """Raised when resuming a run that is not paused (or that another resumer won).

    The message is Prefect's; ``reason`` and ``state`` say more.
    """

    def __init__(self, run_id: UUID | str, reason: str, state: State | None = None) -> None:
        super().__init__(run_id, reason, state)
        self.args = (NOT_PAUSED,)

    def __str__(self) -> str:
        return NOT_PAUSED


#: Prefect's message for a resume of a run that is not paused.
NOT_PAUSED = "Cannot resume a run that isn't paused!"


class StaleExecution(InvalidStateTransition):
    """Raised in an execution whose run was taken over by a newer one (its lease lapsed: a
    stopped process, a long pause, a partition): it changes nothing more and stops."""


class HolderGone(NotPausedError):
    """Raised when resuming an in-process pause whose process is gone: there is nobody to
    wake, and the run ended CRASHED instead (the message says so after Prefect's)."""

    def __str__(self) -> str:
        return f"{NOT_PAUSED} {self.reason}"


class PauseNotAllowed(FlowbusError, RuntimeError):
    """Raised when a run cannot pause or suspend from where it is asked to (Prefect's message)."""


class PauseRefused(InvalidStateTransition, RuntimeError):
    """Raised when the run store refuses a pause or a suspension: the run is not RUNNING (as
    ``suspend_flow_run(flow_run_id=...)`` of a run that has not started, or has ended).
    Prefect's server refuses these too, and its ``suspend_flow_run``/``pause_flow_run`` raise
    ``RuntimeError``."""


class StillSuspending(NotPausedError):
    """Raised when resuming a run that was asked to suspend but has not checkpointed yet."""


class FlowPauseTimeout(FlowbusError):
    """Raised when a pause expired: in the paused flow, or to a resumer that came too late."""


class FlowRunTimeout(FlowbusError, TimeoutError):
    """Raised in a flow run that exceeded its flow's ``timeout_seconds`` (the run FAILED)."""


class TaskRunTimeout(FlowbusError, TimeoutError):
    """Raised in a task run that exceeded its task's ``timeout_seconds`` (the task FAILED)."""


class UpstreamTaskError(FlowbusError):
    """A task's failure when a run it was told to ``wait_for`` did not complete."""


class FlowRunWaitTimeout(FlowbusError):
    """Raised when ``wait_for_flow_run`` did not see a final state within its timeout."""


#: How Prefect's ``resume_flow_run`` begins the message of a resume its server refused.
RESUME_REFUSED = "Cannot resume this run: "


class InvalidRunInput(FlowbusError, RuntimeError):
    """Raised when run input fails validation; ``errors`` lists ``(field, message)`` pairs.

    A refused resume (``resume=True``) is worded as Prefect's ``resume_flow_run`` words it,
    a ``RuntimeError`` that starts "Cannot resume this run: Reason: ", then every bad field.
    """

    def __init__(
        self,
        errors: list[tuple[str, str]],
        run_id: UUID | str | None = None,
        *,
        resume: bool = False,
    ) -> None:
        self.errors = errors
        self.run_id = None if run_id is None else str(run_id)
        lines = "; ".join(f"{field or '<input>'}: {msg}" for field, msg in errors)
        super().__init__(
            f"{RESUME_REFUSED}Reason: {lines}" if resume else f"Invalid run input: {lines}"
        )


class ResumeRefused(FlowbusError, RuntimeError):
    """Raised when a resume cannot be judged: the pause's stored schema is gone or is no JSON.

    Worded as Prefect's ``resume_flow_run`` words its server's refusal, a ``RuntimeError``
    ("Cannot resume this run: Run input schema not found."); the run stays paused.
    """

    def __init__(self, run_id: UUID | str, reason: str) -> None:
        self.run_id = str(run_id)
        self.reason = reason
        super().__init__(f"{RESUME_REFUSED}{reason}")


class InvalidInputKey(FlowbusError, pydantic.ValidationError):
    """Raised for a flow run input key with characters Prefect does not accept.

    Prefect's ``FlowRunInput`` model refuses such a key, so its callers catch
    ``pydantic.ValidationError``; build one with :meth:`for_key`.
    """

    @classmethod
    def for_key(cls, key: str) -> InvalidInputKey:
        reason = (
            "value must only contain letters, numbers, dashes, underscores and periods "
            "(1-200 characters)"
        )
        error = InitErrorDetails(
            type="value_error", loc=("key",), input=key, ctx={"error": ValueError(reason)}
        )
        return cls.from_exception_data("FlowRunInput", [error])


class ObjectAlreadyExists(FlowbusError):
    """Raised when creating something under a name or key that is taken."""


class InputKeyExists(ObjectAlreadyExists):
    """Raised when creating a flow run input under a key the run already has."""


class PayloadTooLarge(FlowbusError):
    """Raised when an encoded payload exceeds ``max_payload_bytes``."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} bytes encoded; the limit is {limit} bytes")


class SerializationError(FlowbusError):
    """Raised when a value cannot be encoded (e.g. an arbitrary object without pickle opt-in)."""


class MalformedEntry(FlowbusError):
    """Raised when a stream entry or hash read from Redis is not in flowbus's format."""

    def __init__(self, what: str, detail: str, fields: dict[str, Any] | None = None) -> None:
        self.what = what
        self.detail = detail
        self.fields = fields or {}
        super().__init__(f"Malformed {what}: {detail}")


class FlowRunCancelled(FlowbusError):
    """Raised inside a flow whose run was cancelled while it waited (e.g. paused)."""


class ClientNotOpen(FlowbusError):
    """Raised when a client is used outside ``async with get_client() as client:``."""


class MissingContext(FlowbusError, RuntimeError):
    """Raised when a call that needs a running flow or task is made outside one."""


class PausedRun(FlowbusError):
    """Raised by ``State.result()`` of a run that is paused or suspended (as in Prefect)."""


class CancelledRun(FlowbusError):
    """Raised by ``State.result()`` of a cancelled run that holds no exception."""


class CrashedRun(FlowbusError):
    """Raised by ``State.result()`` of a crashed run that holds no exception."""


class FailedRun(FlowbusError):
    """Raised by ``State.result()`` of a failed run that holds no exception."""


class UnfinishedRun(FlowbusError):
    """Raised by ``State.result()`` of a run that has not finished."""


class NonDeterminismError(FlowbusError):
    """Raised when a re-run reaches a pause key that fired for another input type: the flow's
    pauses no longer come in the order they did (give them explicit keys)."""

    def __init__(self, key: str, fired_with: str, now: str) -> None:
        self.key = key
        self.fired_with = fired_with
        self.now = now
        super().__init__(
            f"Pause key {key!r} fired with input type {fired_with}, but this run now waits "
            f"there for {now}: the flow's pauses changed order (pass key= to pin them)"
        )


#: Prefect's names of flowbus's classes.
PrefectException = FlowbusError
MissingContextError = MissingContext
FlowWaitTimeout = FlowRunWaitTimeout
TaskRunTimeoutError = TaskRunTimeout


class Pause(BaseException):
    """Raised inside a flow to leave its process while the run stays suspended.

    A ``BaseException`` so that a user's ``except Exception`` cannot swallow it; only the
    flow engine catches it.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        super().__init__(f"Flow run suspended ({state.name})")
