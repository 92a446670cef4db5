"""The options of a flow and of a task, each spelled once, and the retry policy they share."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from flowbus._core.codec import Serializer


@dataclass(frozen=True, slots=True)
class Retries:
    """How often a failed flow or task runs again, and how long it waits before each retry."""

    count: int = 0
    #: One delay for every retry, or one per retry (the last repeats), as in Prefect.
    delay_seconds: float | Sequence[float] = 0

    def delay_before(self, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt`` (1 for the first); ``None``: none is left."""
        if attempt > self.count:
            return None
        if isinstance(self.delay_seconds, int | float):
            return float(self.delay_seconds)
        delays = list(self.delay_seconds) or [0.0]
        return float(delays[min(attempt, len(delays)) - 1])


#: A state hook, called as ``hook(flow_or_task, run, state)`` (Prefect's signature).
Hook = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class FlowOptions:
    """What ``@flow(...)`` accepts; :meth:`Flow.with_options` replaces some of them."""

    name: str | None = None
    retries: int = 0
    retry_delay_seconds: float | Sequence[float] = 0
    timeout_seconds: float | None = None
    validate_parameters: bool = True
    serializer: Serializer = "msgpack"
    description: str | None = None
    version: str | None = None
    #: A template formatted with the run's parameters, or a function returning the name.
    flow_run_name: str | Callable[[], str] | None = None
    #: ``print`` inside the run becomes an INFO line of the run's logger.
    log_prints: bool | None = None
    #: Results are always persisted here; accepted for Prefect compatibility.
    persist_result: bool | None = None
    on_completion: Sequence[Hook] = ()
    on_failure: Sequence[Hook] = ()
    on_cancellation: Sequence[Hook] = ()
    on_crashed: Sequence[Hook] = ()
    on_running: Sequence[Hook] = ()

    @property
    def retry(self) -> Retries:
        return Retries(self.retries, self.retry_delay_seconds)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What ``@task(...)`` accepts; :meth:`Task.with_options` replaces some of them."""

    name: str | None = None
    retries: int = 0
    retry_delay_seconds: float | Sequence[float] = 0
    cache_key: str | None = None
    #: ``fn(parameters)``, or Prefect's ``fn(context, parameters)``: the task-run key.
    cache_key_fn: Callable[..., str] | None = None
    persist_result: bool = True
    serializer: Serializer = "msgpack"
    description: str | None = None
    version: str | None = None
    tags: Sequence[str] = ()
    #: A sync task past it fails (its thread is left to finish); an async one is cancelled.
    timeout_seconds: float | None = None
    log_prints: bool | None = None
    on_completion: Sequence[Hook] = ()
    on_failure: Sequence[Hook] = ()

    @property
    def retry(self) -> Retries:
        return Retries(self.retries, self.retry_delay_seconds)


#: Prefect 3 keywords that mean nothing here: accepted, with one warning per name.
IGNORED_FLOW_OPTIONS = frozenset(
    {"task_runner", "result_storage", "result_serializer", "cache_result_in_memory"}
)
IGNORED_TASK_OPTIONS = frozenset(
    {
        "cache_policy",
        "cache_expiration",
        "task_run_name",
        "retry_jitter_factor",
        "result_storage",
        "result_serializer",
        "result_storage_key",
        "cache_result_in_memory",
        "refresh_cache",
        "on_rollback",
        "on_commit",
        "retry_condition_fn",
        "viz_return_value",
        "asset_deps",
    }
)
_warned: set[str] = set()


def options_from(
    cls: type[Any], given: dict[str, Any], ignored: frozenset[str], base: Any = None
) -> Any:
    """``cls(**given)`` (or ``base`` with ``given`` replaced) without the keywords in
    ``ignored``, each warned about once; an unknown keyword is a ``TypeError``."""
    known = {f.name for f in fields(cls)}
    for name in sorted(given.keys() & ignored):
        if name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"{name}= is accepted for Prefect compatibility and ignored by flowbus",
                UserWarning,
                stacklevel=3,
            )
    kept = {k: v for k, v in given.items() if k not in ignored}
    unknown = sorted(kept.keys() - known)
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s): {', '.join(unknown)}")
    for hook in ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running"):
        if hook in kept and callable(kept[hook]):
            kept[hook] = (kept[hook],)
    return cls(**kept) if base is None else replace(base, **kept)
