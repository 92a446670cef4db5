"""The flow engine: takes one flow run through its states, in-process or on a worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from flowbus._core.bridge import run_loop
from flowbus._core.codec import encode
from flowbus._core.supervisor import spawn
from flowbus._engine.context import FlowRunContext
from flowbus._engine.hooks import call_hooks, has_final_hooks, hooks_for
from flowbus._engine.run_logs import (
    LifecycleLog,
    capture_prints,
    ensure_console_logs,
    print_logger,
)
from flowbus._engine.suspension import complete_suspension
from flowbus._redis.pauses import pause_view
from flowbus._redis.replies import Reply, Status
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus._redis.store import Delivery
from flowbus._redis.waiters import Event
from flowbus.exceptions import (
    FlowPauseTimeout,
    FlowRunCancelled,
    FlowRunNotFound,
    FlowRunTimeout,
    InvalidStateTransition,
    Pause,
    StaleExecution,
)
from flowbus.models import FlowRun
from flowbus.states import (
    Cancelled,
    Completed,
    Failed,
    Pending,
    Running,
    Scheduled,
    State,
    StateType,
)

if TYPE_CHECKING:
    from flowbus.flows import Flow

logger = LifecycleLog(logging.getLogger("flowbus.engine"))

#: What a run holder must do, by the state (name or kind) it finds its run in.
_REQUESTS = {"Suspending": "suspend", "CANCELLING": "cancel", "CANCELLED": "cancel"}


#: The end of a failure's traceback kept with its FAILED state (characters).
_TRACEBACK_CHARS = 20_000


def failure_message(exc: BaseException) -> str:
    return f"Flow run encountered an exception: {type(exc).__name__}: {exc}"


class FlowEngine:
    """Runs one flow run: RUNNING, the body (with retries and timeout), then a final state."""

    __slots__ = (
        "acked",
        "attempt",
        "ctx",
        "delivery",
        "flow",
        "flow_run",
        "on_code_done",
        "on_transition",
        "runtime",
        "store",
    )

    def __init__(
        self,
        flow: Flow[..., Any],
        flow_run: FlowRun,
        runtime: Runtime,
        delivery: Delivery | None = None,
        on_transition: Callable[[State], None] | None = None,
        on_code_done: Callable[[], None] | None = None,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.runtime = runtime
        self.store = runtime.store
        self.ctx: FlowRunContext | None = None
        #: The worker's queue delivery, acknowledged by the final transition itself.
        self.delivery = delivery
        self.acked = False
        #: Told of every state this engine (or a pause in its run) moves the run to.
        self.on_transition = on_transition
        #: Told once the run's code is done, as its final state is written (never for a flow
        #: with final-state hooks: they run after it): a worker frees the run's slot then.
        self.on_code_done = on_code_done
        #: This execution's fencing token: the run count its start wrote (a run handed over
        #: RUNNING was started by the claim just made), carried by every write it makes.
        self.attempt: int | None = flow_run.run_count if flow_run.state.is_running() else None

    async def propose(self, state: State, **options: Any) -> State:
        """Propose ``state``; :class:`InvalidStateTransition` if the rules refuse it
        (:class:`StaleExecution` if a newer execution holds the run)."""
        reply = await self.store.set_state(self.flow_run.id, state, attempt=self.attempt, **options)
        return self._accepted(reply, state)

    async def start(self) -> None:
        """SCHEDULED/PENDING → RUNNING in one step; refused if anyone else started the run."""
        keys = await self.store.run_keys(self.flow_run.id)
        scheduled = self.flow_run.state.is_scheduled()
        holder, first_lease = self.store.holding(keys)
        reply = await self.store.scripts.start_run(keys, holder=holder, first_lease=first_lease)
        if scheduled and reply.accepted:
            self._tell(Pending())
        self._accepted(reply, Running())
        self.attempt = reply.run_count

    def _accepted(self, reply: Reply, state: State) -> State:
        if reply.status is Status.STALE:
            raise StaleExecution(self.flow_run.id, reply.detail)
        if not reply.accepted:
            current = State(type=StateType(reply.state_type), name=reply.state_name)
            raise InvalidStateTransition(self.flow_run.id, reply.detail, current)
        self.flow_run.run_count = reply.run_count
        self.flow_run.state = state
        self._tell(state)
        return state

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The run's own logger, made when used (a worker logs nothing per run; a paused run
        holds no adapter)."""
        return run_logger(self.flow_run)

    def _tell(self, state: State) -> None:
        if self.on_transition is not None:
            self.on_transition(state)

    async def run(self, parameters: Mapping[str, Any]) -> State:
        """Execute until a final state (or a suspension) and return it, result attached.

        The run listens to its queue's control stream meanwhile, so a cancellation (or, for a
        deployed run, a suspension) asked from outside reaches it at its next task boundary.
        """
        keys = await self.store.run_keys(self.flow_run.id)
        waiters = self.runtime.waiters
        level = logging.DEBUG if self.delivery else logging.INFO  # a worker logs its own
        if logging.getLogger("flowbus.flow_runs").isEnabledFor(level):
            self.log.log(
                level, "Beginning flow run %r for flow %r", self.flow_run.name, self.flow.name
            )
        if self.flow.options.on_running:
            await call_hooks(self.flow.options.on_running, self.flow, self.flow_run, Running())
        async with waiters.subscribe(
            keys.queue, keys.run_id, control=True, callback=self._interrupt
        ):
            state = await self._attempts(parameters)
        if state.state_details.flow_run_id != self.flow_run.id:  # as in Prefect: it names its run
            details = state.state_details.model_copy(update={"flow_run_id": self.flow_run.id})
            state.state_details = details
        if logging.getLogger("flowbus.flow_runs").isEnabledFor(level):
            self.log.log(level, "Finished in state %s", state_repr(state))
        await call_hooks(hooks_for(self.flow.options, state), self.flow, self.flow_run, state)
        return state

    def _interrupt(self, event: Event) -> None:
        """A request from the control stream, acted on at the run's next task boundary.

        ``None`` (the watcher may have missed events) has the run's state read for one.
        """
        if event is None:
            spawn(self._reread_requests(), name=f"re-read of run {self.flow_run.id}")
        elif self.ctx is not None and event.action in ("cancel", "suspend", "fence"):
            # not "judge"/"verdict": those are for resumes (flowbus/input/judging.py)
            if event.action == "fence" and (self.attempt is None or event.run_count < self.attempt):
                return  # the takeover that started this very execution
            self.ctx.interrupt = event.action

    async def _reread_requests(self) -> None:
        with contextlib.suppress(FlowRunNotFound, RedisError):
            view = await pause_view(self.store, self.flow_run.id)
            action = _REQUESTS.get(view.state_name) or _REQUESTS.get(view.state_type)
            if action and self.ctx is not None:
                self.ctx.interrupt = action

    async def _attempts(self, parameters: Mapping[str, Any]) -> State:
        attempt = 0
        if not self.flow_run.state.is_running():
            await self.start()
        while True:
            loop = asyncio.get_running_loop()
            ctx = FlowRunContext(self.flow, self.flow_run, self.runtime, loop, attempt=self.attempt)
            ctx.on_transition = self.on_transition
            self.ctx = ctx
            if self.flow_run.run_count > 1:
                ctx.results = await self.store.load_task_results(self.flow_run.id)
            started = time.monotonic()
            try:
                value = await self._call(ctx, parameters)
            except Pause as pause:
                await ctx.flush()
                if ctx.interrupt == "suspend":
                    await complete_suspension(self.runtime, self.flow_run.id, self.attempt)
                self._tell(pause.state)
                return pause.state
            except (FlowRunCancelled, FlowPauseTimeout) as exc:
                await ctx.flush()
                return (await self._settle_interrupted()).with_data(exc)
            except StaleExecution:
                raise  # a newer execution holds the run: nothing more to write
            except Exception as exc:
                await ctx.flush()
                attempt += 1
                delay = self.flow.options.retry.delay_before(attempt)
                if delay is not None:
                    logger.info("Flow run %s failed (%s); retry %d", self.flow_run.id, exc, attempt)
                    await self.propose(Scheduled(name="AwaitingRetry", message=str(exc)))
                    await anyio.sleep(delay)
                    await self.propose(Running(name="Retrying"))
                    continue
                return await self._fail(exc)
            waiting = await ctx.writer.drain()  # written with the final state
            return await self._complete(value, time.monotonic() - started, waiting)

    async def _call(self, ctx: FlowRunContext, parameters: Mapping[str, Any]) -> Any:
        token = FlowRunContext.var.set(ctx)
        loop_token = run_loop.set(ctx.loop)
        prints = print_logger.set(self.log if self.flow.options.log_prints else None)
        if self.flow.options.log_prints:
            capture_prints()
        try:
            timeout = self.flow.options.timeout_seconds
            if timeout is None:
                return await self._body(parameters)
            with anyio.move_on_after(timeout):
                return await self._body(parameters)
            raise FlowRunTimeout(f"Flow run exceeded timeout of {timeout} second(s)")
        finally:
            print_logger.reset(prints)
            run_loop.reset(loop_token)
            FlowRunContext.var.reset(token)

    def _body(self, parameters: Mapping[str, Any]) -> Awaitable[Any]:
        """The body to await: an async flow's own coroutine (no frame of this method waits
        with it), or a sync flow's call in a worker thread."""
        if self.flow.is_async:
            body: Awaitable[Any] = self.flow.call_body(parameters)
            return body
        context = copy_context()
        return anyio.to_thread.run_sync(
            context.run, self.flow.call_body, parameters, abandon_on_cancel=True
        )

    async def _settle_interrupted(self) -> State:
        """The final state of a run cancelled or timed out from outside its process."""
        if await self.store.attempt_of(self.flow_run.id) not in ("", str(self.attempt)):
            raise StaleExecution(self.flow_run.id, "a newer execution holds the run")
        state = (await self.store.read_run(self.flow_run.id)).state
        if state.is_cancelling():
            return await self.propose(Cancelled(message=state.message))
        return state

    async def _fail(self, exc: BaseException) -> State:
        if isinstance(exc, FlowRunTimeout):
            state = Failed(name="TimedOut", message=str(exc))
        else:
            state = Failed(message=failure_message(exc))
        trace = "".join(traceback.format_exception(exc))[-_TRACEBACK_CHARS:].encode()
        return (await self._finalize(state, result=trace)).with_data(exc)

    async def _complete(self, value: Any, seconds: float, task_results: dict[str, bytes]) -> State:
        try:
            data = encode(
                value,
                serializer=self.flow.options.serializer,
                limit=self.runtime.settings.max_payload_bytes,
                what=f"result of flow {self.flow.name!r}",
            )
        except Exception as exc:
            await self._save(task_results)
            return await self._fail(exc)
        # naming its run from the start: not copied to name it at the end
        state = Completed(message=f"Finished in {seconds:.3f}s", flow_run_id=self.flow_run.id)
        final = await self._finalize(state, result=data, task_results=task_results)
        return final.with_data(value if final.is_completed() else None)

    async def _finalize(
        self,
        state: State,
        result: bytes | None = None,
        task_results: dict[str, bytes] | None = None,
    ) -> State:
        """Write a final state and return the state that stands.

        A run cancelled meanwhile stays cancelled (a CANCELLING one becomes CANCELLED); a run
        asked to suspend that finishes before its next task boundary just finishes.
        """
        suspending = self.ctx is not None and self.ctx.interrupt == "suspend"
        if self.on_code_done is not None and not has_final_hooks(self.flow.options):
            self.on_code_done()
        try:
            await self.propose(
                state,
                result=result,
                expect=None if suspending else StateType.RUNNING,
                ack=self.delivery,
                task_results=task_results,
            )
            self.acked = self.delivery is not None
            return state
        except StaleExecution:
            raise
        except InvalidStateTransition as refused:
            if task_results:  # the run ended otherwise; a retry may still reuse them
                await self._save(task_results)
            if refused.state is not None and refused.state.is_cancelling():
                return await self.propose(Cancelled(message="Cancelled while finishing"))
            if refused.state is None or not refused.state.is_final():
                raise
            return refused.state

    async def _save(self, task_results: dict[str, bytes]) -> None:
        if not await self.store.save_task_results(
            self.flow_run.id, task_results, attempt=self.attempt
        ):
            raise StaleExecution(self.flow_run.id, "a newer execution holds the run")


