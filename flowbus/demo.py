"""``flowbus demo``: a small, realistic flow run end to end, narrated from its event stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from flowbus._redis.runtime import Runtime, get_runtime, redact
from flowbus._redis.watch import last_id, tail
from flowbus.exceptions import FlowbusError
from flowbus.flow_runs import aresume_flow_run, pause_flow_run
from flowbus.flows import flow
from flowbus.input.run_input import RunInput
from flowbus.states import StateType
from flowbus.tasks import task


class Approval(RunInput):
    """What a reviewer sends to let the report go out."""

    approved: bool
    reviewer: str = "demo"


@task
async def fetch_orders(day: str) -> list[dict[str, float]]:
    await asyncio.sleep(0.05)  # stands in for an API call
    return [{"amount": 12.5}, {"amount": 30.0}, {"amount": 7.25}]


@task
def summarize(orders: list[dict[str, float]]) -> dict[str, float]:
    total = sum(o["amount"] for o in orders)
    return {"orders": len(orders), "revenue": total}


@task
async def publish(summary: dict[str, float], reviewer: str) -> str:
    await asyncio.sleep(0.02)
    return f"{summary['orders']:.0f} orders, {summary['revenue']:.2f} EUR (approved by {reviewer})"


#: What the reviewer reads above the form (Markdown).
APPROVAL_NOTE = "Approve the **daily report** before it is published.\n\n- check the revenue\n"


@flow(name="daily-report")
async def daily_report(day: str = "2026-11-27", approval_timeout: int = 60) -> str:
    """Fetch a day's orders, summarize them, wait for approval, publish."""
    orders = await fetch_orders(day)
    summary = summarize(orders)
    asked = Approval.with_initial_data(description=APPROVAL_NOTE, reviewer="demo")
    approval = await pause_flow_run(wait_for_input=asked, timeout=approval_timeout)
    assert isinstance(approval, Approval)
    if not approval.approved:
        return "not published"
    message: str = await publish(summary, approval.reviewer)
    return message


async def run_demo(echo: Callable[[str], None]) -> int:
    """Run the demo flow, let a reviewer resume it, and narrate every published state.

    A flow that fails before it publishes anything (its run never created) ends the demo
    with that error instead of leaving the narration waiting for events that never come.
    """
    runtime = await get_runtime()
    echo(f"flowbus demo on {redact(runtime.url)}")
    stream = runtime.store.keys.queue("default").events()
    after = await last_id(runtime, stream)
    flow_task = asyncio.ensure_future(daily_report(return_state=True))
    narration = asyncio.ensure_future(_narrate(runtime, stream, after, echo))
    await asyncio.wait({flow_task, narration}, return_when=asyncio.FIRST_COMPLETED)
    if flow_task.done() and (exc := flow_task.exception()) is not None:
        narration.cancel()
        await asyncio.gather(narration, return_exceptions=True)
        raise FlowbusError(f"the demo flow failed: {type(exc).__name__}: {exc}") from exc
    await narration  # the run's final event is published before the flow returns
    state = await flow_task
    echo(f"result: {await state.aresult(raise_on_failure=False)}")
    return 0 if state.is_completed() else 1


async def _narrate(runtime: Runtime, stream: str, after: str, echo: Callable[[str], None]) -> None:
    """Print each event of the demo's run (the first run seen) until its final one."""
    run_id = ""
    previous = None
    async for event in tail(runtime, stream, after=after):
        if run_id and event.run_id != run_id:
            continue
        if not run_id:
            run_id = event.run_id
            echo(f"flow run {run_id} (daily-report)")
        took = (
            ""
            if previous is None
            else f"+{(event.timestamp - previous).total_seconds() * 1e3:.1f} ms"
        )
        previous = event.timestamp
        echo(f"  {event.type.value:<10} {event.name:<10} {took:>10}  {event.message}")
        if event.type is StateType.PAUSED:
            echo("  … a reviewer approves: resume_flow_run(run_id, {'approved': True})")
            await aresume_flow_run(run_id, {"approved": True, "reviewer": "ada"})
        if event.is_final:
            return
