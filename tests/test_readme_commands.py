"""The README's commands for paused runs run as written: the listing commands against a real
paused run, `flowbus ui` serving, and `flowbus demo --ui` whose waiting run is approved
through its form.

The served commands run on a free port (``--port N`` appended, an option both take), not on
the README's port (4200, their default): a fixed port may be held by any other program on the
machine, another suite's run of this very test included, and the test would fail for that
alone. Every word of the commands is the README's otherwise, and a test of its own holds
their default to the README's address, so that as written they serve where the README says.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import typer

from flowbus import RunInput, StateType, flow, pause_flow_run
from flowbus.cli import app
from tests.runs import current_run_id, launch, wait_for_ids, wait_until

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent
#: Seconds a served command may take to say it listens, or to print the line awaited.
WITHIN = 60.0


def section() -> str:
    """The README's section on paused runs."""
    text = README.read_text().split("## Finding and answering paused runs", 1)[1]
    return text.split("\n## ", 1)[0]


def command_blocks() -> list[list[str]]:
    """Each ``sh`` block of the section on paused runs, as lists of commands."""
    blocks = re.findall(r"```sh\n(.*?)```", section(), re.S)
    return [[line for line in b.splitlines() if line.strip()] for b in blocks]


def readme_port() -> int:
    """The port of the address the section says the page is served at."""
    [port] = set(re.findall(r"http://127\.0\.0\.1:(\d+)/", section()))
    return int(port)


def default_port(command: str) -> object:
    """The default of a command's ``--port``."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    [port] = [p for p in group.commands[command].params if p.name == "port"]
    return port.default


def free_port() -> int:
    """A port free now (another program may take it before the command binds it: see
    ``serve``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NotPrinted(AssertionError):
    """A served command ended, or went silent, before printing the line awaited."""

    def __init__(self, text: str, argv: object, status: int | None, seen: list[str]) -> None:
        super().__init__(f"no {text!r} from {argv!r} (exit status {status}): {seen}")
        self.seen = seen


class Served:
    """A command that serves until stopped; its output lines, as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()  # None: the output ended
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str) -> str:
        """The first line that holds ``text``; failing, what the command printed instead (a
        port taken by another program is told by the command, not by a timeout)."""
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=WITHIN)
            except queue.Empty:
                raise NotPrinted(text, self.proc.args, None, seen) from None
            if line is None:  # the output ended: the command exits without having printed it
                try:
                    status = self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    status = None
                raise NotPrinted(text, self.proc.args, status, seen)
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


#: Ports a served command is given before a test fails for want of a free one.
ATTEMPTS = 3


def serve(served: list[Served], argv: list[str], awaited: str) -> tuple[Served, int, str]:
    """``argv`` serving on a free port (``--port`` appended), once it prints ``awaited``: the
    command, its port and that line. A port taken between its pick and the command's bind is
    told by the command in one line; it is given another then."""
    for attempt in range(1, ATTEMPTS + 1):
        port = free_port()
        server = Served([*argv, "--port", str(port)], {**os.environ})
        served.append(server)
        try:
            return server, port, server.wait_for(awaited)
        except NotPrinted as not_printed:
            taken = any("is the port taken?" in line for line in not_printed.seen)
            if not taken or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


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


def test_the_readme_port_is_the_served_commands_default() -> None:
    """As written (no ``--port``), the served commands serve at the README's address; the
    tests below append ``--port`` with a free one, their only change."""
    demo, commands = command_blocks()
    assert not [c for c in demo + commands if "--port" in c]
    assert default_port("ui") == default_port("demo") == readme_port()


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_the_commands_run_as_written(served: list[Served], runtime_closed: None) -> None:
    """The listing commands against a paused run, which `flowbus resume` resumes, and
    `flowbus ui` serving its inbox (on a free port: see the module's docstring)."""
    _, commands = command_blocks()
    STARTED.clear()
    handle = launch(waiting)
    [run_id] = await wait_for_ids(STARTED, 1)
    await wait_until(run_id, StateType.PAUSED)
    env = {**os.environ}
    for command in commands:
        argv = argv_of(command.replace("RUN_ID", run_id))
        if argv[1:] == ["ui"]:
            _, port, listening = await anyio.to_thread.run_sync(
                serve, served, argv, "flowbus ui on"
            )
            assert f"http://127.0.0.1:{port}/" in listening
            async with httpx.AsyncClient(timeout=WITHIN) as page:
                assert (await page.get(f"http://127.0.0.1:{port}/inbox")).status_code == 200
            continue
        with anyio.fail_after(WITHIN):
            done = await anyio.run_process(argv, check=False, env=env)
        assert done.returncode == 0, (command, done.stderr.decode())
    assert await handle  # resumed by `flowbus resume RUN_ID` (its input has defaults)


@pytest.mark.timeout(120)
def test_the_demo_ui_command_runs_as_written(served: list[Served]) -> None:
    """`flowbus demo --ui` (on a free port: see the module's docstring): its waiting run is
    approved through the form and completes."""
    demo, _ = command_blocks()
    [command] = demo
    server, port, _ = serve(served, argv_of(command), "waits for approval in the inbox")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WITHIN) as page:
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
