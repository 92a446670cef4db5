"""The run context under Prefect's import path (``prefect.context`` → ``flowbus.context``)."""

from __future__ import annotations

from flowbus._engine.context import FlowRunContext, TaskRunContext, get_run_logger
from flowbus.exceptions import MissingContext


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The task run's context inside a task, else the flow run's (Prefect's error outside)."""
    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return task_ctx
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContext("No run context available. You are not in a flow or task run context.")


__all__ = ["FlowRunContext", "TaskRunContext", "get_run_context", "get_run_logger"]
