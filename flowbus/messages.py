"""Messages between runs: ``send_input`` and ``receive_input`` with a durable cursor.

Messages live in the receiving run's ``messages`` stream. Each receiver (per key prefix) reads
through its own consumer group and acknowledges a message when it asks for the next one, so
a receiver that restarts, or a suspended run that re-executes, does not see consumed inputs
again. ``send_input`` takes an idempotency key, so a retried send is stored once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import to_json
from redis.exceptions import ResponseError

from flowbus.bridge import run_blocking, sync_or_async
from flowbus.context import FlowRunContext
from flowbus.events import parse_xread
from flowbus.exceptions import FlowRunNotFound, MissingContext, PayloadTooLarge
from flowbus.inputs import RunInput, RunInputMetadata, load_input, run_input_type
from flowbus.keys import RunKeys
from flowbus.runtime import Runtime, get_runtime
from flowbus.scripts import Status

#: Approximate cap of one run's message stream (entries).
MESSAGES_MAXLEN = 10_000
#: Consumer name inside a receiver's group (one logical receiver per group).
_CONSUMER = "receiver"


def default_prefix(value_type: type[Any]) -> str:
    """The key prefix a type's messages use unless one is given (as in Prefect)."""
    return f"{value_type.__name__.lower()}-auto"


def _current_run_id(what: str) -> UUID:
    ctx = FlowRunContext.get()
    if ctx is None:
        raise MissingContext(f"{what} needs flow_run_id outside a flow run")
    return ctx.flow_run.id


async def asend_input(
    run_input: Any,
    flow_run_id: UUID | str,
    sender: str | None = None,
    key_prefix: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Send ``run_input`` to a run; a repeated ``idempotency_key`` is stored once."""
    runtime = await get_runtime()
    if isinstance(run_input, BaseModel):
        payload: Any = run_input.model_dump(mode="json")
    else:
        payload = {"value": run_input}
    prefix = key_prefix or default_prefix(type(run_input))
    ctx = FlowRunContext.get()
    if sender is None and ctx is not None:
        sender = f"flowbus.flow-run.{ctx.flow_run.id}"
    data = to_json(payload)  # JSON text: stream fields stay readable from any language
    if len(data) > runtime.settings.max_payload_bytes:
        raise PayloadTooLarge("run input", len(data), runtime.settings.max_payload_bytes)
    keys = await runtime.store.run_keys(flow_run_id)
    reply = await runtime.store.scripts.call(
        "send_input",
        keys,
        f"{prefix}-{uuid.uuid4()}",
        data,
        sender or "",
        idempotency_key or "",
        MESSAGES_MAXLEN,
    )
    if reply.status is Status.NOT_FOUND:
        raise FlowRunNotFound(flow_run_id)


send_input = sync_or_async(asend_input)


class InputReceiver:
    """Iterates the inputs sent to a run (``for`` or ``async for``), oldest first."""

    def __init__(
        self,
        input_type: Any,
        *,
        timeout: float | None,
        raise_timeout_error: bool,
        exclude_keys: set[str] | None,
        key_prefix: str | None,
        flow_run_id: UUID | str | None,
        with_metadata: bool,
    ) -> None:
        self.model: type[RunInput] = run_input_type(input_type)
        value_type = input_type if isinstance(input_type, type) else type(input_type)
        self.prefix = key_prefix or default_prefix(value_type)
        self.timeout = timeout
        self.raise_timeout_error = raise_timeout_error
        self.exclude = set(exclude_keys or ())
        self.run_id = flow_run_id or _current_run_id("receive_input")
        self.with_metadata = with_metadata
        self.group = f"receive:{self.prefix}"
        self._unacked: str | None = None
        self._backlog = True  # first re-read what was delivered but not acknowledged

    async def _keys(self) -> tuple[Runtime, RunKeys]:
        runtime = await get_runtime()
        keys = await runtime.store.run_keys(self.run_id)
        try:
            await runtime.store.redis.xgroup_create(
                keys.messages, self.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return runtime, keys

    async def receive(self) -> Any:
        """The next matching input; ``StopAsyncIteration`` (or ``TimeoutError``) on timeout."""
        runtime, keys = await self._keys()
        redis = runtime.waiters.redis
        if self._unacked is not None:
            await redis.xack(keys.messages, self.group, self._unacked)
            self._unacked = None
        block = None if self.timeout is None else max(1, int(self.timeout * 1000))
        while True:
            start = "0" if self._backlog else ">"
            reply = await redis.xreadgroup(
                self.group, _CONSUMER, {keys.messages: start}, count=1, block=block
            )
            entries = [e for _s, batch in parse_xread(reply) for e in batch]
            if not entries:
                if self._backlog:
                    self._backlog = False
                    continue
                if self.raise_timeout_error:
                    raise TimeoutError(f"No input for {self.prefix!r} within {self.timeout} s")
                raise StopAsyncIteration
            entry_id, fields = entries[0]
            key = fields.get("key", "")
            if not key.startswith(f"{self.prefix}-") or key in self.exclude:
                await redis.xack(keys.messages, self.group, entry_id)
                continue
            self._unacked = entry_id
            return self._value(key, fields)

    def _value(self, key: str, fields: dict[str, str]) -> Any:
        raw = json.loads(fields["payload"]) if fields.get("payload") else {}
        value = load_input(self.model, raw, key)
        if not self.with_metadata:
            return value
        model = self.model.model_validate(raw)
        model._metadata = RunInputMetadata(
            key=key, sender=fields.get("sender") or None, receiver=str(self.run_id)
        )
        return model

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.receive()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return run_blocking(self.receive)
        except StopAsyncIteration:
            raise StopIteration from None


def receive_input(
    input_type: Any,
    timeout: float | None = 3600,
    poll_interval: float = 10,
    raise_timeout_error: bool = False,
    exclude_keys: set[str] | None = None,
    key_prefix: str | None = None,
    flow_run_id: UUID | str | None = None,
    with_metadata: bool = False,
) -> InputReceiver:
    """Inputs sent to a run (default: the current one), as a sync or async iterator.

    ``timeout`` bounds the wait for each next input; then iteration stops, or raises
    ``TimeoutError`` with ``raise_timeout_error``. ``poll_interval`` does nothing: waiting is
    a blocking stream read.
    """
    return InputReceiver(
        input_type,
        timeout=timeout,
        raise_timeout_error=raise_timeout_error,
        exclude_keys=exclude_keys,
        key_prefix=key_prefix,
        flow_run_id=flow_run_id,
        with_metadata=with_metadata,
    )
