"""Prefect's ``prefect.client.schemas.objects`` names for flowbus's records."""

from flowbus.models import Deployment, FlowRun, FlowRunInput, TaskRun
from flowbus.states import State, StateDetails, StateType

__all__ = [
    "Deployment",
    "FlowRun",
    "FlowRunInput",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
]
