"""Futures of submitted task runs."""

from __future__ import annotations

import concurrent.futures
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
