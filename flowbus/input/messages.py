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

import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import to_json

from flowbus._core.bridge import in_async_context, run_blocking, sync_or_async
from flowbus._core.codec import loads_json
from flowbus._redis import run_inputs
from flowbus._redis.consumer_groups import create_group
from flowbus._redis.events import Entry, parse_xread
from flowbus._redis.failover import StreamFollower, caught_up
from flowbus._redis.keys import RunKeys
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus.exceptions import SerializationError
from flowbus.input.actions import current_sender, ensure_flow_run_id
from flowbus.input.run_input import (
    AutomaticRunInput,
    RunInput,
    default_prefix,
    run_input_subclass_from_type,
)
from flowbus.models import FlowRunInput

#: What ``_take`` returns for an entry the receiver passes over.
_SKIP = object()
#: Consumer name inside a cursor's group (one logical receiver per group).
_CONSUMER = "receiver"
#: Entries fetched per stream read.
_BATCH = 100
logger = logging.getLogger("flowbus.input")


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
    data = to_json(payload)  # JSON text: stream fields stay readable from any language
    await run_inputs.add(
        runtime.store,
        flow_run_id,
        f"{prefix}-{uuid.uuid4()}",
        data,
        sender or current_sender(),
        idempotency_key,
        indexed=False,
    )


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
        self.model: type[RunInput] = run_input_subclass_from_type(input_type)
        self.prefix = key_prefix or default_prefix(input_type)
        self.timeout = timeout
        self.raise_timeout_error = raise_timeout_error
        self.exclude_keys: set[str] = set(exclude_keys or ())
        self.run_id = ensure_flow_run_id(flow_run_id)
        self.with_metadata = with_metadata
        self.cursor = cursor
        self.group = f"receive:{cursor}:{self.prefix}"
        self._last = "0-0"  # stream position of a non-destructive reader
        self._buffer: deque[Entry] = deque()
        self._unacked: str | None = None
        self._backlog = True  # a cursor first re-reads what it got but did not acknowledge
        self._follower: StreamFollower | None = None  # made with the first read

    async def anext(self) -> Any:
        """The next matching input; ``TimeoutError`` if none comes within ``timeout``."""
        runtime = await get_runtime()
        keys = await runtime.store.run_keys(self.run_id)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if not self._buffer:
                self._buffer.extend(await self._read(runtime, keys, deadline))
            if not self._buffer:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"No input for {self.prefix!r} within {self.timeout} s")
                continue
            entry_id, fields = self._buffer.popleft()
            value = self._take(entry_id, fields)
            if value is _SKIP:
                if self.cursor is not None:
                    await runtime.waiters.redis.xack(keys.messages, self.group, entry_id)
                continue
            if self.cursor is not None:
                self._unacked = entry_id
            return value

    def next(self) -> Any:
        """:meth:`anext`, awaitable in async code and blocking in sync code (as in Prefect)."""
        if in_async_context():
            return self.anext()
        return run_blocking(self.anext)

    async def receive(self) -> Any:
        """The next input; at the timeout ``StopAsyncIteration``, or ``TimeoutError`` with
        ``raise_timeout_error``."""
        try:
            return await self.anext()
        except TimeoutError:
            if self.raise_timeout_error:
                raise
            raise StopAsyncIteration from None

    async def filter_for_inputs(self) -> list[FlowRunInput]:
        """The next stored input not yet seen (at most one), without waiting."""
        store = (await get_runtime()).store
        found = await run_inputs.filter_inputs(
            store, self.run_id, self.prefix, 1, self.exclude_keys
        )
        self.exclude_keys.update(i.key for i in found)
        return found

    def to_instance(self, flow_run_input: FlowRunInput) -> Any:
        """What iteration yields for a stored input."""
        model = self.model.load_from_flow_run_input(flow_run_input)
        if isinstance(model, AutomaticRunInput) and not self.with_metadata:
            return getattr(model, "value")  # noqa: B009 - a field of a model made at run time
        return model

    def _block_ms(self, runtime: Runtime, deadline: float | None) -> int | None:
        """How long the next read blocks: ``None`` not at all (the deadline passed)."""
        recheck = runtime.settings.recheck_interval
        if deadline is None:
            return max(1, int(recheck * 1000))
        left = deadline - time.monotonic()
        return None if left <= 0 else max(1, int(min(left, recheck) * 1000))

    async def _read(self, runtime: Runtime, keys: RunKeys, deadline: float | None) -> list[Entry]:
        """New entries of the run's messages stream: none after a lost node (followed to the
        stream's new primary, which a named cursor reads from its own pending entries)."""
        block = self._block_ms(runtime, deadline)
        if self._follower is None:
            resync = partial(self._resync, runtime, keys)
            self._follower = StreamFollower(f"the inputs of run {self.run_id}", resync)
        if self.cursor is None:
            entries = await self._follower.read(lambda: self._read_new(runtime, keys, block))
        else:
            entries = await self._follower.read(lambda: self._read_group(runtime, keys, block))
        return entries or []

    async def _read_new(self, runtime: Runtime, keys: RunKeys, block: int | None) -> list[Entry]:
        redis = runtime.waiters.redis
        reply = await redis.xread({keys.messages: self._last}, count=_BATCH, block=block)
        entries = [e for _s, batch in parse_xread(reply) for e in batch]
        if entries:
            self._last = entries[-1][0]
        return entries

    async def _resync(self, runtime: Runtime, keys: RunKeys) -> None:
        if self.cursor is not None:
            self._backlog = True
            return
        cursors = {keys.messages: self._last}
        await caught_up(runtime.waiters.redis, cursors)
        self._last = cursors[keys.messages]

    async def _read_group(self, runtime: Runtime, keys: RunKeys, block: int | None) -> list[Entry]:
        redis = runtime.waiters.redis
        if self._unacked is not None:
            await redis.xack(keys.messages, self.group, self._unacked)
            self._unacked = None
        await create_group(redis, keys.messages, self.group)
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

    def _take(self, entry_id: str, fields: dict[str, str]) -> Any:
        """The input of a stream entry, or ``_SKIP`` (another prefix, excluded, not JSON)."""
        key = fields.get("key", "")
        if not key.startswith(self.prefix) or key in self.exclude_keys:
            return _SKIP
        self.exclude_keys.add(key)
        try:
            loads_json(fields.get("payload") or "{}")
        except SerializationError:
            logger.warning("Skipping input %s of run %s: its payload is not JSON", key, self.run_id)
            return _SKIP
        return self.to_instance(run_inputs.record(self.run_id, (entry_id, fields)))

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


#: Prefect's names of the receiver (one class serves models and plain types here).
GetInputHandler = InputReceiver
GetAutomaticInputHandler = InputReceiver


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
