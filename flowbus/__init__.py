"""flowbus: Prefect-style flow runs, event-driven on Redis Streams."""

from flowbus.client import FlowbusClient, get_client
from flowbus.context import FlowRunContext, TaskRunContext, get_run_context, get_run_logger
from flowbus.deployments import arun_deployment, run_deployment
from flowbus.flow_runs import (
    apause_flow_run,
    aresume_flow_run,
    asuspend_flow_run,
    await_for_flow_run,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
    wait_for_flow_run,
)
from flowbus.flows import Flow, flow
from flowbus.futures import TaskRunFuture, TaskRunFutureList, unmapped
from flowbus.input.messages import asend_input, receive_input, send_input
from flowbus.input.run_input import RunInput, RunInputMetadata
from flowbus.models import Deployment, FlowRun
from flowbus.serving import serve
from flowbus.sleep import asleep_for, asleep_until, sleep_for, sleep_until
from flowbus.states import (
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    State,
    StateDetails,
    StateType,
    Suspended,
)
from flowbus.tasks import Task, task

__all__ = [
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Deployment",
    "Failed",
    "Flow",
    "FlowRun",
    "FlowRunContext",
    "FlowbusClient",
    "Paused",
    "Pending",
    "RunInput",
    "RunInputMetadata",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "Suspended",
    "Task",
    "TaskRunContext",
    "TaskRunFuture",
    "TaskRunFutureList",
    "apause_flow_run",
    "asend_input",
    "asleep_for",
    "asleep_until",
    "aresume_flow_run",
    "arun_deployment",
    "asuspend_flow_run",
    "await_for_flow_run",
    "flow",
    "get_client",
    "get_run_context",
    "get_run_logger",
    "pause_flow_run",
    "receive_input",
    "resume_flow_run",
    "run_deployment",
    "send_input",
    "serve",
    "sleep_for",
    "sleep_until",
    "suspend_flow_run",
    "task",
    "unmapped",
    "wait_for_flow_run",
]


def _show_public_home() -> None:
    # names implemented in private layers (flowbus._engine, flowbus._redis…) present
    # themselves as flowbus.X in reprs, tracebacks and docs
    for name in __all__:
        value = globals()[name]
        if getattr(value, "__module__", "").startswith("flowbus._"):
            value.__module__ = __name__


_show_public_home()
