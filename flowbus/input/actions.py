"""Flow run inputs by key (``prefect.input.actions``): create, read, filter and delete.

Each function is awaitable in async code and blocking in sync code; the ``a``-prefixed twin
is always async. A value is stored as JSON text, readable from any language.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from flowbus._core.bridge import sync_or_async
from flowbus._engine.context import FlowRunContext
from flowbus._redis import run_inputs
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import MissingContext
from flowbus.models import FlowRunInput

#: How a sender that is a flow run is named: Prefect's form, which code written for Prefect
#: parses (as ``respond`` does); the form earlier flowbus versions wrote is read too.
SENDER_PREFIXES = ("prefect.flow-run.", "flowbus.flow-run.")


def ensure_flow_run_id(flow_run_id: UUID | str | None = None) -> UUID | str:
    """``flow_run_id``, else the current run's id (Prefect's error outside a run)."""
    if flow_run_id:
        return flow_run_id
    ctx = FlowRunContext.get()
    if ctx is None:
        raise MissingContext("Must either provide a flow run ID or be within a flow run.")
    return ctx.flow_run.id


def current_sender() -> str | None:
    """The sender name of the current flow run, if any."""
    ctx = FlowRunContext.get()
    return None if ctx is None else f"{SENDER_PREFIXES[0]}{ctx.flow_run.id}"


async def acreate_flow_run_input(
    key: str,
    value: Any,
    flow_run_id: UUID | str | None = None,
    sender: str | None = None,
) -> None:
    """Store ``value`` (JSON-serialisable) under ``key``; a taken key raises InputKeyExists."""
    run_id = ensure_flow_run_id(flow_run_id)
    run_inputs.check_key(key)
    store = (await get_runtime()).store
    await run_inputs.add(store, run_id, key, json.dumps(value), sender)


async def acreate_flow_run_input_from_model(
    key: str,
    model_instance: BaseModel,
    flow_run_id: UUID | str | None = None,
    sender: str | None = None,
) -> None:
    """Store a model's JSON under ``key``; the sender defaults to the current flow run."""
    await acreate_flow_run_input(
        key,
        json.loads(model_instance.model_dump_json()),
        flow_run_id=flow_run_id,
        sender=sender or current_sender(),
    )


async def aread_flow_run_input(key: str, flow_run_id: UUID | str | None = None) -> Any:
    """The value under ``key``, decoded from JSON; ``None`` if there is none."""
    run_id = ensure_flow_run_id(flow_run_id)
    found = await run_inputs.read((await get_runtime()).store, run_id, key)
    return None if found is None else found.decoded_value


async def afilter_flow_run_input(
    key_prefix: str,
    limit: int = 1,
    exclude_keys: set[str] | None = None,
    flow_run_id: UUID | str | None = None,
) -> list[FlowRunInput]:
    """Up to ``limit`` inputs whose key starts with ``key_prefix``, oldest first."""
    run_id = ensure_flow_run_id(flow_run_id)
    store = (await get_runtime()).store
    return await run_inputs.filter_inputs(store, run_id, key_prefix, limit, exclude_keys)


async def adelete_flow_run_input(key: str, flow_run_id: UUID | str | None = None) -> None:
    """Remove the input under ``key``."""
    run_id = ensure_flow_run_id(flow_run_id)
    await run_inputs.delete((await get_runtime()).store, run_id, key)


create_flow_run_input = sync_or_async(acreate_flow_run_input)
create_flow_run_input_from_model = sync_or_async(acreate_flow_run_input_from_model)
read_flow_run_input = sync_or_async(aread_flow_run_input)
filter_flow_run_input = sync_or_async(afilter_flow_run_input)
delete_flow_run_input = sync_or_async(adelete_flow_run_input)
