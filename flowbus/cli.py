"""The ``flowbus`` command line."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus.exceptions import FlowbusError, FlowRunWaitTimeout, InvalidRunInput
from flowbus.states import StateType

app = typer.Typer(help="flowbus: flow runs, event-driven on Redis Streams.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded Redis-compatible server.", no_args_is_help=True)
app.add_typer(server_app, name="server")
console = Console()
#: Errors are one line each, however long, and print user text verbatim (markup escaped).
errors = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

#: Exit code of ``flowbus wait`` by final state (124 on timeout, like coreutils' timeout).
WAIT_EXIT_CODES = {
    StateType.COMPLETED: 0,
    StateType.FAILED: 1,
    StateType.CRASHED: 3,
    StateType.CANCELLED: 4,
}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        try:
            return await coro
        finally:
            await close_runtime()

    return asyncio.run(main())


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@app.command()
def demo() -> None:
    """Run a small flow end to end and narrate each state change from its event stream."""
    from flowbus.demo import run_demo

    raise typer.Exit(_run(run_demo(console.print)))


@app.command()
def resume(
    run_id: str,
    input: Annotated[str | None, typer.Option("--input", help="Run input as JSON")] = None,
    input_file: Annotated[Path | None, typer.Option("--input-file", exists=True)] = None,
) -> None:
    """Resume a paused or suspended run (exit 2 on invalid input, printed per field)."""
    from flowbus.flow_runs import aresume_flow_run

    raw = input_file.read_text() if input_file else input
    try:
        run_input = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as exc:
        raise _fail(f"--input is not JSON: {exc}", 2) from exc
    try:
        _run(aresume_flow_run(run_id, run_input))
    except InvalidRunInput as exc:
        for field, message in exc.errors:
            errors.print(f"[red]invalid[/red] {escape(field or '<input>')}: {escape(message)}")
        raise typer.Exit(2) from exc
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"resumed {run_id}")


@app.command()
def wait(
    run_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait")] = None,
) -> None:
    """Wait for a run to finish; the exit code tells its final state (0 = COMPLETED)."""
    from flowbus.flow_runs import await_for_flow_run

    try:
        run = _run(await_for_flow_run(run_id, timeout=timeout, log_states=False))
    except FlowRunWaitTimeout as exc:
        raise _fail(str(exc), 124) from exc
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{run.id} {run.state.type.value} {run.state.name}")
    raise typer.Exit(WAIT_EXIT_CODES.get(run.state.type, 1))


@app.command()
def inspect(run_id: str) -> None:
    """Show a run and its state history, read from its event stream."""
    from flowbus._redis.watch import history

    async def load() -> tuple[Any, Any]:
        runtime = await get_runtime()
        return await runtime.store.read_run(run_id), await history(runtime, run_id)

    try:
        run, events = _run(load())
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"[bold]{run.name}[/bold] {run.id}  flow={run.flow_name} queue={run.queue}")
    console.print(f"state: {run.state.type.value} {run.state.name!r}  run_count={run.run_count}")
    table = Table("time", "from", "to", "name", "run", "pause key", "message")
    for e in events:
        stamp = e.timestamp.strftime("%H:%M:%S.%f")[:-3]
        table.add_row(
            stamp, e.from_type, e.type.value, e.name, str(e.run_count), e.pause_key, e.message
        )
    console.print(table)


@app.command()
def watch(run_id: str) -> None:
    """Print a run's state changes as they are published, until it ends."""
    from flowbus._redis.watch import follow

    async def go() -> None:
        runtime = await get_runtime()
        await runtime.store.read_run(run_id)  # a clear error for an unknown run
        async for e in follow(runtime, run_id):
            stamp = e.timestamp.strftime("%H:%M:%S.%f")[:-3]
            console.print(f"{stamp} {e.type.value:<10} {e.name:<12} {escape(e.message)}")

    try:
        _run(go())
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc


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
        state = _run(go())
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"cancelled {run_id}" if state.is_cancelled() else f"cancelling {run_id}")


@app.command()
def suspend(
    run_id: str, timeout: Annotated[float | None, typer.Option(help="Seconds")] = None
) -> None:
    """Ask a running run to suspend at its next task boundary."""
    from flowbus._engine.suspension import request_suspension

    try:
        _run(request_suspension(run_id, timeout))
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"suspending {run_id}")


@app.command()
def deploy(
    target: Annotated[str, typer.Argument(help="MODULE:FLOW, e.g. myflows:etl")],
    name: Annotated[str, typer.Option()],
    queue: Annotated[str, typer.Option()] = "default",
) -> None:
    """Register a deployment of a flow so workers can run it."""
    from flowbus.flows import Flow

    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _fail(f"cannot import {module_name!r}: {exc}", 2) from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        raise _fail(f"{target} is not a flow", 2)
    deployment_id = _run(obj.adeploy(name, queue))
    console.print(f"deployment {obj.name}/{name} {deployment_id} on queue {queue}")


@app.command("run")
def run_deployment_cmd(
    deployment: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="k=v (v parsed as JSON)")
    ] = None,
    wait_: Annotated[bool, typer.Option("--wait")] = False,
) -> None:
    """Create a run of a deployment for the workers; --wait follows it to the end."""
    from flowbus.client import get_client
    from flowbus.flow_runs import await_for_flow_run

    parameters: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"--param {item!r} is not k=v", 2)
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value

    async def go() -> Any:
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(deployment, parameters)
        console.print(f"created {run.id}")
        return await await_for_flow_run(run.id) if wait_ else run

    try:
        run = _run(go())
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    if wait_:
        console.print(f"{run.id} {run.state.type.value}")
        raise typer.Exit(WAIT_EXIT_CODES.get(run.state.type, 1))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def worker(ctx: typer.Context) -> None:
    """Start a worker: flowbus worker MODULE… --queue Q --concurrency N (see --help)."""
    # exec, not import: the worker package builds on flowbus, never the other way round
    os.execv(sys.executable, [sys.executable, "-m", "flowbus_worker", *ctx.args])


@server_app.command("start")
def server_start() -> None:
    """Start (or find) the embedded default server and print its URL."""
    from flowbus._redis.embedded import default_server_url
    from flowbus.settings import get_settings

    try:
        url = default_server_url(get_settings())
    except FlowbusError as exc:
        raise _fail(str(exc)) from exc
    console.print(url, soft_wrap=True)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded default server."""
    from flowbus._redis.embedded import stop_default_server
    from flowbus.settings import get_settings

    stopped = stop_default_server(get_settings())
    console.print("stopped" if stopped else "not running")


@server_app.command("status")
def server_status() -> None:
    """Show the embedded default server: URL (password masked), pid, program, files, uptime."""
    from flowbus._redis import embedded
    from flowbus._redis.runtime import redact
    from flowbus.settings import get_settings

    settings = get_settings()
    status = embedded.server_status(settings)
    if status is None:
        console.print(f"not running (home {settings.home})")
        raise typer.Exit(1)
    minutes, seconds = divmod(status.uptime_seconds, 60)
    hours, minutes = divmod(minutes, 60)
    for label, value in (
        ("url", redact(status.url)),
        ("pid", status.pid),
        ("program", status.program),
        ("data", status.data_dir),
        ("log", status.log_file),
        ("uptime", f"{hours}h {minutes:02d}m {seconds:02d}s"),
    ):
        console.print(f"{label + ':':<9}{value}", highlight=False, soft_wrap=True)


def main() -> None:
    app()
