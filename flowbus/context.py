"""The run context under Prefect's import path (``prefect.context`` → ``flowbus.context``)."""

from flowbus._engine.context import FlowRunContext, TaskRunContext, get_run_logger

__all__ = ["FlowRunContext", "TaskRunContext", "get_run_logger"]
