"""``run_deployment``: start a run of a deployment on its workers, and optionally wait.

Also Prefect's ``RunnerDeployment`` (what ``flow.to_deployment`` returns) under this path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from flowbus._core.bridge import sync_or_async
from flowbus._engine.context import FlowRunContext
from flowbus.client import get_client
from flowbus.exceptions import FlowRunWaitTimeout
from flowbus.flow_runs import await_for_flow_run
from flowbus.models import FlowRun
from flowbus.serving import RunnerDeployment
from flowbus.states import Scheduled


async def arun_deployment(
    name: UUID | str,
    parameters: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    as_subflow: bool = True,
    poll_interval: float = 5,
    scheduled_time: datetime | None = None,
    flow_run_name: str | None = None,
    client: Any = None,
    **ignored: Any,
) -> FlowRun:
    """Create a run of deployment ``name`` (id or ``flow/deployment``) for its workers.

    Waits for a final state up to ``timeout`` seconds (``None``: as long as it takes, ``0``:
    not at all) and returns the run as it is then, final or not, as Prefect does. Called in
    a flow run with ``as_subflow``, the new run is its child. ``poll_interval`` does
    nothing (waiting is a blocking stream read); ``client``, ``tags``, ``idempotency_key``,
    ``work_queue_name`` and ``job_variables`` are accepted and ignored.
    """
    parent = FlowRunContext.get() if as_subflow else None
    run = await get_client().create_flow_run_from_deployment(
        name,
        parameters,
        state=Scheduled(scheduled_time) if scheduled_time else None,
        name=flow_run_name,
        parent_flow_run_id=parent.flow_run.id if parent else None,
    )
    if timeout == 0:
        return run
    try:
        return await await_for_flow_run(run.id, timeout=timeout)
    except FlowRunWaitTimeout:
        return await get_client().read_flow_run(run.id)


run_deployment = sync_or_async(arun_deployment)

__all__ = ["RunnerDeployment", "arun_deployment", "run_deployment"]
