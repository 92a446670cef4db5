"""Live progress on a terminal (a real pseudo-terminal): `flowbus wait`, `watch` and
`run --wait` show a spinner with the state and the time elapsed, and on a pause what it waits
for, until when, and the line that resumes it; piped, the output is plain lines that never
wrap at 80 columns."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import anyio
import pytest

from flowbus import Pending, Running, StateType, aresume_flow_run, get_client
from flowbus.states import Failed
from tests.e2e.support import ROOT, WorkerProcess
from tests.runs import wait_until
from tests.test_cli import (  # noqa: F401 - fixtures
    FLOWBUS,
    PausedRun,
    cli,
    paused,
    worker_process,
)

pytestmark = pytest.mark.anyio
#: Seconds the terminal may take to show what a test waits for.
WITHIN = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
#: The spinner's text: the current state and the seconds elapsed.
_SPINNER = re.compile(r"(RUNNING Running|PAUSED Paused|PAUSED Suspended)  (\d+\.\d)s")


class Terminal:
    """A command on a pseudo-terminal of 120 columns; what it printed, escapes removed."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        self.seen = ""

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the terminal closed with the process
            return False
        self.seen += _ANSI.sub("\n", chunk.decode(errors="replace"))
        return bool(chunk)

    def expect(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in everything printed so far (waits for it)."""
        deadline = time.monotonic() + WITHIN
        while (found := re.search(pattern, self.seen)) is None:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"no {pattern!r} in {self.seen[-3000:]!r}")
        return found

    def spinner_ticks(self, state: str, count: int) -> set[str]:
        """Wait until the spinner showed ``state`` with ``count`` different elapsed times."""
        deadline = time.monotonic() + WITHIN
        while True:
            shown = {s for st, s in _SPINNER.findall(self.seen) if st == state}
            if len(shown) >= count:
                return shown
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"spinner of {state!r}: {shown} in {self.seen[-3000:]!r}")

    def finish(self) -> int:
        """The exit code, once everything it printed is read."""
        code = self.proc.wait(WITHIN)
        while self._read(0.2) and self.proc.poll() is None:
            pass
        while self._read(0):
            pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _on_terminal(argv: list[str]) -> Terminal:
    return Terminal([FLOWBUS, *argv])


async def _shows_the_pause_then_the_end(term: Terminal, run_id: str, key: str) -> None:
    """A paused run on ``term``: the spinner ticks, the pause is told, a resume ends it."""
    waits = await anyio.to_thread.run_sync(
        term.expect, rf'paused at key "{key}": waits for input \(approved, note\) until (.+?) \(in'
    )
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", waits.group(1)), waits.group(0)
    resume = await anyio.to_thread.run_sync(term.expect, r"resume: (flowbus resume \S+ --input .+)")
    assert resume.group(1).startswith(f'flowbus resume {run_id} --input \'{{"approved": false')
    ticks = await anyio.to_thread.run_sync(term.spinner_ticks, "PAUSED Paused", 2)
    assert len(ticks) >= 2  # the elapsed time moves while it waits
    await aresume_flow_run(run_id, {"approved": True, "note": "ok"})
    await anyio.to_thread.run_sync(term.expect, r"result: ")
    assert await anyio.to_thread.run_sync(term.finish) == 0, term.seen[-3000:]


async def test_wait_on_a_terminal_shows_progress_and_the_pause(paused: PausedRun) -> None:
    term = _on_terminal(["wait", paused.id])
    try:
        await _shows_the_pause_then_the_end(term, paused.id, "ask")
        assert f"{paused.id} COMPLETED Completed" in term.seen
        assert 'result: "True:ok"' in term.seen
        assert (await paused.final_state()).is_completed()
    finally:
        term.close()


async def test_watch_on_a_terminal_shows_every_change_and_the_pause(paused: PausedRun) -> None:
    term = _on_terminal(["watch", paused.id])
    try:
        await _shows_the_pause_then_the_end(term, paused.id, "ask")
        # every state change, the history first, each on a line of its own
        for state in ("SCHEDULED", "RUNNING", "PAUSED", "COMPLETED"):
            assert re.search(rf"^\d\d:\d\d:\d\d\.\d{{3}} {state} ", term.seen, re.M), state
    finally:
        term.close()


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_run_wait_on_a_terminal_shows_progress_and_the_pause(
    worker_process: WorkerProcess, runtime_closed: None
) -> None:
    # Given a deployment whose flow pauses for input in the worker, run with --wait
    dep = "tests.e2e.flows_module:pause_in_process"
    assert (await cli("deploy", dep, "--name", "tty", cwd=ROOT)).returncode == 0
    term = _on_terminal(["run", "pause-in-process/tty", "--wait", "--timeout", "120"])
    try:
        created = await anyio.to_thread.run_sync(term.expect, r"created (\S+)")
        run_id = created.group(1)
        await wait_until(run_id, StateType.PAUSED, within=WITHIN)
        await _shows_the_pause_then_the_end(term, run_id, "approval")
        assert 'result: "True:ok"' in term.seen
    finally:
        term.close()


LONG = "x" * 150


async def test_piped_output_never_wraps_at_80_columns(runtime_closed: None) -> None:
    async with get_client() as client:
        run = await client.create_flow_run("never-wraps", name=f"long-{LONG}")
        for state in (Pending(), Running(), Failed(message=f"broke: {LONG}")):
            await client.set_flow_run_state(run.id, state)
    env = {**os.environ, "COLUMNS": "80"}
    listed = await cli("ls", "--flow", "never-wraps", env=env)
    [row] = [line for line in listed.stdout.splitlines() if str(run.id) in line]
    assert f"long-{LONG}" in row and "FAILED" in row
    shown = await cli("inspect", str(run.id), env=env)
    assert f"message: broke: {LONG}" in shown.stdout.splitlines()
    waited = await cli("wait", str(run.id), env=env)
    assert f"failed: broke: {LONG}" in waited.stdout.splitlines()
