"""Consumer-group plumbing over redis-py: create, read, pending, claim, ack, dead-letter.

Every reply of these commands is parsed here, so the rest of the worker sees typed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from flowbus._core.codec import text
from flowbus._redis.consumer_groups import create_group
from flowbus._redis.events import Entry, parse_entries, parse_xread

#: Name of the consumer group every worker joins, on every stream it consumes.
GROUP = "flowbus-workers"
#: Approximate cap of a dead-letter stream (entries).
DEAD_LETTER_MAXLEN = 10_000
#: Longest field value copied to a dead letter (characters); longer ones are cut.
DEAD_LETTER_FIELD_CHARS = 8192

#: An entry read from one of several streams: the stream, the entry id, its fields.
StreamEntry = tuple[str, str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry delivered to a consumer and not acknowledged yet."""

    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer of the workers' group and how many entries it holds."""

    name: str
    pending: int


async def consumers(redis: Redis, stream: str) -> list[Consumer]:
    """The group's consumers on ``stream`` (none when the stream or group does not exist)."""
    try:
        raw: list[dict[str, Any]] = await redis.xinfo_consumers(stream, GROUP)
    except ResponseError:
        return []
    return [Consumer(text(item["name"]), int(item["pending"])) for item in raw]


async def ensure_groups(redis: Redis, streams: Sequence[str]) -> None:
    """Create the workers' group of each stream (and the stream), so entries added before
    any worker count."""
    for stream in streams:
        await create_group(redis, stream, GROUP)


def is_missing_group(exc: ResponseError) -> bool:
    """True when a read failed because the stream or its group was deleted."""
    return "NOGROUP" in str(exc)


async def read_new(
    redis: Redis, streams: Sequence[str], consumer: str, *, count: int, block_ms: int
) -> list[StreamEntry]:
    """New entries of any of ``streams`` for ``consumer`` (one ``XREADGROUP … >`` for all).

    At most ``count`` per stream; empty when the block timed out.
    """
    reply = await redis.xreadgroup(
        GROUP, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms
    )
    return [
        (stream, entry_id, fields)
        for stream, entries in parse_xread(reply)
        for entry_id, fields in entries
    ]


async def pending(redis: Redis, stream: str, *, min_idle_ms: int, count: int) -> list[PendingEntry]:
    """Pending entries idle for at least ``min_idle_ms``, oldest first."""
    raw: list[dict[str, Any]] = await redis.xpending_range(
        stream, GROUP, min="-", max="+", count=count, idle=min_idle_ms
    )
    return [
        PendingEntry(
            text(item["message_id"]),
            text(item["consumer"]),
            int(item["time_since_delivered"]),
            int(item["times_delivered"]),
        )
        for item in raw
    ]


async def claim(
    redis: Redis, stream: str, consumer: str, entry_id: str, *, min_idle_ms: int
) -> Entry | None:
    """Take one pending entry if it is still idle that long (of racing claimers one wins)."""
    raw = await redis.xclaim(stream, GROUP, consumer, min_idle_ms, [entry_id])
    entries = parse_entries([item for item in raw or [] if item])
    return entries[0] if entries else None


async def ack(redis: Redis, stream: str, entry_id: str) -> None:
    """Acknowledge an entry and delete it: nothing reads an acknowledged entry again (an
    entry whose delete was lost with a connection is merely kept). A run's final transition
    acknowledges its own entry instead, trimming the stream (``acknowledge()`` in
    ``lua/_prelude.lua``)."""
    pipe = redis.pipeline(transaction=False)
    pipe.xack(stream, GROUP, entry_id)
    pipe.xdel(stream, entry_id)
    await pipe.execute()


async def hand_over(
    redis: Redis, stream: str, entry_id: str, consumer: str, *, idle_ms: int
) -> None:
    """Make a pending entry ``consumer``'s, idle ``idle_ms`` already, its delivery count kept."""
    await redis.xclaim(stream, GROUP, consumer, 0, [entry_id], idle=idle_ms, justid=True)


def is_entry_error(exc: ResponseError) -> bool:
    """True for an error the entry's own data causes (a key of the wrong type, a script
    failing on what it read): retrying cannot help, unlike a server that is busy or read-only.
    """
    message = str(exc)
    return message.startswith("WRONGTYPE") or "user_script" in message


async def dead_letter(
    redis: Redis, stream: str, dead: str, entry_id: str, fields: dict[str, str], reason: str
) -> None:
    """Move an entry nobody can process to the dead-letter stream, acknowledge and delete it.

    One transaction: an entry is never acknowledged without its dead letter.
    """
    cut = {k[:DEAD_LETTER_FIELD_CHARS]: v[:DEAD_LETTER_FIELD_CHARS] for k, v in fields.items()}
    record = {**cut, "reason": reason[:1000], "source_stream": stream, "source_id": entry_id}
    pipe = redis.pipeline(transaction=True)
    pipe.xadd(dead, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
    pipe.xack(stream, GROUP, entry_id)
    pipe.xdel(stream, entry_id)
    await pipe.execute()
