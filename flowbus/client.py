"""``get_client()``: the async API over the run store, named as in Prefect's client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from uuid import UUID

from flowbus._redis.runtime import Runtime, get_runtime
from flowbus._redis.store import RunStore
from flowbus.exceptions import ClientNotOpen, InvalidStateTransition
from flowbus.models import Deployment, FlowRun
from flowbus.states import State, StateType


class FlowbusClient:
    """Async client; use as ``async with get_client() as client:``.

    It borrows the running loop's connection pool, so opening many clients is cheap and
    closing one closes nothing shared.
    """

    def __init__(self) -> None:
        self._runtime: Runtime | None = None

    async def __aenter__(self) -> FlowbusClient:
        self._runtime = await get_runtime()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._runtime = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise ClientNotOpen("Use the client as `async with get_client() as client:`")
        return self._runtime

    @property
    def store(self) -> RunStore:
        return self.runtime.store

    async def create_flow_run(
        self,
        flow_name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        name: str | None = None,
        deployment_id: UUID | None = None,
    ) -> FlowRun:
        """Record a new SCHEDULED run (not enqueued: a deployment run is, see below)."""
        return await self.store.create_run(
            flow_name, parameters, queue=queue, name=name, deployment_id=deployment_id
        )

    async def read_flow_run(self, flow_run_id: UUID | str) -> FlowRun:
        return await self.store.read_run(flow_run_id)

    async def read_flow_runs(
        self,
        *,
        queue: str | None = None,
        flow_name: str | None = None,
        state_types: Iterable[StateType] | None = None,
        limit: int = 100,
    ) -> list[FlowRun]:
        """Runs newest first, filtered by queue, flow name and state kinds."""
        return await self.store.read_runs(
            queue=queue, flow_name=flow_name, state_types=state_types, limit=limit
        )

    async def set_flow_run_state(
        self, flow_run_id: UUID | str, state: State, force: bool = False
    ) -> State:
        """Move a run to ``state`` and return the state it is in now.

        ``force`` is the explicit retry that may leave a final state. Cancelling (CANCELLING)
        a paused, suspended or not yet started run cancels it at once (CANCELLED).
        :class:`InvalidStateTransition` if the rules refuse.
        """
        reply = await self.store.set_state(flow_run_id, state, retry=force)
        if not reply.accepted:
            current = await self.store.read_run(flow_run_id)
            raise InvalidStateTransition(flow_run_id, reply.detail, current.state)
        if reply.state_type == state.type:
            return state
        # the rules chose another state (a cancellation of an idle run is final at once)
        return (await self.store.read_run(flow_run_id)).state

    async def create_deployment(
        self,
        flow_name: str,
        name: str,
        *,
        queue: str = "default",
        parameters: Mapping[str, Any] | None = None,
    ) -> UUID:
        deployment = await self.runtime.deployments.create(
            flow_name, name, queue=queue, parameters=parameters
        )
        return deployment.id

    async def read_deployment(self, deployment_id: UUID | str) -> Deployment:
        """A deployment by id or by ``flow-name/deployment-name``."""
        return await self.runtime.deployments.read(deployment_id)

    async def create_flow_run_from_deployment(
        self, deployment_id: UUID | str, parameters: Mapping[str, Any] | None = None
    ) -> FlowRun:
        """Create a run of a deployment and hand it to the workers of its queue."""
        deployment = await self.runtime.deployments.read(deployment_id)
        return await self.store.create_run(
            deployment.flow_name,
            {**deployment.parameters, **(parameters or {})},
            queue=deployment.queue,
            deployment_id=deployment.id,
            enqueue=True,
        )


def get_client() -> FlowbusClient:
    """An async client bound to the running event loop's connection pool."""
    return FlowbusClient()
