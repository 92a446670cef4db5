"""Futures of submitted task runs."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from flowbus.states import Pending, State

R = TypeVar("R")


class TaskRunFuture(Generic[R]):
    """The eventual state of a submitted task run."""

    def __init__(self, future: concurrent.futures.Future[State], task_run_key: str) -> None:
        self._future = future
        self.task_run_key = task_run_key

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run finished (or ``timeout`` seconds passed)."""
        concurrent.futures.wait([self._future], timeout=timeout)

    @property
    def state(self) -> State:
        """The final state once done, else a Pending state."""
        if not self._future.done():
            return Pending()
        return self._future.result()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task's value; re-raises its exception if it failed."""
        value: Any = self._future.result(timeout=timeout).result(raise_on_failure, _sync=True)
        return value  # type: ignore[no-any-return]

    def done(self) -> bool:
        return self._future.done()


class TaskRunFutureList(list[TaskRunFuture[R]]):
    """The futures of a ``task.map``, in argument order."""

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([f._future for f in self], timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Every task's value, in order."""
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]


class unmapped(Generic[R]):
    """Marks an argument of ``task.map`` that every call gets whole."""

    def __init__(self, value: R) -> None:
        self.value = value


def mapped_calls(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The arguments of each call of ``task.map``: iterables zipped, ``unmapped`` and other
    values repeated; a ``ValueError`` if the iterables' lengths differ."""

    def mapped(value: Any) -> bool:
        return not isinstance(value, unmapped | str | bytes | dict) and isinstance(value, Iterable)

    lists = {k: list(v) for k, v in enumerate(args) if mapped(v)}
    named = {k: list(v) for k, v in kwargs.items() if mapped(v)}
    lengths = {len(v) for v in (*lists.values(), *named.values())}
    if len(lengths) > 1:
        raise ValueError(f"task.map got iterables of different lengths: {sorted(lengths)}")
    count = lengths.pop() if lengths else 1

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, unmapped) else value

    return [
        (
            tuple(lists[i][n] if i in lists else plain(a) for i, a in enumerate(args)),
            {k: named[k][n] if k in named else plain(v) for k, v in kwargs.items()},
        )
        for n in range(count)
    ]
