"""The machinery: demo, workers, the embedded server and the web page."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowbus._redis.runtime import get_runtime
from flowbus.cli._output import console, fail, print_json, relative, run
from flowbus.exceptions import FlowbusError
from flowbus.views.queues import QueuePlace, list_queues, spread_names
from flowbus.views.system import WorkerInfo, list_workers

app = typer.Typer()
server_app = typer.Typer(help="The embedded Redis-compatible server.", no_args_is_help=True)
workers_app = typer.Typer(help="Live workers.", no_args_is_help=True)


@app.command()
def demo(
    ui: Annotated[
        bool, typer.Option("--ui", help="serve the web page with a demo run waiting in its inbox")
    ] = False,
    port: Annotated[int, typer.Option(help="port of the web page (--ui)")] = 4200,
) -> None:
    """Run a small flow end to end and narrate each state change from its event stream.

    With --ui: serve the web page (127.0.0.1) where a demo run waits for your approval.
    """
    from flowbus.demo import run_demo

    if ui:
        try:
            from flowbus.ui.demo import serve_demo
        except ImportError as exc:
            fail(f"the web page needs the ui extra: pip install 'flowbus[ui]' ({exc})")
    try:
        code = run(serve_demo("127.0.0.1", port, console.print) if ui else run_demo(console.print))
    except FlowbusError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def worker(ctx: typer.Context) -> None:
    """Start a worker: flowbus worker MODULE… --queue Q --concurrency N (see --help)."""
    # exec, not import: the worker package builds on flowbus, never the other way round
    os.execv(sys.executable, [sys.executable, "-m", "flowbus_worker", *ctx.args])


@app.command()
def ui(
    host: Annotated[
        str, typer.Option(help="address to bind (other than 127.0.0.1 needs FLOWBUS_UI_TOKEN)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 4200,
) -> None:
    """Serve the web page: runs waiting for input, runs, deployments and workers, live."""
    try:
        from flowbus.ui.serve import serve
    except ImportError as exc:
        fail(f"the web page needs the ui extra: pip install 'flowbus[ui]' ({exc})")
    try:
        serve(host, port, console.print)
    except (FlowbusError, OSError) as exc:
        fail(str(exc))


@workers_app.command("ls")
def workers_ls(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Live workers: queues, flows, concurrency, runs held and last heartbeat."""

    async def go() -> list[WorkerInfo]:
        return await list_workers(await get_runtime())

    try:
        found = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    if json_:
        print_json([w.as_json() for w in found])
        return
    table = Table("name", "queues", "flows", "concurrency", "runs held", "heartbeat", box=None)
    for w in found:
        table.add_row(
            escape(w.name),
            escape(", ".join(w.queues)),
            escape(", ".join(w.flows)),
            "" if w.concurrency is None else str(w.concurrency),
            "" if w.runs_held is None else str(w.runs_held),
            relative(w.last_beat),
        )
    console.print(table)


@app.command()
def queues(
    json_: Annotated[bool, typer.Option("--json")] = False,
    spread: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="print NAME-N queue names, one on each primary"),
    ] = None,
) -> None:
    """Where each queue lives (node and hash slot) and its queued, running and paused runs.

    A queue is one hash slot, so one shard of a Redis Cluster; --spread NAME prints names to
    give queues meant to use every shard.
    """
    if spread is not None:
        _print_spread(spread, json_)
        return

    async def go() -> list[QueuePlace]:
        return await list_queues(await get_runtime())

    try:
        places = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    if json_:
        print_json([p.as_json() for p in places])
        return
    table = Table("queue", "node", "slot", "queued", "running", "paused (timed)", box=None)
    for p in places:
        cells = (str(p.slot), str(p.queued), str(p.running), str(p.paused_with_deadline))
        table.add_row(escape(p.queue), escape(p.node), *cells)
    console.print(table)


def _print_spread(base: str, json_: bool) -> None:
    async def go() -> list[tuple[str, str]]:
        return await spread_names(await get_runtime(), base)

    try:
        names = run(go())
    except (FlowbusError, ValueError) as exc:
        fail(str(exc))
    if json_:
        print_json([{"queue": name, "node": node} for name, node in names])
        return
    table = Table("queue", "node", box=None)
    for name, node in names:
        table.add_row(escape(name), escape(node))
    console.print(table)


@server_app.command("start")
def server_start() -> None:
    """Start (or find) the embedded default server and print its URL."""
    from flowbus._redis.embedded import default_server_url
    from flowbus.settings import get_settings

    try:
        url = default_server_url(get_settings())
    except FlowbusError as exc:
        fail(str(exc))
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
