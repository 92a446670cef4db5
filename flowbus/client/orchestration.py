"""``get_client()``: the API over the run store, named as in Prefect's client.

Like Prefect's, the client works with or without ``async with``: it borrows the running
loop's connection pool, so opening many clients is cheap and closing one closes nothing
shared. ``get_client(sync_client=True)`` gives the same methods, blocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, overload
from uuid import UUID

from flowbus._core.bridge import run_blocking
from flowbus._core.codec import datetime_to_ms
from flowbus._engine.context import task_run_id
from flowbus._redis import run_inputs
from flowbus._redis.queue_indexes import read_runs
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus._redis.store import RunStore
from flowbus.client.schemas.filters import (
    DeploymentFilter,
    FlowFilter,
    FlowRunFilter,
    WorkQueueFilter,
)
from flowbus.client.schemas.responses import OrchestrationResult, SetStateStatus, StateDetails
from flowbus.exceptions import (
    RESUME_REFUSED,
    ClientNotOpen,
    FlowPauseTimeout,
    InvalidRunInput,
    InvalidStateTransition,
    NotPausedError,
    ObjectNotFound,
    ResumeRefused,
)
from flowbus.models import Deployment, FlowRun, FlowRunInput, TaskRun
from flowbus.states import Completed, State, StateType, now

#: The reason Prefect's server gives when asked to resume a run that is not paused.
NOT_RESUMABLE = "Cannot resume a flow run that is not paused."


def _flow_name(flow: Any) -> str:
    return flow if isinstance(flow, str) else str(flow.name)


class FlowbusClient:
    """Async client; ``async with get_client() as client:`` or plain ``get_client()``."""

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
        """The runtime the client was entered with (``async with``)."""
        if self._runtime is None:
            raise ClientNotOpen("Use the client as `async with get_client() as client:`")
        return self._runtime

    @property
    def store(self) -> RunStore:
        return self.runtime.store

    async def _rt(self) -> Runtime:
        return self._runtime or await get_runtime()

    async def _store(self) -> RunStore:
        return (await self._rt()).store

    # -- flow runs ------------------------------------------------------------------------

    async def create_flow_run(
        self,
        flow: Any,
        parameters: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        state: State | None = None,
        queue: str = "default",
        deployment_id: UUID | None = None,
        **_ignored: Any,
    ) -> FlowRun:
        """Record a new run of ``flow`` (a flow or its name), not enqueued.

        It starts SCHEDULED, or in ``state`` if one is given (a later scheduled time, or any
        other state, forced). Prefect's other keywords (tags, context…) are accepted and
        ignored.
        """
        store = await self._store()
        scheduled = state.state_details.scheduled_time if state and state.is_scheduled() else None
        run = await store.create_run(
            _flow_name(flow),
            parameters,
            queue=queue,
            name=name,
            deployment_id=deployment_id,
            initial=StateType.PENDING if state and state.is_pending() else StateType.SCHEDULED,
            scheduled_time=scheduled if scheduled and scheduled > now() else None,
        )
        if state is not None and not (state.is_scheduled() or state.is_pending()):
            await self.set_flow_run_state(run.id, state, force=True)
            return await store.read_run(run.id)
        return run

    async def read_flow_run(self, flow_run_id: UUID | str) -> FlowRun:
        return await (await self._store()).read_run(flow_run_id)

    async def read_flow_runs(
        self,
        *,
        flow_filter: FlowFilter | None = None,
        flow_run_filter: FlowRunFilter | None = None,
        deployment_filter: DeploymentFilter | None = None,
        work_queue_filter: WorkQueueFilter | None = None,
        limit: int | None = None,
        offset: int = 0,
        queue: str | None = None,
        flow_name: str | None = None,
        state_types: Iterable[StateType] | None = None,
        **_ignored: Any,
    ) -> list[FlowRun]:
        """Runs newest first, filtered by Prefect-style filters (and by queue, flow name and
        state kinds, flowbus's shortcuts); ``sort`` and other keywords are ignored."""
        store = await self._store()
        if flow_run_filter and flow_run_filter.state and flow_run_filter.state.type:
            state_types = state_types or flow_run_filter.state.type.any_
        if flow_filter and flow_filter.name and flow_filter.name.any_ and not flow_name:
            names = flow_filter.name.any_
            flow_name = names[0] if len(names) == 1 else None
        wanted = (limit or 200) + offset
        filtered = any(f is not None for f in (flow_filter, flow_run_filter, deployment_filter))
        runs = await read_runs(
            store,
            queue=queue,
            flow_name=flow_name,
            state_types=state_types,
            limit=10_000 if filtered or work_queue_filter else wanted,
        )
        kept = [r for r in runs if await self._matches(r, flow_filter, flow_run_filter)]
        kept = [r for r in kept if work_queue_filter is None or work_queue_filter.matches(r)]
        if deployment_filter is not None:
            kept = [r for r in kept if deployment_filter.matches(r, await self._deployment_of(r))]
        return kept[offset:wanted]

    async def _matches(
        self, run: FlowRun, flows: FlowFilter | None, runs: FlowRunFilter | None
    ) -> bool:
        return (flows is None or flows.matches(run)) and (runs is None or runs.matches(run))

    async def _deployment_of(self, run: FlowRun) -> Deployment | None:
        if run.deployment_id is None:
            return None
        try:
            return await self.read_deployment(run.deployment_id)
        except ObjectNotFound:
            return None

    async def read_task_runs(
        self,
        *,
        flow_run_filter: FlowRunFilter | None = None,
        limit: int | None = None,
        offset: int = 0,
        **_ignored: Any,
    ) -> list[TaskRun]:
        """The task runs that completed in the runs ``flow_run_filter`` selects, by run, then
        by task key. A task run is known by its persisted result: one that failed or is still
        running has no record. Prefect's other filters are ignored."""
        store = await self._store()
        ids = flow_run_filter.id.any_ if flow_run_filter and flow_run_filter.id else None
        if ids is None:
            ids = [run.id for run in await self.read_flow_runs(flow_run_filter=flow_run_filter)]
        found: list[TaskRun] = []
        for run_id in ids:
            for key in sorted(await store.load_task_results(run_id)):
                task_id = task_run_id(run_id, key)
                found.append(
                    TaskRun(
                        id=task_id,
                        name=key,
                        task_key=key,
                        flow_run_id=run_id,
                        task_run_id=task_id,
                        state=Completed(),
                    )
                )
        return found[offset : None if limit is None else offset + limit]

    async def set_flow_run_state(
        self, flow_run_id: UUID | str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Move a run to ``state``; the result holds the state it is in now.

        ``force`` skips the rules, as in Prefect, for any state (a forced Suspended can be
        resumed; a deployed run forced to SCHEDULED goes to its workers). Cancelling
        (CANCELLING) a paused, suspended or not yet started run cancels it at once. Unlike
        Prefect, a refusal raises :class:`InvalidStateTransition` (with the reason and the
        current state) instead of returning REJECT.
        """
        store = await self._store()
        if force:
            await self._force(store, flow_run_id, state)
            return OrchestrationResult(state=state, status=SetStateStatus.ACCEPT)
        reply = await store.set_state(flow_run_id, state)
        if not reply.accepted:
            current = await store.read_run(flow_run_id)
            raise InvalidStateTransition(flow_run_id, reply.detail, current.state)
        if reply.state_type != state.type:  # the rules chose another (an idle run's cancel)
            state = (await store.read_run(flow_run_id)).state
        return OrchestrationResult(state=state, status=SetStateStatus.ACCEPT)

    async def _force(self, store: RunStore, flow_run_id: UUID | str, state: State) -> None:
        details = state.state_details
        deadline = details.pause_timeout
        if state.is_paused() and deadline is None and details.pause_reschedule:
            deadline = now() + timedelta(hours=1)
        keys = await store.run_keys(flow_run_id)
        await store.scripts.force_state(
            keys,
            kind=state.type.value,
            name=state.name,
            message=state.message or "",
            pause_key=details.pause_key or str(uuid.uuid4()),
            pause_deadline_ms=None if deadline is None else datetime_to_ms(deadline),
            reschedule=details.pause_reschedule,
        )

    async def resume_flow_run(
        self, flow_run_id: UUID | str, run_input: dict[str, Any] | None = None
    ) -> OrchestrationResult:
        """Resume a paused or suspended run. A refusal is returned, as Prefect's server returns
        it, with nothing written: ``ABORT`` (no state) for a run that is not paused, ``REJECT``
        with the run's state for input its pause refuses (or a pause whose schema is gone) or
        a pause past its deadline; ``details.reason`` says why. ``resume_flow_run`` raises
        for these instead."""
        from flowbus.flow_runs import aresume_flow_run  # flow_runs is above the client

        try:
            await aresume_flow_run(flow_run_id, run_input)
        except NotPausedError:
            return OrchestrationResult(
                status=SetStateStatus.ABORT,
                details=StateDetails(type="abort_details", reason=NOT_RESUMABLE),
            )
        except (InvalidRunInput, ResumeRefused, FlowPauseTimeout) as exc:
            return OrchestrationResult(
                state=(await self.read_flow_run(flow_run_id)).state,
                status=SetStateStatus.REJECT,
                details=StateDetails(
                    type="reject_details", reason=str(exc).removeprefix(RESUME_REFUSED)
                ),
            )
        return OrchestrationResult(
            state=(await self.read_flow_run(flow_run_id)).state, status=SetStateStatus.ACCEPT
        )

    async def delete_flow_run(self, flow_run_id: UUID | str) -> None:
        """Delete a run and everything it keeps; :class:`FlowRunNotFound` if there is none."""
        store = await self._store()
        keys = await store.run_keys(flow_run_id)
        pipe = store.redis.pipeline(transaction=True)
        pipe.delete(keys.run, keys.history, keys.fired, keys.input, keys.messages)
        pipe.zrem(keys.runs, str(flow_run_id))
        pipe.zrem(keys.deadlines, str(flow_run_id))
        await pipe.execute()
        if keys.indexed:
            await store.redis.delete(keys.index)

    # -- flow run inputs ------------------------------------------------------------------

    async def create_flow_run_input(
        self, flow_run_id: UUID | str, key: str, value: str, sender: str | None = None
    ) -> None:
        """Store ``value`` (JSON text) under ``key``."""
        run_inputs.check_key(key)
        await run_inputs.add(await self._store(), flow_run_id, key, value, sender)

    async def read_flow_run_input(self, flow_run_id: UUID | str, key: str) -> str:
        """The JSON text under ``key``; :class:`ObjectNotFound` if there is none."""
        found = await run_inputs.read(await self._store(), flow_run_id, key)
        if found is None:
            raise ObjectNotFound(f"Flow run {flow_run_id} has no input {key!r}")
        return found.value

    async def filter_flow_run_input(
        self,
        flow_run_id: UUID | str,
        key_prefix: str,
        limit: int,
        exclude_keys: set[str],
    ) -> list[FlowRunInput]:
        store = await self._store()
        return await run_inputs.filter_inputs(store, flow_run_id, key_prefix, limit, exclude_keys)

    async def delete_flow_run_input(self, flow_run_id: UUID | str, key: str) -> None:
        await run_inputs.delete(await self._store(), flow_run_id, key)

    # -- deployments ----------------------------------------------------------------------

    async def create_deployment(
        self,
        flow_name: str,
        name: str,
        *,
        queue: str = "default",
        parameters: Mapping[str, Any] | None = None,
    ) -> UUID:
        deployment = await (await self._rt()).deployments.create(
            flow_name, name, queue=queue, parameters=parameters
        )
        return deployment.id

    async def read_deployment(self, deployment_id: UUID | str) -> Deployment:
        """A deployment by id or by ``flow-name/deployment-name``."""
        return await (await self._rt()).deployments.read(deployment_id)

    async def read_deployment_by_name(self, name: str) -> Deployment:
        """A deployment by ``flow-name/deployment-name``."""
        return await self.read_deployment(name)

    async def create_flow_run_from_deployment(
        self,
        deployment_id: UUID | str,
        parameters: Mapping[str, Any] | None = None,
        *,
        state: State | None = None,
        name: str | None = None,
        parent_flow_run_id: UUID | None = None,
        **_ignored: Any,
    ) -> FlowRun:
        """Create a run of a deployment for the workers of its queue (at its scheduled time,
        if ``state`` is a later Scheduled); Prefect's other keywords are ignored."""
        runtime = await self._rt()
        deployment = await runtime.deployments.read(deployment_id)
        when = state.state_details.scheduled_time if state and state.is_scheduled() else None
        return await runtime.store.create_run(
            deployment.flow_name,
            {**deployment.parameters, **(parameters or {})},
            queue=deployment.queue,
            name=name,
            deployment_id=deployment.id,
            parent_id=parent_flow_run_id,
            enqueue=when is None or when <= now(),
            scheduled_time=when if when and when > now() else None,
        )


class SyncFlowbusClient:
    """The same methods as :class:`FlowbusClient`, blocking (``get_client(sync_client=True)``)."""

    def __init__(self) -> None:
        self._client = FlowbusClient()

    def __enter__(self) -> SyncFlowbusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method) or name.startswith("_"):
            return method

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return run_blocking(method, *args, **kwargs)

        blocking.__name__ = name
        blocking.__doc__ = method.__doc__
        return blocking


#: Prefect's names of the two clients.
PrefectClient = FlowbusClient
SyncPrefectClient = SyncFlowbusClient


@overload
def get_client(
    httpx_settings: Any = None, sync_client: Literal[False] = False
) -> FlowbusClient: ...
@overload
def get_client(httpx_settings: Any = None, *, sync_client: Literal[True]) -> SyncFlowbusClient: ...
def get_client(
    httpx_settings: Any = None, sync_client: bool = False
) -> FlowbusClient | SyncFlowbusClient:
    """A client (async, or blocking with ``sync_client=True``); ``httpx_settings`` is
    accepted for Prefect compatibility and ignored."""
    return SyncFlowbusClient() if sync_client else FlowbusClient()
