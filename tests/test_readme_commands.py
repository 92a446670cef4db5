"""The README's commands for paused runs run as written: the listing commands against a real
paused run, `flowbus ui` serving, and `flowbus demo --ui` whose waiting run is approved
through its form."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from flowbus import RunInput, StateType, flow, pause_flow_run
from tests.runs import current_run_id, launch, wait_for_ids, wait_until

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent
#: Seconds a served command may take to say it listens, or to print the line awaited.
WITHIN = 60.0


def command_blocks() -> list[list[str]]:
    """Each ``sh`` block of the section on paused runs, as lists of commands."""
    section = README.read_text().split("## Finding and answering paused runs", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line for line in b.splitlines() if line.strip()] for b in blocks]


class Served:
    """A command that serves until stopped; its output lines, as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str) -> str:
        """The first line that holds ``text``; failing, what the command printed instead (a
        port taken by another program is told by the command, not by a timeout)."""
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=WITHIN)
            except queue.Empty:
                status = self.proc.poll()
                raise AssertionError(
                    f"no {text!r} from {self.proc.args!r} (exit status {status}): {seen}"
                ) from None
            if text in line:
                return line
            seen.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for s in running:
        s.stop()


def argv_of(command: str) -> list[str]:
    words = shlex.split(command.split("#", 1)[0])
    program = words[0].removeprefix(".venv/bin/")
    return [str(BIN / program), *words[1:]]


class Approval(RunInput):
    approved: bool = True


#: Run ids of the waiting flow, as it starts.
STARTED: list[str] = []


@flow(name="readme-waiting")
async def waiting() -> bool:
    STARTED.append(current_run_id())
    answer = await pause_flow_run(wait_for_input=Approval, timeout=300)
    assert isinstance(answer, Approval)
    return answer.approved


@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_the_commands_run_as_written(served: list[Served], runtime_closed: None) -> None:
    """One test: the served commands take the README's port (4200) in turn."""
    await cli_commands(served)
    for server in served:
        server.stop()
    await anyio.to_thread.run_sync(demo_ui, served)


async def cli_commands(served: list[Served]) -> None:
    _, commands = command_blocks()
    STARTED.clear()
    handle = launch(waiting)
    [run_id] = await wait_for_ids(STARTED, 1)
    await wait_until(run_id, StateType.PAUSED)
    env = {**os.environ}
    for command in commands:
        argv = argv_of(command.replace("RUN_ID", run_id))
        if argv[1:] == ["ui"]:
            server = Served(argv, env)
            served.append(server)
            assert "http://127.0.0.1:4200/" in server.wait_for("flowbus ui on")
            async with httpx.AsyncClient(timeout=WITHIN) as page:
                assert (await page.get("http://127.0.0.1:4200/inbox")).status_code == 200
            continue
        with anyio.fail_after(WITHIN):
            done = await anyio.run_process(argv, check=False, env=env)
        assert done.returncode == 0, (command, done.stderr.decode())
    assert await handle  # resumed by `flowbus resume RUN_ID` (its input has defaults)


def demo_ui(served: list[Served]) -> None:
    """`flowbus demo --ui`: its waiting run is approved through the form and completes."""
    demo, _ = command_blocks()
    [command] = demo
    server = Served(argv_of(command), {**os.environ})
    served.append(server)
    server.wait_for("waits for approval in the inbox")
    with httpx.Client(base_url="http://127.0.0.1:4200", timeout=WITHIN) as page:
        with page.stream("GET", "/events") as pushed:  # opened first: no pause slips by
            inbox = page.get("/inbox/rows").text
            if "data-run-id" not in inbox:  # the run pauses just after the page is up
                next(line for line in pushed.iter_lines() if line == "event: inbox")
                inbox = page.get("/inbox/rows").text
        run_id = re.findall(r'data-run-id="([^"]+)"', inbox)[0]
        form = page.get(f"/runs/{run_id}").text
        csrf = re.findall(r'name="csrf" value="([^"]+)"', form)[0]
        assert 'name="approved"' in form and 'name="reviewer"' in form
        answer = {"csrf": csrf, "with_input": "1", "approved": "on", "reviewer": "ada"}
        done = page.post(f"/runs/{run_id}/resume", data=answer)
        assert f"Resumed {run_id}" in done.text
    assert "(approved by ada)" in server.wait_for("result:")
