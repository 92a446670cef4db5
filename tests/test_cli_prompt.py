"""`flowbus resume RUN_ID` on a terminal asks for each input field, and asks again for a
field the schema refused (a real pseudo-terminal, a real paused flow)."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import time
from typing import Literal

import anyio
import pytest
from pydantic import Field

from flowbus import RunInput, StateType, flow, pause_flow_run
from tests.runs import current_run_id, launch, wait_for_ids, wait_until
from tests.test_cli import FLOWBUS, cli

pytestmark = pytest.mark.anyio
#: Seconds the dialogue may take before the test fails.
WITHIN = 60.0


class Order(RunInput):
    size: Literal["S", "M", "L"] = "M"
    count: int = Field(ge=1)
    gift: bool = False
    note: str = ""


STARTED: list[str] = []


@flow(name="cli-prompted")
async def prompted() -> str:
    STARTED.append(current_run_id())
    o = await pause_flow_run(wait_for_input=Order, timeout=300)
    assert isinstance(o, Order)
    return f"{o.size} {o.count} {o.gift} {o.note}"


def dialogue(argv: list[str], script: list[tuple[str, str]]) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal: for each (prompt, answer), wait for the prompt and
    type the answer. Returns the exit code and everything it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**os.environ})
    os.close(slave)
    seen = ""
    deadline = time.monotonic() + WITHIN
    try:
        for prompt, answer in script:
            while prompt not in seen:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {prompt!r} in {seen!r}")
                seen += os.read(master, 4096).decode(errors="replace")
            seen = seen.split(prompt, 1)[1]
            os.write(master, f"{answer}\n".encode())
        code = proc.wait(WITHIN)
        try:
            while chunk := os.read(master, 4096):
                seen += chunk.decode(errors="replace")
        except OSError:  # the terminal closed with the process
            pass
        return code, seen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_resume_on_a_terminal_asks_field_by_field(runtime_closed: None) -> None:
    STARTED.clear()
    handle = launch(prompted)
    try:
        [run_id] = await wait_for_ids(STARTED, 1)
        await wait_until(run_id, StateType.PAUSED)
        script = [
            ("size [", "L"),
            ("count", "0"),  # below the minimum: refused by the schema, asked again
            ("gift", "y"),
            ("note", "for ada"),
            ("count", "2"),
        ]
        code, out = await anyio.to_thread.run_sync(dialogue, [FLOWBUS, "resume", run_id], script)
        assert code == 0, out
        assert "0 is less than the minimum of 1" in out  # said of count, which was asked again
        assert f"resumed {run_id}" in out
        state = await asyncio.wait_for(handle, WITHIN)
        assert await state.aresult() == "L 2 True for ada"
    finally:
        handle.cancel()


class Approve(RunInput):
    comment: str = ""


class Reject(RunInput):
    reason: str = Field(min_length=1)
    severity: Literal["low", "high"] = "low"


@flow(name="cli-choice")
async def choosing() -> str:
    STARTED.append(current_run_id())
    got = await pause_flow_run(wait_for_input=Approve | Reject, timeout=300)
    return f"{type(got).__name__} {got.model_dump()}"


async def test_resume_on_a_terminal_offers_the_choice_of_models(runtime_closed: None) -> None:
    STARTED.clear()
    handle = launch(choosing)
    try:
        [run_id] = await wait_for_ids(STARTED, 1)
        await wait_until(run_id, StateType.PAUSED)
        shown = await cli("inspect", run_id)
        assert "input: one of Approve | Reject" in shown.stdout
        assert "  Reject:\n    reason: str, required" in shown.stdout
        script = [
            ("input [Approve/Reject]", "Maybe"),  # no such model: asked again
            ("input [Approve/Reject]", "Reject"),
            ("reason", "too big"),
            ("severity [", "high"),
        ]
        code, out = await anyio.to_thread.run_sync(dialogue, [FLOWBUS, "resume", run_id], script)
        assert code == 0, out
        state = await asyncio.wait_for(handle, WITHIN)
        assert await state.aresult() == "Reject {'reason': 'too big', 'severity': 'high'}"
    finally:
        handle.cancel()
