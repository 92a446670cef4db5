"""Runs of flows this worker lacks: handed to a live worker that has the flow, else failed.

Every worker describes itself when it starts (``Keys.worker_info()``: name → JSON with the
queues it serves and the flows it runs, among others). A worker given an
entry of a flow it lacks (stale code in a rolling deploy, a module left out) does not start
the run. It moves the entry, unacknowledged, to a live worker of the queue that runs the flow
(``XCLAIM … IDLE <lease> JUSTID``: the delivery count is unchanged, and the entry looks idle
past the lease to that worker's reclaimer, which takes it as its own at its next round: the
count of entries handed to it, ``Keys.handovers()``, tells it to look at once). With
no such worker it keeps the entry pending and looks again at each of its reclaim rounds; only
when none has appeared for ``unknown_flow_timeout`` does the run fail, naming the queue, the
flow and the live workers' flows.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from flowbus._core.codec import text
from flowbus._redis.keys import Keys
from flowbus.states import Failed, State
from flowbus_worker import groups
from flowbus_worker.config import WorkerConfig
from flowbus_worker.heartbeat import live_workers

logger = logging.getLogger("flowbus.worker")


@dataclass(frozen=True, slots=True)
class Profile:
    queues: frozenset[str]
    flows: frozenset[str]


def parse_profile(raw: object) -> Profile:
    """What a worker's description says it serves and runs; anything unreadable counts as
    serving nothing."""
    try:
        data: Any = json.loads(text(raw)) if raw else {}
        queues, flows = data.get("queues", []), data.get("flows", [])
        return Profile(frozenset(map(str, queues)), frozenset(map(str, flows)))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return Profile(frozenset(), frozenset())


@dataclass(slots=True)
class Held:
    """An entry of a flow this worker lacks, kept pending here while nobody has the flow."""

    run_id: UUID
    flow: str
    since: float


class Router:
    """Places entries of runs whose flow this worker lacks."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        config: WorkerConfig,
        flows: Collection[str],
    ) -> None:
        self.redis = redis
        self.workers_key = keys.workers()
        self.profiles_key = keys.worker_info()
        self.handovers_key = keys.handovers()
        self.config = config
        self.me = Profile(frozenset(config.queues), frozenset(flows))
        #: Entries kept pending here, by (queue, entry id).
        self.held: dict[tuple[str, str], Held] = {}

    async def fleet(self, queue: str) -> dict[str, Profile]:
        """The live workers serving ``queue`` (this one excluded), with what they run."""
        live = sorted(await live_workers(self.redis, self.workers_key, self.config.lease_ms))
        others = [name for name in live if name != self.config.name]
        if not others:
            return {}
        raw = await self.redis.hmget(self.profiles_key, others)
        profiles = {name: parse_profile(value) for name, value in zip(others, raw, strict=True)}
        return {name: p for name, p in profiles.items() if queue in p.queues}

    async def place(
        self, queue: str, stream: str, entry_id: str, run_id: UUID, flow: str
    ) -> State | None:
        """Hand the entry to a worker that runs ``flow``, or keep it here for now.

        Returns the state to end the run with once nobody has run the flow for too long.
        """
        key = (queue, entry_id)
        fleet = await self.fleet(queue)
        able = [name for name, p in fleet.items() if flow in p.flows]
        if able:
            target = random.choice(able)
            await groups.hand_over(
                self.redis, stream, entry_id, target, idle_ms=self.config.lease_ms
            )
            await self.redis.hincrby(self.handovers_key, target, 1)  # the target looks at once
            self.held.pop(key, None)
            logger.warning(
                "Run %s of flow %r is not known to this worker; handed to worker %s, which runs it",
                run_id,
                flow,
                target,
            )
            return None
        held = self.held.get(key)
        if held is None:
            self.held[key] = Held(run_id, flow, time.monotonic())
            logger.warning(
                "Run %s of flow %r is not known to this worker (its flows: %s), nor to any live "
                "worker of queue %s; keeping it pending for a worker that has it",
                run_id,
                flow,
                ", ".join(sorted(self.me.flows)) or "none",
                queue,
            )
            return None
        if time.monotonic() - held.since < self.config.unknown_flow_timeout:
            return None
        del self.held[key]
        return Failed(message=self._unknown_flow(queue, flow, fleet))

    def _unknown_flow(self, queue: str, flow: str, fleet: dict[str, Profile]) -> str:
        workers = {self.config.name: self.me, **fleet}
        described = "; ".join(
            f"{name}: {', '.join(sorted(p.flows)) or 'none'}" for name, p in sorted(workers.items())
        )
        return (
            f"No live worker of queue {queue!r} runs flow {flow!r} "
            f"(waited {self.config.unknown_flow_timeout:g}s; live workers' flows: {described})"
        )
