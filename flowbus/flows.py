"""``@flow``: functions whose calls become flow runs recorded and orchestrated in Redis."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import update_wrapper
from typing import Any, Generic, Literal, ParamSpec, TypeVar, get_type_hints, overload
from uuid import UUID

from pydantic import ConfigDict, create_model, validate_call
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from flowbus._core.bridge import background_loop, in_async_context, run_blocking, run_loop, submit
from flowbus._core.codec import Serializer
from flowbus._core.options import IGNORED_FLOW_OPTIONS, FlowOptions, Hook, options_from
from flowbus._engine.engine import run_new_flow
from flowbus._redis.runtime import get_runtime
from flowbus.flow_engine import outcome
from flowbus.serving import RunnerDeployment, serve, to_deployment
from flowbus.states import State

logger = logging.getLogger("flowbus.flows")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Flows defined in this process by name; a worker runs only these.
registry: dict[str, Flow[..., Any]] = {}


class Flow(Generic[P, R]):
    """A flow; calling it creates a flow run and executes it in this process."""

    def __init__(self, fn: Callable[P, R], options: FlowOptions | None = None) -> None:
        self.fn = fn
        self.options = options = options or FlowOptions()
        self.name = options.name or fn.__name__.replace("_", "-")
        self.description = options.description or inspect.getdoc(fn)
        self.version = options.version
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._body: Callable[..., Any] = (
            validate_call(config=ConfigDict(arbitrary_types_allowed=True))(fn)
            if options.validate_parameters
            else fn
        )
        update_wrapper(self, fn)
        registry[self.name] = self

    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults left out, as Prefect stores them)."""
        return dict(self._signature.bind(*args, **kwargs).arguments)

    def call_body(self, parameters: Mapping[str, Any]) -> Any:
        """Call the function with stored parameters (validated into the annotated types)."""
        return self._body(**parameters)

    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State]: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    # (a flow's own parameter could be named return_state: mypy cannot rule that out)
    def __call__(  # type: ignore[misc]
        self, *args: Any, return_state: bool = False, **kwargs: Any
    ) -> Any:
        """Run the flow: its value (or final ``State``); awaitable for an async flow."""
        parameters = self.bind(*args, **kwargs)
        if self.is_async:
            return self._run(parameters, return_state)
        loop = run_loop.get()
        if loop is not None and in_async_context():
            # a sync subflow called on its parent's loop: run it on another loop and block
            _warn_blocking(self.name)
            return submit(background_loop(), self._run(parameters, return_state)).result()
        return run_blocking(self._run, parameters, return_state)

    async def _run(self, parameters: Mapping[str, Any], return_state: bool) -> Any:
        state = await run_new_flow(self, parameters)
        return outcome(state, "state" if return_state else "result")

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy with some options changed (the keywords of :func:`flow`)."""
        return Flow(self.fn, options_from(FlowOptions, options, IGNORED_FLOW_OPTIONS, self.options))

    def to_deployment(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        queue: str | None = None,
        **ignored: Any,
    ) -> RunnerDeployment:
        """A deployment of this flow for ``flowbus.serve(...)`` (Prefect's other keywords, such
        as schedules, are accepted and warn once that they are ignored)."""
        return to_deployment(self, name, parameters, queue, **ignored)

    def serve(
        self,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        queue: str | None = None,
        print_starting_message: bool = True,
        limit: int | None = None,
        **ignored: Any,
    ) -> None:
        """Register a deployment of this flow and run its runs in this process until
        interrupted, printing how to trigger one (``flowbus run FLOW/NAME``)."""
        deployment = to_deployment(self, name or self.name, parameters, queue, **ignored)
        serve(deployment, print_starting_message=print_starting_message, limit=limit)

    def deploy(
        self, name: str, queue: str = "default", parameters: Mapping[str, Any] | None = None
    ) -> Any:
        """Register a deployment of this flow; returns its id (awaitable from async code)."""
        if in_async_context():
            return self.adeploy(name, queue, parameters)
        return run_blocking(self.adeploy, name, queue, parameters)

    async def adeploy(
        self, name: str, queue: str = "default", parameters: Mapping[str, Any] | None = None
    ) -> UUID:
        """Register a deployment of this flow and return its id."""
        runtime = await get_runtime()
        deployment = await runtime.deployments.create(
            self.name,
            name,
            queue=queue,
            parameters=parameters,
            parameter_schema=parameter_schema(self.fn),
        )
        return deployment.id


def _warn_blocking(name: str) -> None:
    """Once per flow: a sync call from async code holds its event loop until it returns (the
    process's heartbeat runs apart, so its runs are not taken over meanwhile)."""
    if name not in _warned:
        _warned.add(name)
        logger.warning(
            "Sync flow %r was called from async code: its event loop waits until it returns; "
            "make it async, or call it from a thread (anyio.to_thread.run_sync)",
            name,
        )


#: Flows whose blocking call from async code was warned about.
_warned: set[str] = set()


def parameter_schema(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The JSON Schema of ``fn``'s parameters (``None`` if its annotations cannot be read)."""
    try:
        hints = get_type_hints(fn)
    except Exception:  # an annotation naming what its module cannot import
        return None
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
        elif param.kind is not param.VAR_POSITIONAL:
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints.get(param.name, Any), default)
    try:
        model = create_model(
            "Parameters", __config__=ConfigDict(extra=extra, arbitrary_types_allowed=True), **fields
        )
        schema: dict[str, Any] = model.model_json_schema()
    except (PydanticUserError, PydanticSchemaGenerationError, TypeError, ValueError):
        return None
    return schema


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    serializer: Serializer = "msgpack",
    description: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[[], str] | None = None,
    log_prints: bool | None = None,
    persist_result: bool | None = None,
    on_completion: Sequence[Hook] | None = None,
    on_failure: Sequence[Hook] | None = None,
    on_cancellation: Sequence[Hook] | None = None,
    on_crashed: Sequence[Hook] | None = None,
    on_running: Sequence[Hook] | None = None,
    **ignored: Any,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a flow; usable bare (``@flow``) or with options (``@flow(retries=1)``).

    Every keyword of Prefect 3's ``@flow`` is accepted; those that mean nothing here
    (``task_runner``, ``result_storage``…) warn once that they are ignored.
    """
    if fn is not None:
        return Flow(fn, options_from(FlowOptions, options, IGNORED_FLOW_OPTIONS))
    chosen = options_from(FlowOptions, options, IGNORED_FLOW_OPTIONS)
    return lambda f: Flow(f, chosen)
