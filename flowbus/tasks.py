"""``@task``: functions whose results are persisted per flow run and reused on re-runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import cached_property, update_wrapper
from typing import Any, Generic, Literal, ParamSpec, TypeVar, get_type_hints, overload

from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter

from flowbus._core.codec import Serializer, decode, encode
from flowbus._core.options import TaskOptions
from flowbus._engine.context import FlowRunContext, TaskRunContext
from flowbus.futures import TaskRunFuture
from flowbus.states import Completed, Failed, State

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Threads that run submitted tasks, shared by every flow run of the process.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="flowbus-task")


class Task(Generic[P, R]):
    """A unit of work inside a flow; see :func:`task`."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions | None = None) -> None:
        self.fn = fn
        self.options = options = options or TaskOptions()
        self.name = options.name or fn.__name__
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy with some options changed (the keywords of :func:`task`, e.g. ``cache_key=``)."""
        return Task(self.fn, replace(self.options, **options))

    @overload
    def __call__(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State]: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    # (a task's own parameter could be named return_state: mypy cannot rule that out)
    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, **kwargs: Any
    ) -> Any:
        """Run the task inline: its value, or its final ``State`` with ``return_state``.

        An async task returns an awaitable, as an async function does.
        """
        call = _TaskCall(self, args, kwargs)
        if self.is_async:
            return call.run_async(return_state)
        return call.run_sync(return_state)

    def submit(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the task in a worker thread: a future, or the final ``State`` (``return_state``)."""
        call = _TaskCall(self, args, kwargs)
        ctx = contextvars.copy_context()
        if self.is_async:
            future = _executor.submit(ctx.run, lambda: asyncio.run(call.run_async(True)))
        else:
            future = _executor.submit(ctx.run, call.run_sync, True)
        task_future: TaskRunFuture[R] = TaskRunFuture(future, call.key or self.name)
        if return_state:
            task_future.wait()
            return task_future.state
        return task_future

    @cached_property
    def _return_adapter(self) -> TypeAdapter[Any] | None:
        try:
            hint = get_type_hints(self.fn).get("return")
        except NameError:  # an annotation naming a local class: restore without validating
            return None
        if hint is None:
            return None
        try:
            return TypeAdapter(hint)
        except PydanticSchemaGenerationError:  # e.g. a plain class returned with pickle
            return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))

    def restore(self, data: bytes) -> Any:
        """Decode a persisted result back into the annotated return type."""
        value = decode(data, allow_pickle=self.options.serializer == "pickle")
        adapter = self._return_adapter
        return adapter.validate_python(value) if adapter is not None else value


@dataclass(slots=True)
class _Outcome:
    """How one task call ended; a ``State`` is built only when the caller asks for one."""

    value: Any = None
    error: BaseException | None = None
    cached: bool = False

    def state(self) -> State:
        if self.error is not None:
            message = f"Task run encountered an exception {type(self.error).__name__}: {self.error}"
            return Failed(message=message).with_data(self.error)
        return Completed(name="Cached" if self.cached else None).with_data(self.value)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _TaskCall:
    """One call of a task: key assignment, result reuse, retries and persistence."""

    def __init__(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.flow_ctx = FlowRunContext.get()
        self.key: str | None = None
        if self.flow_ctx is not None:
            self.flow_ctx.checkpoint()
            if task.options.cache_key is not None:
                self.key = task.options.cache_key
            elif task.options.cache_key_fn is not None:
                self.key = task.options.cache_key_fn(self.parameters)
            else:
                self.key = self.flow_ctx.next_task_key(task.name)

    @cached_property
    def parameters(self) -> dict[str, Any]:
        """The call's arguments by parameter name (bound only when someone asks)."""
        return self.task.signature.bind_partial(*self.args, **self.kwargs).arguments

    def cached(self) -> _Outcome | None:
        """The outcome of an earlier execution of this call, if its result was persisted."""
        if self.flow_ctx is None or self.key is None:
            return None
        data = self.flow_ctx.results.get(self.key)
        if data is None:
            return None
        return _Outcome(self.task.restore(data), cached=True)

    def succeeded(self, value: Any) -> _Outcome:
        options = self.task.options
        if self.flow_ctx is not None and self.key is not None and options.persist_result:
            try:
                data = encode(
                    value,
                    serializer=options.serializer,
                    limit=self.flow_ctx.runtime.settings.max_payload_bytes,
                    what=f"result of task {self.key!r}",
                )
            except Exception as exc:  # becomes the task's failure
                return _Outcome(error=exc)
            self.flow_ctx.persist(self.key, data)
        return _Outcome(value)

    def enter(self) -> contextvars.Token[TaskRunContext | None] | None:
        if self.flow_ctx is None or self.key is None:
            return None
        return TaskRunContext.var.set(
            TaskRunContext(self.task, self.key, self.flow_ctx, lambda: self.parameters)
        )

    def leave(self, token: contextvars.Token[TaskRunContext | None] | None) -> None:
        if token is not None:
            TaskRunContext.var.reset(token)

    def finish(self, outcome: _Outcome, return_state: bool) -> Any:
        return outcome.state() if return_state else outcome.result()

    def failed(self, error: Exception, attempt: int) -> tuple[_Outcome | None, float]:
        """The outcome of failed attempt ``attempt`` (1 for the first): a failure once no retry
        is left, else ``None`` and the seconds to wait before the next attempt."""
        delay = self.task.options.retry.delay_before(attempt)
        return (_Outcome(error=error), 0.0) if delay is None else (None, delay)

    def run_sync(self, return_state: bool) -> Any:
        outcome, attempt = self.cached(), 0
        while outcome is None:
            attempt += 1
            token = self.enter()
            try:
                outcome = self.succeeded(self.task.fn(*self.args, **self.kwargs))
            except Exception as exc:  # a task failure is a state
                outcome, delay = self.failed(exc, attempt)
                time.sleep(delay)
            finally:
                self.leave(token)
        return self.finish(outcome, return_state)

    async def run_async(self, return_state: bool) -> Any:
        outcome, attempt = self.cached(), 0
        while outcome is None:
            attempt += 1
            token = self.enter()
            try:
                outcome = self.succeeded(await self.task.fn(*self.args, **self.kwargs))
            except Exception as exc:  # a task failure is a state
                outcome, delay = self.failed(exc, attempt)
                await asyncio.sleep(delay)
            finally:
                self.leave(token)
        return self.finish(outcome, return_state)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    cache_key: str | None = None,
    cache_key_fn: Callable[[dict[str, Any]], str] | None = None,
    persist_result: bool = True,
    serializer: Serializer = "msgpack",
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a task; usable bare (``@task``) or with options (``@task(retries=2)``).

    A task's result is persisted under its task-run key (task name + call order in the flow
    run, or ``cache_key`` / ``cache_key_fn``); a re-run of the same flow run returns it
    without running the task again.
    """
    if fn is not None:
        return Task(fn, TaskOptions(**options))
    return lambda f: Task(f, TaskOptions(**options))
