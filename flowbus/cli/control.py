"""Commands that act on one run: resume, cancel, suspend, wait, watch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flowbus._redis.runtime import get_runtime
from flowbus.cli._output import console, errors, fail, run
from flowbus.cli.follow import Follower, follow_run, print_outcome
from flowbus.cli.markdown import TextMarkdown
from flowbus.cli.prompt import ask_choice, ask_input
from flowbus.exceptions import FlowbusError, FlowRunWaitTimeout, InvalidRunInput
from flowbus.states import StateType
from flowbus.views.detail import RunDetail, read_detail

app = typer.Typer()

#: Exit code of ``flowbus wait`` by final state (124 on timeout, like coreutils' timeout).
WAIT_EXIT_CODES = {
    StateType.COMPLETED: 0,
    StateType.FAILED: 1,
    StateType.CRASHED: 3,
    StateType.CANCELLED: 4,
}


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _print_invalid(exc: InvalidRunInput) -> None:
    for field, message in exc.errors:
        errors.print(f"[red]invalid[/red] {escape(field or '<input>')}: {escape(message)}")


def _resume_once(run_id: str, run_input: Any) -> None:
    from flowbus.flow_runs import aresume_flow_run

    run(aresume_flow_run(run_id, run_input))


def _prompted_resume(run_id: str) -> None:
    """Ask for each field of the pause's input; after a refusal, ask again for those refused."""

    async def load() -> RunDetail:
        return await read_detail(await get_runtime(), run_id)

    detail = run(load())
    pause = detail.pause
    if pause is None or not pause.wants_input or not (pause.fields or pause.choices):
        _resume_once(run_id, None)
        return
    if pause.description:
        console.print(TextMarkdown(pause.description))
    fields = list(ask_choice(pause.choices).fields) if pause.choices else pause.fields
    values = ask_input(fields)
    while True:
        try:
            _resume_once(run_id, values)
            return
        except InvalidRunInput as exc:
            _print_invalid(exc)
            named = {field.split(".")[0] for field, _ in exc.errors if field}
            values = ask_input(fields, values, named or None)


@app.command()
def resume(
    run_id: str,
    input: Annotated[str | None, typer.Option("--input", help="Run input as JSON")] = None,
    input_file: Annotated[Path | None, typer.Option("--input-file", exists=True)] = None,
) -> None:
    """Resume a paused or suspended run (exit 2 on invalid input, printed per field).

    On a terminal without --input, asks for each input field in turn.
    """
    raw = input_file.read_text() if input_file else input
    try:
        run_input = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as exc:
        fail(f"--input is not JSON: {exc}", 2)
    try:
        if raw is None and _interactive():
            _prompted_resume(run_id)
        else:
            _resume_once(run_id, run_input)
    except InvalidRunInput as exc:
        _print_invalid(exc)
        raise typer.Exit(2) from exc
    except FlowbusError as exc:
        fail(str(exc))
    console.print(f"resumed {run_id}")


def wait_for(run_id: str, timeout: float | None) -> RunDetail:
    """Follow a run to its end with progress on stderr; exit 124 on timeout."""
    try:
        return run(follow_run(run_id, Follower(errors, every_event=False), within=timeout))
    except FlowRunWaitTimeout as exc:
        fail(str(exc), 124)
    except FlowbusError as exc:
        fail(str(exc))


@app.command()
def wait(
    run_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait")] = None,
) -> None:
    """Wait for a run to finish; the exit code tells its final state (0 = COMPLETED)."""
    detail = wait_for(run_id, timeout)
    r = detail.summary
    console.print(f"{r.id} {r.state_type} {escape(r.state_name)}")
    print_outcome(detail, console)
    raise typer.Exit(WAIT_EXIT_CODES.get(StateType(r.state_type), 1))


@app.command()
def watch(run_id: str) -> None:
    """Print a run's state changes as they are published, until it ends."""
    try:
        detail = run(follow_run(run_id, Follower(console, every_event=True), replay=True))
    except FlowbusError as exc:
        fail(str(exc))
    print_outcome(detail, console)


@app.command()
def cancel(
    run_id: str,
    force: Annotated[
        bool, typer.Option("--force", help="End it now (CANCELLED), whatever holds it")
    ] = False,
) -> None:
    """Cancel a run: a paused, suspended or waiting one, or one whose process is gone, at once;
    a running one at its next task boundary (or when it ends). --force ends any run that is
    not final at once."""
    from flowbus.client import get_client
    from flowbus.states import Cancelled, Cancelling, State

    async def go() -> State:
        async with get_client() as client:
            wanted = Cancelled(message="Cancelled by force") if force else Cancelling()
            return (await client.set_flow_run_state(run_id, wanted)).state or wanted

    try:
        state = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    console.print(f"cancelled {run_id}" if state.is_cancelled() else f"cancelling {run_id}")


@app.command()
def suspend(
    run_id: str, timeout: Annotated[float | None, typer.Option(help="Seconds")] = None
) -> None:
    """Ask a running run to suspend at its next task boundary."""
    from flowbus._engine.suspension import request_suspension

    try:
        run(request_suspension(run_id, timeout))
    except FlowbusError as exc:
        fail(str(exc))
    console.print(f"suspending {run_id}")
