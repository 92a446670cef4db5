"""Deployments in Redis: named registrations of flows to queues, read through a short cache.

Creating a run from a deployment is the hot path of a producer, so reads are cached for
``CACHE_SECONDS``: a deployment updated elsewhere (new queue or default parameters) takes
effect in other processes within that time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID, uuid4

from redis.asyncio import Redis

from flowbus._core.codec import blob, decode, encode, text
from flowbus._redis.keys import Keys, validate_queue_name
from flowbus.exceptions import DeploymentNotFound
from flowbus.models import Deployment

#: Seconds a process trusts a deployment it read.
CACHE_SECONDS = 5.0


class DeploymentStore:
    """Create and read deployments by id or by ``flow-name/deployment-name``."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._cache: dict[str, tuple[float, Deployment]] = {}

    async def create(
        self,
        flow_name: str,
        name: str,
        *,
        queue: str = "default",
        parameters: Mapping[str, Any] | None = None,
        parameter_schema: dict[str, Any] | None = None,
    ) -> Deployment:
        """Register (or update) ``flow_name/name``; the id stays the same on update."""
        validate_queue_name(queue)
        full = f"{flow_name}/{name}"
        existing = await self.redis.hget(self.keys.deployment_names(), full)
        dep = Deployment(
            id=UUID(text(existing)) if existing else uuid4(),
            name=name,
            flow_name=flow_name,
            queue=queue,
            parameters=dict(parameters or {}),
            parameter_openapi_schema=parameter_schema,
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.deployment(dep.id), encode(dep.model_dump(mode="json")))
        pipe.hset(self.keys.deployment_names(), full, str(dep.id))
        await pipe.execute()
        self._remember(dep, str(dep.id), full)
        return dep

    async def read(self, ref: UUID | str) -> Deployment:
        """A deployment by id or by ``flow-name/deployment-name``."""
        key = str(ref)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        dep_id: str | None = key
        try:
            dep_id = str(UUID(key))
        except ValueError:
            raw_id = await self.redis.hget(self.keys.deployment_names(), key)
            dep_id = text(raw_id) if raw_id else None
        raw = await self.redis.get(self.keys.deployment(dep_id)) if dep_id else None
        if raw is None:
            raise DeploymentNotFound(ref)
        dep = Deployment.model_validate(decode(blob(raw)))
        self._remember(dep, key)
        return dep

    def _remember(self, dep: Deployment, *refs: str) -> None:
        until = time.monotonic() + CACHE_SECONDS
        for ref in (*refs, str(dep.id), dep.full_name):
            self._cache[ref] = (until, dep)
