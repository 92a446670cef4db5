"""``JSON``: a named JSON value saved in Redis (``prefect.blocks.system.JSON``).

Prefect's interactive-workflows guide keeps the keys of the inputs a flow has seen in one,
so a suspended flow skips them when it runs again; ``receive_input(..., cursor=...)`` is
flowbus's own way to get that. ``load`` and ``save`` are awaitable in async code and
blocking in sync code, as in Prefect; ``aload`` and ``asave`` are always async.
"""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import BaseModel

from flowbus._core.bridge import in_async_context, run_blocking
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import get_runtime
from flowbus.exceptions import PayloadTooLarge


class JSON(BaseModel):
    """A JSON-serialisable ``value`` saved under a name."""

    value: Any = None

    @classmethod
    async def aload(cls, name: str) -> Self:
        """The block saved as ``name``; ``ValueError`` if there is none (Prefect's error)."""
        runtime = await get_runtime()
        raw = await runtime.store.redis.get(Keys(runtime.settings.key_prefix).block("json", name))
        if raw is None:
            raise ValueError(f"Unable to find block document named {name} for block type json")
        return cls(value=json.loads(raw))

    @classmethod
    def load(cls, name: str) -> Any:
        return cls.aload(name) if in_async_context() else run_blocking(cls.aload, name)

    async def asave(self, name: str, overwrite: bool = False) -> None:
        """Save under ``name``; ``ValueError`` if it exists and ``overwrite`` is false."""
        runtime = await get_runtime()
        data = json.dumps(self.value)
        if len(data) > runtime.settings.max_payload_bytes:
            raise PayloadTooLarge("JSON block", len(data), runtime.settings.max_payload_bytes)
        key = Keys(runtime.settings.key_prefix).block("json", name)
        stored = await runtime.store.redis.set(key, data, nx=not overwrite)
        if not stored:
            raise ValueError(f"A JSON block named {name!r} exists; save it with overwrite=True")

    def save(self, name: str, overwrite: bool = False) -> Any:
        if in_async_context():
            return self.asave(name, overwrite)
        return run_blocking(self.asave, name, overwrite)
