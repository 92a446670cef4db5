"""Suspension requested from outside a run: Suspending now, Suspended at the next task boundary.

The request moves the run to PAUSED "Suspending" at once, so a resume cannot start a second
execution (Prefect #14747). The running process learns it from its run's event stream (push,
not polling) and stops at its next task boundary; only then is the run Suspended.
"""

from __future__ import annotations

import math
import uuid
from uuid import UUID

from flowbus._redis.replies import Status
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus.exceptions import InvalidStateTransition, PauseRefused


async def request_suspension(flow_run_id: UUID | str, timeout: float | None = None) -> None:
    """Ask a running run to suspend; :class:`PauseRefused` if it is not RUNNING."""
    runtime = await get_runtime()
    keys = await runtime.store.run_keys(flow_run_id)
    reply = await runtime.store.scripts.request_suspension(
        keys,
        key=str(uuid.uuid4()),
        timeout_ms=None if timeout is None else math.ceil(timeout * 1000),
    )
    if reply.status is Status.NOT_FOUND or not reply.accepted:
        raise PauseRefused(flow_run_id, f"cannot suspend: {reply.detail}")


async def complete_suspension(
    runtime: Runtime, flow_run_id: UUID | str, attempt: int | None = None
) -> None:
    """Record that a Suspending run has checkpointed and left its process (the execution
    ``attempt``)."""
    keys = await runtime.store.run_keys(flow_run_id)
    reply = await runtime.store.scripts.complete_suspension(keys, attempt=attempt)
    if not reply.accepted:
        raise InvalidStateTransition(flow_run_id, f"cannot complete suspension: {reply.detail}")
