"""Deployments and live workers, as lists."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from flowbus._core.codec import blob, decode, ms_to_datetime
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError
from flowbus.models import Deployment
from flowbus.views.runs import safe_text

_NOW_MS = "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)"
#: A worker whose last beat is older than this (ms) is not listed as live.
LIVE_MS = 15_000


async def list_deployments(runtime: Runtime) -> list[Deployment]:
    """Every registered deployment, by full name (unreadable ones left out)."""
    keys = runtime.store.keys
    names = await runtime.redis.hgetall(keys.deployment_names())
    ordered = sorted((safe_text(n), safe_text(i)) for n, i in names.items())
    pipe = runtime.redis.pipeline(transaction=False)
    for _, dep_id in ordered:
        pipe.get(keys.deployment(dep_id))
    found: list[Deployment] = []
    for raw in await pipe.execute():
        if raw is None:
            continue
        try:
            found.append(Deployment.model_validate(decode(blob(raw))))
        except (FlowbusError, ValidationError):
            continue
    return found


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str
    last_beat: datetime
    seconds_since_beat: float
    queues: list[str]
    flows: list[str]
    concurrency: int | None
    runs_held: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "last_heartbeat": self.last_beat.isoformat(),
            "seconds_since_heartbeat": round(self.seconds_since_beat, 3),
            "queues": self.queues,
            "flows": self.flows,
            "concurrency": self.concurrency,
            "runs_held": self.runs_held,
        }


def _described(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(safe_text(raw)) if raw is not None else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _pending_by_consumer(runtime: Runtime, infos: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Entries each consumer holds unacknowledged (its runs held), over the workers' queues."""
    pairs = {
        (str(q), str(info["group"]))
        for info in infos
        if isinstance(info.get("group"), str)
        for q in info.get("queues", [])
        if isinstance(q, str)
    }
    held: dict[str, int] = {}
    for queue, group in sorted(pairs):
        try:
            summary = await runtime.redis.xpending(runtime.store.keys.queue(queue).stream(), group)
        except (RedisError, ValueError):  # no such stream or group yet, or a bad queue name
            continue
        for entry in summary.get("consumers") or []:
            name = safe_text(entry.get("name"))
            held[name] = held.get(name, 0) + int(entry.get("pending", 0))
    return held


async def list_workers(runtime: Runtime) -> list[WorkerInfo]:
    """Workers whose heartbeat is recent, with what each one said about itself."""
    keys = runtime.store.keys
    # the clock of the node holding the beats, the one workers beat with
    now = int(await runtime.redis.eval(_NOW_MS, 1, keys.workers()))
    beats = await runtime.redis.hgetall(keys.workers())
    infos = await runtime.redis.hgetall(keys.worker_info())
    described = {safe_text(k): _described(v) for k, v in infos.items()}
    held = await _pending_by_consumer(runtime, described.values())
    workers: list[WorkerInfo] = []
    for raw_name, raw_ms in sorted(beats.items()):
        name, beat = safe_text(raw_name), safe_text(raw_ms)
        if not beat.isdigit() or now - int(beat) > LIVE_MS:
            continue
        info = described.get(name, {})
        workers.append(
            WorkerInfo(
                name=name,
                last_beat=ms_to_datetime(int(beat)),
                seconds_since_beat=max(0, now - int(beat)) / 1000,
                queues=[str(q) for q in info.get("queues", []) if isinstance(q, str)],
                flows=[str(f) for f in info.get("flows", []) if isinstance(f, str)],
                concurrency=_int_or_none(info.get("concurrency")),
                runs_held=held.get(name, 0) if info.get("group") else None,
            )
        )
    return workers