async def run_new_flow(
    flow: Flow[..., Any], parameters: Mapping[str, Any], *, queue: str = "default"
) -> State:
    """Create a run of ``flow`` and execute it in this process (a plain flow call)."""
    runtime = await get_runtime()
    ensure_console_logs(runtime.settings.logging_level)
    parent = FlowRunContext.get()
    flow_run = await runtime.store.create_run(
        flow.name,
        parameters,
        queue=queue,
        name=flow_run_name(flow.options.flow_run_name, parameters),
        parent_id=parent.flow_run.id if parent else None,
        start=True,
    )
    logger.info("Created flow run %r for flow %r", flow_run.name, flow.name)
    return await FlowEngine(flow, flow_run, runtime).run(parameters)


def flow_run_name(template: str | Callable[[], str] | None, parameters: Mapping[str, Any]) -> Any:
    """A run's name from the flow's ``flow_run_name``: a template of its parameters, or a
    function's answer; ``None`` for the default name."""
    if template is None:
        return None
    return template() if callable(template) else template.format(**parameters)


def state_repr(state: State) -> str:
    """``Completed()``, ``Failed('message')``: a state as Prefect's run logs show it."""
    return f"{state.name}({state.message!r})" if state.message else f"{state.name}()"


def run_logger(flow_run: FlowRun) -> logging.LoggerAdapter[logging.Logger]:
    """The logger of a flow run's own lines (what ``get_run_logger()`` returns in it)."""
    extra = {
        "flow_run_id": str(flow_run.id),
        "flow_name": flow_run.flow_name,
        "flow_run_name": flow_run.name,
    }
    return LifecycleLog(logging.getLogger("flowbus.flow_runs"), extra)
