"""``flowbus wait`` / ``watch`` / ``run --wait``: follow a run live until it ends.

On a terminal a spinner shows the current state and the time elapsed, and a pause says what
it waits for, until when, and the line that resumes it; elsewhere each change is one plain
line. Following is a blocking read of the run's event stream, from the last entry read with
its history (so nothing slips between).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner

from flowbus._redis.runtime import get_runtime
from flowbus._redis.watch import RunEvent, follow, history
from flowbus.cli._output import relative, stamp, to_json
from flowbus.exceptions import FlowRunWaitTimeout
from flowbus.states import FINAL_TYPES, StateType
from flowbus.views.detail import RunDetail, read_detail


class _Status:
    """The spinner line: current state and elapsed time (rendered by rich's refresh)."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.started = time.monotonic()
        self.spinner = Spinner("dots")

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        self.spinner.update(text=f"{escape(self.state)}  {elapsed:.1f}s")
        return self.spinner


class Follower:
    """Prints a run's progress to ``out``; ``every_event`` prints each state change."""

    def __init__(self, out: Console, every_event: bool) -> None:
        self.out = out
        self.every_event = every_event
        self.status = _Status("")

    @contextmanager
    def showing(self) -> Iterator[None]:
        if not self.out.is_terminal:
            yield
            return
        with Live(self.status, console=self.out, transient=True, refresh_per_second=8):
            yield

    def event(self, e: RunEvent, *, printed: bool = True) -> None:
        self.status.state = f"{e.type.value} {e.name}"
        if printed and (self.every_event or not self.out.is_terminal):
            at = e.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
            line = f"{at} {e.type.value:<10} {e.name:<12} {e.message}"
            self.out.print(escape(line.rstrip()))

    def paused(self, d: RunDetail) -> None:
        p = d.pause
        if p is None:
            return
        what = "input" if p.wants_input else "a resume"
        until = f" until {stamp(p.deadline)} ({relative(p.deadline)})" if p.deadline else ""
        names = " | ".join(c.title for c in p.choices) or ", ".join(f.name for f in p.fields)
        fields = f" ({names})" if names else ""
        self.out.print(
            f"paused at key {escape(to_json(p.key))}: waits for {what}{escape(fields)}{until}"
        )
        self.out.print(f"  resume: {escape(d.resume_command)}")


async def follow_run(
    run_id: str, follower: Follower, *, within: float | None = None, replay: bool = False
) -> RunDetail:
    """Follow the run until it is final; :class:`FlowRunWaitTimeout` after ``within`` s."""
    runtime = await get_runtime()
    events = await history(runtime, run_id)
    after = events[-1].id if events else "0-0"
    detail = await read_detail(runtime, run_id)
    with follower.showing():
        for e in events:
            follower.event(e, printed=replay)
        if detail.summary.state_type == StateType.PAUSED:
            follower.paused(detail)
        if detail.summary.state_type in FINAL_TYPES:
            return detail
        with anyio.move_on_after(within):
            async for e in follow(runtime, run_id, after=after):
                follower.event(e)
                if e.type is StateType.PAUSED:
                    follower.paused(await read_detail(runtime, run_id))
            return await read_detail(runtime, run_id)
    raise FlowRunWaitTimeout(f"Flow run {run_id} did not finish within {within} s")


def print_outcome(d: RunDetail, out: Console) -> None:
    """The result of a completed run, or the error of one that did not complete."""
    r = d.summary
    if d.has_result:
        out.print(f"result: {escape(to_json(d.result))}")
    elif r.state_type != StateType.COMPLETED:
        last = d.traceback.strip().splitlines()[-1] if d.traceback.strip() else ""
        reason = r.message or last or r.state_name
        out.print(f"{r.state_type.lower()}: {escape(reason)}")
        if d.traceback:
            out.print(f"  (flowbus inspect {r.id} shows the traceback)")
