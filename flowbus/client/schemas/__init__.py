"""Prefect's ``prefect.client.schemas`` names for flowbus's records."""

from flowbus.client.schemas.objects import (
    Deployment,
    FlowRun,
    FlowRunInput,
    State,
    StateDetails,
    StateType,
)
from flowbus.client.schemas.responses import OrchestrationResult, SetStateStatus

__all__ = [
    "Deployment",
    "FlowRun",
    "FlowRunInput",
    "OrchestrationResult",
    "SetStateStatus",
    "State",
    "StateDetails",
    "StateType",
]
