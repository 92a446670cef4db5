"""A module of other flows than ``tests.e2e.flows_module``: a worker started on it alone
lacks theirs (as a worker with stale code would, in a rolling deploy)."""

from __future__ import annotations

from flowbus import flow


@flow(name="other-only")
def other_only() -> str:
    return "other"
