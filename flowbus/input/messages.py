"""Messages between runs: ``send_input`` and ``receive_input``.

Messages live in the receiving run's ``messages`` stream. Reading is non-destructive, as in
Prefect: every receiver sees every input with its key prefix, oldest first, except the keys
in its ``exclude_keys`` (to which it adds each key it returns). A receiver given a named
``cursor`` instead reads through a consumer group of that name and acknowledges an input when
it asks for the next one, so a receiver that restarts, or a suspended run that re-executes,
continues after the inputs it consumed. ``send_input`` takes an idempotency key, so a retried
send is stored once. Waiting is a blocking stream read.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import to_json
from redis.exceptions import ResponseError

from flowbus._core.bridge import run_blocking, sync_or_async
from flowbus._engine.context import FlowRunContext
from flowbus._redis.events import Entry, parse_xread
from flowbus._redis.keys import RunKeys
from flowbus._redis.replies import Status
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus.exceptions import FlowRunNotFound, MissingContext, PayloadTooLarge
from flowbus.input.run_input import (
    RunInput,
    RunInputMetadata,
    default_prefix,
    load_input,
    run_input_type,
)

#: Approximate cap of one run's message stream (entries).
MESSAGES_MAXLEN = 10_000
#: Consumer name inside a cursor's group (one logical receiver per group).
_CONSUMER = "receiver"
#: Entries fetched per stream read.
_BATCH = 100

logger = logging.getLogger("flowbus.input")


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
    prefix = key_prefix or default_prefix(type(run_input))  # Prefect's rule, on both sides
    ctx = FlowRunContext.get()
    if sender is None and ctx is not None:
        sender = f"flowbus.flow-run.{ctx.flow_run.id}"
    data = to_json(payload)  # JSON text: stream fields stay readable from any language
    if len(data) > runtime.settings.max_payload_bytes:
        raise PayloadTooLarge("run input", len(data), runtime.settings.max_payload_bytes)
    keys = await runtime.store.run_keys(flow_run_id)
    reply = await runtime.store.scripts.send_input(
        keys,
        key=f"{prefix}-{uuid.uuid4()}",
        payload=data,
        sender=sender or "",
        idempotency_key=idempotency_key or "",
        maxlen=MESSAGES_MAXLEN,
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
        cursor: str | None = None,
    ) -> None:
        self.model: type[RunInput] = run_input_type(input_type)
        self.prefix = key_prefix or default_prefix(input_type)
        self.timeout = timeout
        self.raise_timeout_error = raise_timeout_error
        self.exclude_keys: set[str] = set(exclude_keys or ())
        self.run_id = flow_run_id or _current_run_id("receive_input")
        self.with_metadata = with_metadata
        self.cursor = cursor
        self.group = f"receive:{cursor}:{self.prefix}"
        self._last = "0-0"  # stream position of a non-destructive reader
        self._buffer: deque[Entry] = deque()
        self._unacked: str | None = None
        self._backlog = True  # a cursor first re-reads what it got but did not acknowledge

    async def receive(self) -> Any:
        """The next matching input; ``StopAsyncIteration`` (or ``TimeoutError``) on timeout."""
        runtime = await get_runtime()
        keys = await runtime.store.run_keys(self.run_id)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if not self._buffer:
                self._buffer.extend(await self._read(runtime, keys, deadline))
            if not self._buffer:
                if deadline is not None and time.monotonic() >= deadline:
                    return self._timed_out()
                continue
            entry_id, fields = self._buffer.popleft()
            key = fields.get("key", "")
            if not key.startswith(f"{self.prefix}-") or key in self.exclude_keys:
                if self.cursor is not None:
                    await runtime.waiters.redis.xack(keys.messages, self.group, entry_id)
                continue
            self.exclude_keys.add(key)
            if self.cursor is not None:
                self._unacked = entry_id
            return self._value(key, fields)

    def _timed_out(self) -> Any:
        if self.raise_timeout_error:
            raise TimeoutError(f"No input for {self.prefix!r} within {self.timeout} s")
        raise StopAsyncIteration

    def _block_ms(self, runtime: Runtime, deadline: float | None) -> int | None:
        """How long the next read blocks: ``None`` not at all (the deadline passed)."""
        recheck = runtime.settings.recheck_interval
        if deadline is None:
            return max(1, int(recheck * 1000))
        left = deadline - time.monotonic()
        return None if left <= 0 else max(1, int(min(left, recheck) * 1000))

    async def _read(self, runtime: Runtime, keys: RunKeys, deadline: float | None) -> list[Entry]:
        redis = runtime.waiters.redis
        block = self._block_ms(runtime, deadline)
        if self.cursor is None:
            reply = await redis.xread({keys.messages: self._last}, count=_BATCH, block=block)
            entries = [e for _s, batch in parse_xread(reply) for e in batch]
            if entries:
                self._last = entries[-1][0]
            return entries
        return await self._read_group(runtime, keys, block)

    async def _read_group(self, runtime: Runtime, keys: RunKeys, block: int | None) -> list[Entry]:
        redis = runtime.waiters.redis
        if self._unacked is not None:
            await redis.xack(keys.messages, self.group, self._unacked)
            self._unacked = None
        await self._ensure_group(redis, keys)
        start = "0" if self._backlog else ">"
        reply = await redis.xreadgroup(
            self.group,
            _CONSUMER,
            {keys.messages: start},
            count=1,
            block=None if self._backlog else block,
        )
        entries = [e for _s, batch in parse_xread(reply) for e in batch]
        if not entries and self._backlog:
            self._backlog = False
            return await self._read_group(runtime, keys, block)
        return entries

    async def _ensure_group(self, redis: Any, keys: RunKeys) -> None:
        try:
            await redis.xgroup_create(keys.messages, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _value(self, key: str, fields: dict[str, str]) -> Any:
        try:
            raw = json.loads(fields["payload"]) if fields.get("payload") else {}
        except ValueError:
            logger.warning("Skipping input %s of run %s: its payload is not JSON", key, self.run_id)
            raw = {}
        metadata = RunInputMetadata(
            key=key, sender=fields.get("sender") or None, receiver=str(self.run_id)
        )
        value = load_input(self.model, raw, key)
        if not self.with_metadata:
            if isinstance(value, RunInput):
                value._metadata = metadata
            return value
        model = self.model.model_validate(raw)
        model._metadata = metadata
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
    *,
    cursor: str | None = None,
) -> InputReceiver:
    """Inputs sent to a run (default: the current one), as a sync or async iterator.

    ``timeout`` bounds the wait for each next input (``None``: forever); then iteration
    stops, or raises ``TimeoutError`` with ``raise_timeout_error``. Reads are
    non-destructive: a new receiver sees every input again except ``exclude_keys``. A named
    ``cursor`` makes the position durable instead (see the module doc). ``poll_interval``
    does nothing: waiting is a blocking stream read.
    """
    return InputReceiver(
        input_type,
        timeout=timeout,
        raise_timeout_error=raise_timeout_error,
        exclude_keys=exclude_keys,
        key_prefix=key_prefix,
        flow_run_id=flow_run_id,
        with_metadata=with_metadata,
        cursor=cursor,
    )
