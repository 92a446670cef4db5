"""The options of a flow and of a task, each spelled once, and the retry policy they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowbus._core.codec import Serializer


@dataclass(frozen=True, slots=True)
class Retries:
    """How often a failed flow or task runs again, and how long it waits before each retry."""

    count: int = 0
    delay_seconds: float = 0

    def delay_before(self, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt`` (1 for the first); ``None``: none is left."""
        return self.delay_seconds if attempt <= self.count else None


@dataclass(frozen=True, slots=True)
class FlowOptions:
    """What ``@flow(...)`` accepts; :meth:`Flow.with_options` replaces some of them."""

    name: str | None = None
    retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None
    validate_parameters: bool = True
    serializer: Serializer = "msgpack"
    description: str | None = None

    @property
    def retry(self) -> Retries:
        return Retries(self.retries, self.retry_delay_seconds)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What ``@task(...)`` accepts; :meth:`Task.with_options` replaces some of them."""

    name: str | None = None
    retries: int = 0
    retry_delay_seconds: float = 0
    cache_key: str | None = None
    cache_key_fn: Callable[[dict[str, Any]], str] | None = None
    persist_result: bool = True
    serializer: Serializer = "msgpack"

    @property
    def retry(self) -> Retries:
        return Retries(self.retries, self.retry_delay_seconds)
