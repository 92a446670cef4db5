"""Flow runs and deployments as read from Redis."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field

from flowbus.states import State, StateType, now


class FlowRun(BaseModel):
    """One execution of a flow: identity, parameters and current state."""

    id: UUID
    name: str
    flow_name: str
    queue: str
    deployment_id: UUID | None = None
    parent_flow_run_id: UUID | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    state: State
    run_count: int = 0
    created: datetime = Field(default_factory=now)

    @property
    def state_type(self) -> str:
        return self.state.type.value

    @property
    def state_name(self) -> str:
        return self.state.name


class Deployment(BaseModel):
    """A named registration of a flow to a queue, so workers can (re)start its runs."""

    id: UUID
    name: str
    flow_name: str
    queue: str = "default"
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: JSON Schema of the flow's parameters when it was registered (``None``: not known).
    parameter_openapi_schema: dict[str, Any] | None = None
    created: datetime = Field(default_factory=now)

    @property
    def full_name(self) -> str:
        """``flow-name/deployment-name``, accepted wherever a deployment id is."""
        return f"{self.flow_name}/{self.name}"


class FlowRunInput(BaseModel):
    """One input of a run: a sent message, a created input or a pause's schema/description."""

    id: UUID = Field(default_factory=uuid4)
    created: datetime = Field(default_factory=now)
    flow_run_id: UUID
    key: str
    #: The value as JSON text.
    value: str
    sender: str | None = None

    @property
    def decoded_value(self) -> Any:
        """The value parsed from JSON."""
        return json.loads(self.value)


class TaskRun(BaseModel):
    """One call of a task inside a flow run, as the state hooks of a task see it."""

    id: UUID | None = None
    name: str
    task_key: str
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    #: Known for a task run read back (``read_task_runs``): always COMPLETED there.
    state: State | None = None

    @property
    def state_type(self) -> StateType | None:
        return None if self.state is None else self.state.type
