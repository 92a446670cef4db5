"""``@task``: functions whose results are persisted per flow run and reused on re-runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, update_wrapper
from typing import Any, Generic, Literal, ParamSpec, TypeVar, get_type_hints, overload
from uuid import UUID

import anyio
from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter

from flowbus._core.codec import Serializer, decode, encode
from flowbus._core.options import IGNORED_TASK_OPTIONS, Hook, TaskOptions, options_from
from flowbus._engine.context import FlowRunContext, TaskRunContext, get_run_logger, task_run_id
from flowbus._engine.hooks import call_hooks_sync
from flowbus._engine.run_logs import capture_prints, print_logger
from flowbus.exceptions import TaskRunTimeout, UpstreamTaskError
from flowbus.futures import TaskRunFuture, TaskRunFutureList, mapped_calls
from flowbus.models import TaskRun
from flowbus.states import Completed, Failed, State

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Prefect's reason for a task whose ``wait_for`` did not complete.
_UPSTREAM_FAILED = "Upstream task run did not reach a 'COMPLETED' state."

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
        return Task(self.fn, options_from(TaskOptions, options, IGNORED_TASK_OPTIONS, self.options))

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
    @overload
    def __call__(self, *args: Any, wait_for: Iterable[Any], **kwargs: Any) -> R: ...
    # (a task's own parameter could be named return_state: mypy cannot rule that out)
    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, **kwargs: Any
    ) -> Any:
        """Run the task inline: its value, or its final ``State`` with ``return_state``; after
        the futures or states of ``wait_for`` (a failed one fails this task, as in Prefect).

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

    def map(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> TaskRunFutureList[R]:
        """Submit one run per element of the iterable arguments (``unmapped`` ones are given
        whole to each); the futures come back in order."""
        futures: TaskRunFutureList[R] = TaskRunFutureList()
        for call_args, call_kwargs in mapped_calls(args, kwargs):
            if wait_for is not None:
                call_kwargs["wait_for"] = wait_for
            futures.append(self.submit(*call_args, **call_kwargs))
        return futures

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

    def state(self, **ids: Any) -> State:
        """The final state; ``ids`` (flow_run_id, task_run_id) go into its details."""
        if self.error is not None:
            message = f"Task run encountered an exception {type(self.error).__name__}: {self.error}"
            return Failed(message=message, **ids).with_data(self.error)
        return Completed(name="Cached" if self.cached else None, **ids).with_data(self.value)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _TaskCall:
    """One call of a task: key assignment, result reuse, retries and persistence."""

    def __init__(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.task = task
        self.args = args
        self.wait_for = (
            kwargs.pop("wait_for", None) if "wait_for" not in task.signature.parameters else None
        )
        self.kwargs = kwargs
        self.flow_ctx = FlowRunContext.get()
        self.key: str | None = None
        if self.flow_ctx is not None:
            self.flow_ctx.checkpoint()
            if task.options.cache_key is not None:
                self.key = task.options.cache_key
            elif task.options.cache_key_fn is not None:
                self.key = _cache_key(task.options.cache_key_fn, self.flow_ctx, self.parameters)
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

    def enter(self) -> tuple[contextvars.Token[Any], ...]:
        if self.flow_ctx is None or self.key is None:
            return ()
        token = TaskRunContext.var.set(
            TaskRunContext(self.task, self.key, self.flow_ctx, lambda: self.parameters)
        )
        if not self.task.options.log_prints:
            return (token,)
        capture_prints()
        return token, print_logger.set(get_run_logger())

    def leave(self, tokens: tuple[contextvars.Token[Any], ...]) -> None:
        if len(tokens) > 1:
            print_logger.reset(tokens[1])
        if tokens:
            TaskRunContext.var.reset(tokens[0])

    def finish(self, outcome: _Outcome, return_state: bool) -> Any:
        options = self.task.options
        hooks = options.on_failure if outcome.error is not None else options.on_completion
        if not (return_state or hooks):
            return outcome.result()
        state = outcome.state(**self.ids())
        if hooks:
            call_hooks_sync(hooks, self.task, self.task_run(), state)
        return state if return_state else outcome.result()

    def ids(self) -> dict[str, UUID]:
        if self.flow_ctx is None or self.key is None:
            return {}
        run_id = self.flow_ctx.flow_run.id
        return {"flow_run_id": run_id, "task_run_id": task_run_id(run_id, self.key)}

    def task_run(self) -> TaskRun:
        ids = self.ids()
        key = self.key or self.task.name
        task_id = ids.get("task_run_id")
        run_id = ids.get("flow_run_id")
        return TaskRun(id=task_id, name=key, task_key=key, flow_run_id=run_id, task_run_id=task_id)

    def upstream_failure(self) -> _Outcome | None:
        """Wait for ``wait_for``; a failure if one of them did not complete (as in Prefect)."""
        for upstream in self.wait_for or ():
            if isinstance(upstream, TaskRunFuture):
                upstream.wait()
                upstream = upstream.state
            if isinstance(upstream, State) and not upstream.is_completed():
                return _Outcome(error=UpstreamTaskError(_UPSTREAM_FAILED))
        return None

    def call_sync(self) -> Any:
        """The function's value, in this thread or (with a timeout) in a worker thread."""
        timeout = self.task.options.timeout_seconds
        if timeout is None:
            return self.task.fn(*self.args, **self.kwargs)
        ctx = contextvars.copy_context()
        future = _executor.submit(ctx.run, self.task.fn, *self.args, **self.kwargs)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TaskRunTimeout(f"Task run exceeded timeout of {timeout} second(s)") from None

    async def call_async(self) -> Any:
        timeout = self.task.options.timeout_seconds
        if timeout is None:
            return await self.task.fn(*self.args, **self.kwargs)
        with anyio.move_on_after(timeout):
            return await self.task.fn(*self.args, **self.kwargs)
        raise TaskRunTimeout(f"Task run exceeded timeout of {timeout} second(s)")

    def failed(self, error: Exception, attempt: int) -> tuple[_Outcome | None, float]:
        """The outcome of failed attempt ``attempt`` (1 for the first): a failure once no retry
        is left, else ``None`` and the seconds to wait before the next attempt."""
        delay = self.task.options.retry.delay_before(attempt)
        return (_Outcome(error=error), 0.0) if delay is None else (None, delay)

    def run_sync(self, return_state: bool) -> Any:
        outcome, attempt = self.cached() or self.upstream_failure(), 0
        while outcome is None:
            attempt += 1
            token = self.enter()
            try:
                outcome = self.succeeded(self.call_sync())
            except Exception as exc:  # a task failure is a state
                outcome, delay = self.failed(exc, attempt)
                time.sleep(delay)
            finally:
                self.leave(token)
        return self.finish(outcome, return_state)

    async def run_async(self, return_state: bool) -> Any:
        outcome = self.cached()
        if outcome is None and self.wait_for:  # waiting on futures blocks: off the loop
            outcome = await anyio.to_thread.run_sync(self.upstream_failure)
        attempt = 0
        while outcome is None:
            attempt += 1
            token = self.enter()
            try:
                outcome = self.succeeded(await self.call_async())
            except Exception as exc:  # a task failure is a state
                outcome, delay = self.failed(exc, attempt)
                await asyncio.sleep(delay)
            finally:
                self.leave(token)
        return self.finish(outcome, return_state)


def _cache_key(fn: Callable[..., str], ctx: FlowRunContext, parameters: dict[str, Any]) -> str:
    """``fn(parameters)``, or ``fn(context, parameters)`` for Prefect's two-argument form."""
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        return fn(parameters)
    return fn(ctx, parameters)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    cache_key: str | None = None,
    cache_key_fn: Callable[..., str] | None = None,
    persist_result: bool = True,
    serializer: Serializer = "msgpack",
    description: str | None = None,
    version: str | None = None,
    tags: Sequence[str] = (),
    timeout_seconds: float | None = None,
    log_prints: bool | None = None,
    on_completion: Sequence[Hook] | None = None,
    on_failure: Sequence[Hook] | None = None,
    **ignored: Any,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a task; usable bare (``@task``) or with options (``@task(retries=2)``).

    A task's result is persisted under its task-run key (task name + call order in the flow
    run, or ``cache_key`` / ``cache_key_fn``); a re-run of the same flow run returns it
    without running the task again. Every keyword of Prefect 3's ``@task`` is accepted; those
    that mean nothing here warn once that they are ignored.
    """
    if fn is not None:
        return Task(fn, options_from(TaskOptions, options, IGNORED_TASK_OPTIONS))
    chosen = options_from(TaskOptions, options, IGNORED_TASK_OPTIONS)
    return lambda f: Task(f, chosen)
