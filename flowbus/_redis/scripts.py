"""Typed facade over the Lua transition scripts: one method per script, replies parsed here.

Each script is ``lua/_prelude.lua`` (the shared rules) followed by ``lua/<name>.lua``, run by
EVALSHA through the client's :class:`AutoPipeline` (calls made in one loop turn share a round
trip) and loaded again on NOSCRIPT.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from flowbus._core.codec import text
from flowbus._redis.autopipeline import AutoPipeline, Build
from flowbus._redis.keys import RunKeys
from flowbus.exceptions import MalformedEntry
from flowbus.settings import Settings
from flowbus.states import FINAL_TYPES

_FINAL = frozenset(t.value for t in FINAL_TYPES)


class Status(IntEnum):
    """First element of every script reply (see ``_prelude.lua``)."""

    ACCEPTED = 1
    REFUSED = 0
    NOT_FOUND = -1
    ALREADY_FIRED = 2
    EXPIRED = 3
    SUSPENDING = 4


@dataclass(frozen=True, slots=True)
class Reply:
    """A parsed script reply: outcome, event id or reason, and the run's state after it."""

    status: Status
    detail: str
    state_type: str
    state_name: str
    run_count: int
    extra: tuple[bytes | int | None, ...]

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED


@cache
def source(name: str) -> str:
    """The full text of script ``name``: the shared prelude and the script's own body."""
    lua = files("flowbus._redis") / "lua"
    return (lua / "_prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


@cache
def script_names() -> tuple[str, ...]:
    """Every script shipped in ``lua/`` (the prelude is not a script of its own)."""
    lua = files("flowbus._redis") / "lua"
    names = (entry.name.removesuffix(".lua") for entry in lua.iterdir())
    return tuple(sorted(name for name in names if not name.startswith("_")))


def parse(raw: Any) -> Reply:
    """A script's raw reply as a :class:`Reply`."""
    if not isinstance(raw, list) or len(raw) < 5:
        raise MalformedEntry("script reply", repr(raw))
    status, detail, state_type, state_name, run_count, *extra = raw
    return Reply(
        Status(int(status)),
        text(detail),
        text(state_type),
        text(state_name),
        int(run_count),
        tuple(extra),
    )


class Scripts:
    """The transition scripts, registered once per Redis client."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._retention = settings.retention_seconds
        self._head = [
            settings.run_events_maxlen,
            settings.queue_events_maxlen,
            settings.retention_seconds,
        ]
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in script_names()
        }
        self._batch = AutoPipeline(redis, self._load_all)

    def queue(
        self,
        pipe: Pipeline,
        name: str,
        keys: RunKeys,
        *args: str | bytes | int,
        op: str | None = None,
    ) -> None:
        """Add script ``name`` to a pipeline built for :meth:`pipeline`.

        ``op`` identifies the call (a fresh one by default): a copy resent after a dropped
        connection finds it on the run and gets the first reply, not a refusal.
        """
        names = keys.as_list()
        op = op or secrets.token_hex(8)
        pipe.evalsha(self._scripts[name].sha, len(names), *names, *self._head, *args, op)

    async def pipeline(self, build: Build) -> list[Any]:
        """Run the commands ``build`` adds to a pipeline, scripts among them, in one round trip.

        The round trip is shared with every other call of this loop turn. redis-py's own
        script support would first ask ``SCRIPT EXISTS`` (another round trip) on every
        execution; instead, a NOSCRIPT reply (a restarted server) loads every script and sends
        ``build``'s commands once more, so its other commands must be idempotent.
        """
        return await self._batch.execute(build)

    async def _load_all(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for script in self._scripts.values():
            pipe.script_load(script.script)
        await pipe.execute()

    async def call(
        self, name: str, keys: RunKeys, *args: str | bytes | int, op: str | None = None
    ) -> Reply:
        """Run script ``name`` on one run's keys with the script's own arguments."""
        op = op or secrets.token_hex(8)  # fixed before the build, which a NOSCRIPT repeats
        (raw,) = await self._batch.execute(lambda pipe: self.queue(pipe, name, keys, *args, op=op))
        reply = parse(raw)
        if reply.state_type in _FINAL and reply.status in (Status.ACCEPTED, Status.EXPIRED):
            # the run's keys now expire; its index lives in another slot, so expire it here
            await self._redis.expire(keys.index, self._retention)
        return reply
