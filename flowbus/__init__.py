"""flowbus: Prefect-style flow runs, event-driven on Redis Streams."""

from flowbus.client import FlowbusClient, get_client
from flowbus.context import FlowRunContext, TaskRunContext, get_run_logger
from flowbus.flows import Flow, flow
from flowbus.futures import TaskRunFuture
from flowbus.models import Deployment, FlowRun
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
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "Suspended",
    "Task",
    "TaskRunContext",
    "TaskRunFuture",
    "flow",
    "get_client",
    "get_run_logger",
    "task",
]
