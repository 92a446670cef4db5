"""Run contexts: how code inside a flow or task finds its run (``FlowRunContext.get()``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from flowbus._engine.results import ResultWriter
from flowbus.exceptions import FlowRunCancelled, MissingContext, Pause, StaleExecution
from flowbus.models import FlowRun, TaskRun
from flowbus.states import State, Suspended

if TYPE_CHECKING:
    from flowbus._redis.runtime import Runtime
    from flowbus.flows import Flow
    from flowbus.tasks import Task

_flow_ctx: ContextVar[FlowRunContext | None] = ContextVar("flowbus_flow_run", default=None)
_task_ctx: ContextVar[TaskRunContext | None] = ContextVar("flowbus_task_run", default=None)


@dataclass(eq=False, slots=True)
class FlowRunContext:
    """The flow run being executed, with what its tasks and pauses need."""

    flow: Flow[..., Any]
    flow_run: FlowRun
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    #: Encoded results of tasks completed by earlier executions of this run, by task-run key.
    results: dict[str, bytes] = field(default_factory=dict)
    task_counts: Counter[str] = field(default_factory=Counter)
    pause_count: int = 0
    #: Set from the queue's control stream: "suspend", "cancel" or "fence" (a newer execution
    #: took the run over), acted on at a task boundary.
    interrupt: str | None = None
    #: This execution's fencing token (the run count its start wrote), carried by its writes.
    attempt: int | None = None
    #: Told of every state the run's own process moves it to (a worker logs them).
    on_transition: Callable[[State], None] | None = None
    #: The key of the pause this process is blocked in, if any.
    paused_key: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: What each ``with`` of this context replaced, restored on leaving it.
    _tokens: list[Token[FlowRunContext | None]] = field(default_factory=list, repr=False)
    writer: ResultWriter = field(init=False)

    var: ClassVar[ContextVar[FlowRunContext | None]] = _flow_ctx

    @classmethod
    def get(cls) -> FlowRunContext | None:
        return _flow_ctx.get()

    @classmethod
    def model_construct(cls, **values: Any) -> FlowRunContext:
        """A context holding only ``values`` (Prefect's unvalidated constructor), entered with
        ``with``: code outside a run then acts for that run, e.g. a test's
        ``with FlowRunContext.model_construct(flow_run=run): send_input(...)``. Fields left
        out are missing (reading them fails); ``client`` is accepted, as in Prefect."""
        values.pop("client", None)
        ctx = cls.__new__(cls)
        for f in fields(cls):
            if f.name in values:
                setattr(ctx, f.name, values.pop(f.name))
            elif f.default_factory is not MISSING:
                setattr(ctx, f.name, f.default_factory())
            elif f.default is not MISSING:
                setattr(ctx, f.name, f.default)
        if values:
            raise TypeError(f"FlowRunContext has no field(s) {', '.join(sorted(values))}")
        return ctx

    def __enter__(self) -> FlowRunContext:
        self._tokens.append(_flow_ctx.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _flow_ctx.reset(self._tokens.pop())

    @classmethod
    def current(cls) -> FlowRunContext:
        """The context of the flow run this code executes in; :class:`MissingContext` outside one.

        Unlike :meth:`get` (Prefect's, which returns ``None`` outside a run), its result needs
        no ``None`` check.
        """
        return cls.require("FlowRunContext.current()")

    @classmethod
    def require(cls, what: str) -> FlowRunContext:
        ctx = _flow_ctx.get()
        if ctx is None:
            raise MissingContext(f"{what} must be called inside a flow run")
        return ctx

    def next_task_key(self, task_name: str) -> str:
        """Deterministic key of the next call of ``task_name``: name + call order."""
        with self._lock:
            self.task_counts[task_name] += 1
            return f"{task_name}-{self.task_counts[task_name]}"

    def transitioned(self, state: State) -> None:
        if self.on_transition is not None:
            self.on_transition(state)

    def checkpoint(self) -> None:
        """A task boundary: leave the run here if a suspension or cancellation was asked."""
        if self.interrupt == "suspend":
            raise Pause(Suspended(message="Suspended at a task boundary"))
        if self.interrupt == "cancel":
            raise FlowRunCancelled(f"Flow run {self.flow_run.id} was cancelled")
        if self.interrupt == "fence":
            raise StaleExecution(
                self.flow_run.id, f"execution {self.attempt} was superseded by a newer one"
            )

    def next_pause_key(self) -> str:
        """Positional key of the next pause ("1", "2", …), as in Prefect."""
        with self._lock:
            self.pause_count += 1
            return str(self.pause_count)

    def persist(self, task_key: str, data: bytes) -> None:
        """Save a task result (batched, see :mod:`flowbus._engine.results`)."""
        self.results[task_key] = data
        self.writer.persist(task_key, data)

    async def flush(self) -> None:
        """Wait until every task result persisted so far is in Redis."""
        await self.writer.flush()

    def __post_init__(self) -> None:
        self.writer = ResultWriter(
            self.runtime.store, self.flow_run.id, self.loop, self.attempt, self._fenced
        )

    def _fenced(self) -> None:
        """A write was refused: a newer execution holds the run; stop at the next boundary."""
        self.interrupt = "fence"

    @property
    def parameters(self) -> dict[str, Any]:
        """The run's parameters, as Prefect's context has them."""
        return self.flow_run.parameters

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            logging.getLogger("flowbus.flow_runs"),
            {"flow_run_id": str(self.flow_run.id), "flow_name": self.flow_run.flow_name},
        )


@dataclass(eq=False)
class TaskRunContext:
    """The task run being executed."""

    task: Task[..., Any]
    task_run_key: str
    flow_run_context: FlowRunContext
    #: The call's arguments, bound by parameter name on first read (most tasks never ask).
    bind: Callable[[], dict[str, Any]] = field(repr=False)

    @cached_property
    def parameters(self) -> dict[str, Any]:
        return self.bind()

    @property
    def task_run(self) -> TaskRun:
        """The task run, as Prefect's context names it (``get_run_context().task_run``)."""
        run_id = self.flow_run_context.flow_run.id
        key = self.task_run_key
        task_id = task_run_id(run_id, key)
        return TaskRun(id=task_id, name=key, task_key=key, flow_run_id=run_id, task_run_id=task_id)

    @classmethod
    def get(cls) -> TaskRunContext | None:
        return _task_ctx.get()

    var: ClassVar[ContextVar[TaskRunContext | None]] = _task_ctx


def task_run_id(flow_run_id: UUID, task_key: str) -> UUID:
    """A task run's id: the same for the same call of the same flow run, on every re-run."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowbus:{flow_run_id}:task:{task_key}")


def get_run_logger() -> logging.LoggerAdapter[logging.Logger]:
    """A logger that tags each record with the current flow run (and task run)."""
    task_ctx = TaskRunContext.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else FlowRunContext.get()
    if flow_ctx is None:
        raise MissingContext("get_run_logger() must be called inside a flow or task run")
    extra: dict[str, str] = {
        "flow_run_id": str(flow_ctx.flow_run.id),
        "flow_name": flow_ctx.flow_run.flow_name,
        "flow_run_name": flow_ctx.flow_run.name,
    }
    name = "flowbus.flow_runs"
    if task_ctx:
        extra["task_run_key"] = task_ctx.task_run_key
        extra["task_run_name"] = task_ctx.task_run_key
        name = "flowbus.task_runs"
    return logging.LoggerAdapter(logging.getLogger(name), extra)
