"""``flowbus demo --ui``: the web page, with a demo run waiting in its inbox to be approved.

The run pauses in this process (its holder), so a resume from the page continues it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from flowbus.demo import daily_report
from flowbus.ui.serve import address, start

#: Seconds the demo run waits for its approval.
APPROVAL_TIMEOUT = 3600


async def serve_demo(host: str, port: int, echo: Callable[[str], None]) -> int:
    """Serve the page, pause a demo run for approval, print its result once approved."""
    _, serving = await start(host, port)
    echo(f"flowbus ui on {address(host, port)}")
    echo(f"a daily-report run waits for approval in the inbox: {address(host, port)}inbox")
    flow_run = asyncio.ensure_future(
        daily_report(approval_timeout=APPROVAL_TIMEOUT, return_state=True)
    )
    await asyncio.wait({serving, flow_run}, return_when=asyncio.FIRST_COMPLETED)
    if not flow_run.done():  # the page stopped (Ctrl-C, or a failure) before anyone approved
        flow_run.cancel()
        await asyncio.gather(flow_run, return_exceptions=True)
        if not serving.cancelled() and (failure := serving.exception()) is not None:
            echo(f"the page stopped: {failure}")
        return 1
    state = flow_run.result()
    echo(f"result: {await state.aresult(raise_on_failure=False)}")
    echo("(the page keeps serving; Ctrl-C stops it)")
    await serving
    return 0 if state.is_completed() else 1
