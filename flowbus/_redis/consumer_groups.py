"""Consumer groups of Redis streams: created once, whoever comes first."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def create_group(redis: Redis, stream: str, group: str) -> None:
    """Create ``group`` (and the stream) at id 0, so entries added before any reader count; a
    group that exists already is left as it is."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
