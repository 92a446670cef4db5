"""``run_deployment``: start a run of a deployment on its workers, and optionally wait."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from flowbus._core.bridge import sync_or_async
from flowbus.client import get_client
from flowbus.exceptions import FlowRunWaitTimeout
from flowbus.flow_runs import await_for_flow_run
from flowbus.models import FlowRun


async def arun_deployment(
    name: UUID | str,
    parameters: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    poll_interval: float = 5,
) -> FlowRun:
    """Create a run of deployment ``name`` (id or ``flow/deployment``) for its workers.

    Waits for a final state up to ``timeout`` seconds (``None``: as long as it takes, ``0``:
    not at all) and returns the run as it is then, final or not, as Prefect does.
    ``poll_interval`` does nothing: waiting is a blocking stream read.
    """
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(name, parameters)
        if timeout == 0:
            return run
        try:
            return await await_for_flow_run(run.id, timeout=timeout)
        except FlowRunWaitTimeout:
            return await client.read_flow_run(run.id)


run_deployment = sync_or_async(arun_deployment)
