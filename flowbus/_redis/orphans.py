"""Sweeping runs whose holder is gone: a plain script that died holding runs.

A worker's runs are tracked by its queue deliveries, which another worker reclaims. The runs
a plain process holds (a flow called from a script, paused in-process) are tracked only by
the set of held runs and the process's lease: once the lease ended, any sweeper ends them
(CRASHED, or a suspension for a deployed run; see ``end_orphan.lua``).
"""

from __future__ import annotations

import asyncio

from flowbus._core.codec import text
from flowbus._redis.store import RunStore

#: Held run ids read per step.
_PAGE = 500


def _lease_holds(ends: bytes, now_ms: int) -> bool:
    try:
        return int(ends) >= now_ms
    except ValueError:
        return False


#: The leases of a holders hash and the clock of the node holding it (the one leases are
#: written and judged with).
_LEASES = """
local t = redis.call('TIME')
return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('HGETALL', KEYS[1])}
"""


async def gone_holders(store: RunStore, queue: str) -> list[str]:
    """Names of the processes whose lease in ``queue`` ended."""
    now, flat = await store.redis.eval(_LEASES, 1, store.keys.queue(queue).holders())
    leases = zip(flat[::2], flat[1::2], strict=True)
    return [text(name) for name, ends in leases if not _lease_holds(ends, int(now))]


async def end_orphans(store: RunStore, queue: str) -> int:
    """End the held runs of ``queue`` whose holder is gone, then forget the gone holders;
    return how many runs ended."""
    gone = await gone_holders(store, queue)
    if not gone:
        return 0
    qkeys = store.keys.queue(queue)
    ended, cursor = 0, 0
    while True:
        cursor, ids = await store.redis.sscan(qkeys.held(), cursor, count=_PAGE)
        calls = (store.scripts.end_orphan(qkeys.run(text(rid))) for rid in ids)
        ended += sum(reply.accepted for reply in await asyncio.gather(*calls))
        if not cursor:
            break
    await store.redis.hdel(qkeys.holders(), *gone)
    return ended
