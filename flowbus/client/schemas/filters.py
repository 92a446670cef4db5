"""Prefect-style filters for ``read_flow_runs`` (``prefect.client.schemas.filters``).

Only the criteria flowbus records are offered; each ``matches`` is applied to runs as read.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from flowbus.models import Deployment, FlowRun
from flowbus.states import StateType


class _Any(BaseModel):
    any_: list[str] | None = None

    def accepts(self, value: str | None) -> bool:
        return self.any_ is None or value in self.any_


class _AnyId(BaseModel):
    any_: list[UUID] | None = None
    is_null_: bool | None = None

    def accepts(self, value: UUID | None) -> bool:
        if self.is_null_ is not None and (value is None) != self.is_null_:
            return False
        return self.any_ is None or value in self.any_


class FlowRunFilterId(_AnyId):
    not_any_: list[UUID] | None = None

    def accepts(self, value: UUID | None) -> bool:
        return super().accepts(value) and not (self.not_any_ and value in self.not_any_)


class FlowRunFilterName(_Any):
    like_: str | None = None

    def accepts(self, value: str | None) -> bool:
        return super().accepts(value) and (not self.like_ or self.like_ in (value or ""))


class FlowRunFilterStateType(BaseModel):
    any_: list[StateType] | None = None
    not_any_: list[StateType] | None = None


class FlowRunFilterStateName(_Any):
    not_any_: list[str] | None = None


class FlowRunFilterState(BaseModel):
    type: FlowRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None

    def accepts(self, run: FlowRun) -> bool:
        t = self.type
        if t is not None and t.any_ is not None and run.state.type not in t.any_:
            return False
        if t is not None and t.not_any_ and run.state.type in t.not_any_:
            return False
        n = self.name
        if n is not None and not n.accepts(run.state.name):
            return False
        return not (n is not None and n.not_any_ and run.state.name in n.not_any_)


class FlowRunFilterDeploymentId(_AnyId):
    pass


class FlowRunFilterParentFlowRunId(_AnyId):
    pass


class FlowRunFilter(BaseModel):
    """Criteria on the run itself; all given ones must hold."""

    id: FlowRunFilterId | None = None
    name: FlowRunFilterName | None = None
    state: FlowRunFilterState | None = None
    deployment_id: FlowRunFilterDeploymentId | None = None
    parent_flow_run_id: FlowRunFilterParentFlowRunId | None = None

    def matches(self, run: FlowRun) -> bool:
        checks = (
            self.id is None or self.id.accepts(run.id),
            self.name is None or self.name.accepts(run.name),
            self.state is None or self.state.accepts(run),
            self.deployment_id is None or self.deployment_id.accepts(run.deployment_id),
            self.parent_flow_run_id is None
            or self.parent_flow_run_id.accepts(run.parent_flow_run_id),
        )
        return all(checks)


class FlowFilterName(_Any):
    pass


class FlowFilter(BaseModel):
    """Criteria on the run's flow."""

    name: FlowFilterName | None = None

    def matches(self, run: FlowRun) -> bool:
        return self.name is None or self.name.accepts(run.flow_name)


class DeploymentFilterId(_AnyId):
    pass


class DeploymentFilterName(_Any):
    pass


class DeploymentFilter(BaseModel):
    """Criteria on the run's deployment (its id, or its name without the flow's)."""

    id: DeploymentFilterId | None = None
    name: DeploymentFilterName | None = None

    def matches(self, run: FlowRun, deployment: Deployment | None) -> bool:
        if self.id is not None and not self.id.accepts(run.deployment_id):
            return False
        return self.name is None or self.name.accepts(deployment.name if deployment else None)


class WorkQueueFilterName(_Any):
    pass


class WorkQueueFilter(BaseModel):
    """Criteria on the run's queue (Prefect's work queue)."""

    name: WorkQueueFilterName | None = None

    def matches(self, run: FlowRun) -> bool:
        return self.name is None or self.name.accepts(run.queue)


__all__ = [
    "DeploymentFilter",
    "DeploymentFilterId",
    "DeploymentFilterName",
    "FlowFilter",
    "FlowFilterName",
    "FlowRunFilter",
    "FlowRunFilterDeploymentId",
    "FlowRunFilterId",
    "FlowRunFilterName",
    "FlowRunFilterParentFlowRunId",
    "FlowRunFilterState",
    "FlowRunFilterStateName",
    "FlowRunFilterStateType",
    "WorkQueueFilter",
    "WorkQueueFilterName",
]
