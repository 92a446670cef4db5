"""Run a flow, or a run of it created elsewhere, in this process (``prefect.flow_engine``).

``run_flow_async(flow, flow_run=run)`` executes an existing run here, as a worker would: a
run the client created, or a suspended run after its resume (it goes on from its fired
pause keys and persisted task results). Without ``flow_run`` it is a plain call of the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from flowbus._core.bridge import run_blocking
from flowbus._engine.engine import FlowEngine, run_new_flow
from flowbus._engine.run_logs import ensure_console_logs
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import Pause
from flowbus.models import FlowRun
from flowbus.states import State

if TYPE_CHECKING:
    from flowbus.flows import Flow

ReturnType = Literal["result", "state"]


async def run_flow_async(
    flow: Flow[..., Any],
    flow_run: FlowRun | None = None,
    parameters: Mapping[str, Any] | None = None,
    wait_for: Any = None,
    return_type: ReturnType = "result",
) -> Any:
    """Execute ``flow_run`` (else a new run of ``flow``) here; its result, or its final state
    with ``return_type="state"``. ``parameters`` default to the run's own; ``wait_for`` is
    accepted for Prefect compatibility (nothing upstream exists outside a flow)."""
    if flow_run is None:
        state = await run_new_flow(flow, parameters or {})
    else:
        runtime = await get_runtime()
        ensure_console_logs(runtime.settings.logging_level)
        current = await runtime.store.read_run(flow_run.id)  # the caller's copy may be stale
        given = current.parameters if parameters is None else parameters
        state = await FlowEngine(flow, current, runtime).run(given)
    return outcome(state, return_type)


def run_flow_sync(
    flow: Flow[..., Any],
    flow_run: FlowRun | None = None,
    parameters: Mapping[str, Any] | None = None,
    wait_for: Any = None,
    return_type: ReturnType = "result",
) -> Any:
    """:func:`run_flow_async`, blocking until the run ends."""
    return run_blocking(run_flow_async, flow, flow_run, parameters, wait_for, return_type)


def run_flow(
    flow: Flow[..., Any],
    flow_run: FlowRun | None = None,
    parameters: Mapping[str, Any] | None = None,
    wait_for: Any = None,
    return_type: ReturnType = "result",
) -> Any:
    """:func:`run_flow_async` (awaitable) for an async flow, :func:`run_flow_sync` otherwise."""
    run = run_flow_async if flow.is_async else run_flow_sync
    return run(flow, flow_run, parameters, wait_for, return_type)


def outcome(state: State, return_type: ReturnType) -> Any:
    """What a flow call returns: its state, or its value (:class:`Pause` if it suspended, the
    run's error if it failed)."""
    if return_type == "state":
        return state
    if state.is_paused():  # it left this process suspended: Prefect raises Pause here
        raise Pause(state)
    return state.result(_sync=True)


__all__ = ["run_flow", "run_flow_async", "run_flow_sync"]
