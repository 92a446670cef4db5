"""Queues as they appear: a capped stream that announces each queue a process starts using.

The set of queues (``Keys.queues``) says which queues exist; this stream says when one joins,
so a live view started before a queue existed follows it at once, with a blocking read
instead of re-listing the set. Each process announces a queue the first time it creates a
run on it, so a queue may be announced more than once: readers skip the ones they follow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from flowbus._core.codec import text
from flowbus._redis.events import raw_xread
from flowbus._redis.keys import validate_queue_name
from flowbus._redis.runtime import Runtime


async def announced(runtime: Runtime, *, after: str) -> AsyncIterator[str]:
    """Yield each queue announced after the entry id ``after``, forever (blocking reads)."""
    stream = runtime.store.keys.queues_added()
    block_ms = max(1, int(runtime.settings.recheck_interval * 1000))
    cursor = after
    while True:
        reply = await runtime.waiters.redis.xread({stream: cursor}, block=block_ms, count=100)
        for _stream, entries in raw_xread(reply):
            for entry_id, fields in entries:
                cursor = entry_id
                name = text(fields.get(b"queue", b""))
                try:
                    validate_queue_name(name)
                except ValueError:  # anyone can XADD: not a queue name, not ours
                    continue
                yield name
