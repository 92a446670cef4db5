"""What a state proposal returns (``prefect.client.schemas.responses``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from flowbus.states import State


class SetStateStatus(StrEnum):
    """Whether the rules took a proposed state."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ABORT = "ABORT"
    WAIT = "WAIT"


class StateDetails(BaseModel):
    """Why: ``reason`` is set when a proposal was refused."""

    type: str = "accept_details"
    reason: str | None = None


class OrchestrationResult(BaseModel):
    """The outcome of a proposal: status, the run's state now, and why."""

    state: State | None = None
    status: SetStateStatus
    details: StateDetails = StateDetails()


__all__ = ["OrchestrationResult", "SetStateStatus", "StateDetails"]
