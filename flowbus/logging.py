"""Run loggers under Prefect's import path (``prefect.logging`` → ``flowbus.logging``)."""

from flowbus._engine.context import get_run_logger

__all__ = ["get_run_logger"]
