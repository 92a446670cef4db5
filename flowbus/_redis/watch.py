"""Reading a run's state history and following it live from its event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from flowbus._redis.events import parse_entries, parse_xread
from flowbus._redis.runtime import Runtime
from flowbus._redis.store import ms_to_datetime
from flowbus.states import FINAL_TYPES, StateType

#: Milliseconds one blocking read of a follower waits before it reads again.
_BLOCK_MS = 30_000


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One published state change of a run."""

    id: str
    run_id: str
    type: StateType
    name: str
    message: str
    from_type: str
    from_name: str
    timestamp: datetime
    run_count: int
    pause_key: str

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> RunEvent:
        return cls(
            id=entry_id,
            run_id=fields.get("run_id", ""),
            type=StateType(fields["type"]),
            name=fields.get("name", ""),
            message=fields.get("message", ""),
            from_type=fields.get("from_type", ""),
            from_name=fields.get("from_name", ""),
            timestamp=ms_to_datetime(int(fields.get("ts") or 0)),
            run_count=int(fields.get("run_count") or 0),
            pause_key=fields.get("pause_key", ""),
        )

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_TYPES


async def history(runtime: Runtime, run_id: UUID | str) -> list[RunEvent]:
    """Every state change of the run still in its (capped) event stream, oldest first."""
    keys = await runtime.store.run_keys(run_id)
    raw = await runtime.store.redis.xrange(keys.events)
    return [RunEvent.from_entry(i, f) for i, f in parse_entries(raw)]


async def follow(
    runtime: Runtime, run_id: UUID | str, *, after: str = "0-0"
) -> AsyncIterator[RunEvent]:
    """Yield the run's events after ``after`` as they are published, until a final state."""
    keys = await runtime.store.run_keys(run_id)
    async for event in tail(runtime, keys.events, after=after):
        yield event
        if event.is_final:
            return


async def last_id(runtime: Runtime, stream: str) -> str:
    """The id of the newest entry of ``stream`` (a concrete id to continue from)."""
    last = await runtime.store.redis.xrevrange(stream, count=1)
    return parse_entries(last)[0][0] if last else "0-0"


async def tail(runtime: Runtime, stream: str, *, after: str) -> AsyncIterator[RunEvent]:
    """Yield events of ``stream`` after ``after`` forever: blocking reads, never ``$``."""
    cursor = after
    redis = runtime.waiters.redis
    while True:
        reply = await redis.xread({stream: cursor}, block=_BLOCK_MS, count=100)
        for _stream, entries in parse_xread(reply):
            for entry_id, fields in entries:
                cursor = entry_id
                yield RunEvent.from_entry(entry_id, fields)
