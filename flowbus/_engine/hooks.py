"""State hooks of flows and tasks (``on_completion``, ``on_failure``…), called as in Prefect.

A hook is called as ``hook(flow_or_task, run, state)`` once the run is in its state; a hook
that raises is logged and does not change the run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from flowbus._core.options import Hook
from flowbus.states import State, StateType

logger = logging.getLogger("flowbus.hooks")

#: Which hook list a final state calls.
FLOW_HOOKS = {
    StateType.COMPLETED: "on_completion",
    StateType.FAILED: "on_failure",
    StateType.CANCELLED: "on_cancellation",
    StateType.CRASHED: "on_crashed",
}


def hooks_for(options: Any, state: State) -> Sequence[Hook]:
    """The hooks ``options`` names for ``state``'s kind (none for other kinds)."""
    name = FLOW_HOOKS.get(state.type)
    return tuple(getattr(options, name, ())) if name else ()


def has_final_hooks(options: Any) -> bool:
    """Whether ``options`` name a hook for any final state."""
    return any(getattr(options, name, None) for name in FLOW_HOOKS.values())


async def call_hooks(hooks: Sequence[Hook], owner: Any, run: Any, state: State) -> None:
    """Call each hook (awaiting an async one); log, never raise, what a hook raises."""
    for hook in hooks:
        try:
            outcome = hook(owner, run, state)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("State hook %r of %r raised", getattr(hook, "__name__", hook), owner)


def call_hooks_sync(hooks: Sequence[Hook], owner: Any, run: Any, state: State) -> None:
    """:func:`call_hooks` for a sync caller (an async hook's awaitable is not awaited)."""
    for hook in hooks:
        try:
            hook(owner, run, state)
        except Exception:
            logger.exception("State hook %r of %r raised", getattr(hook, "__name__", hook), owner)
