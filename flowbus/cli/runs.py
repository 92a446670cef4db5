"""``flowbus ls`` and ``flowbus inspect``: runs as a paged table, and one run in full."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowbus._redis.runtime import get_runtime
from flowbus.cli._output import console, fail, print_json, relative, run, stamp, to_json
from flowbus.cli.markdown import TextMarkdown
from flowbus.exceptions import FlowbusError
from flowbus.states import StateType
from flowbus.views.detail import RunDetail, read_detail
from flowbus.views.fields import InputField
from flowbus.views.runs import RunFilter, RunPage, list_runs

app = typer.Typer()


def _states(values: list[str]) -> frozenset[str]:
    states = {v.upper() for v in values}
    unknown = sorted(states - set(StateType.__members__))
    if unknown:
        fail(f"unknown state {unknown[0]!r} (one of {', '.join(StateType.__members__)})", 2)
    return frozenset(states)


@app.command("ls")
def ls(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="e.g. PAUSED (repeatable)")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="flow name")] = None,
    awaiting_input: Annotated[
        bool, typer.Option("--awaiting-input", help="paused or suspended runs waiting for input")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    cursor: Annotated[str | None, typer.Option("--after", help="cursor printed by a page")] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON lines of runs")] = False,
) -> None:
    """List runs, newest first (read page by page: a long history costs only the page)."""
    wanted = RunFilter(_states(state or []), flow, awaiting_input)

    async def go() -> RunPage:
        return await list_runs(
            await get_runtime(), queue=queue, wanted=wanted, limit=limit, cursor=cursor
        )

    try:
        page = run(go())
    except (FlowbusError, ValueError) as exc:
        fail(str(exc))
    if json_:
        print_json({"runs": [r.as_json() for r in page.runs], "next": page.next_cursor})
        return
    table = Table("id", "flow", "name", "queue", "state", "created", "waits for", box=None)
    for r in page.runs:
        waits = ""
        if r.awaiting_input:
            waits = "input" + (f", {relative(r.deadline)}" if r.deadline else "")
        elif r.state_type == StateType.PAUSED:
            waits = "resume" + (f", {relative(r.deadline)}" if r.deadline else "")
        table.add_row(
            r.id,
            escape(r.flow_name),
            escape(r.name),
            escape(r.queue),
            f"{r.state_type} {escape(r.state_name)}",
            stamp(r.created),
            waits,
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: flowbus ls --after {page.next_cursor} …")


@app.command()
def inspect(
    run_id: str,
    json_: Annotated[bool, typer.Option("--json", help="everything as one JSON object")] = False,
) -> None:
    """Show a run: state history, parameters, result or error, task results, and what a
    paused run waits for (its input fields and a resume line to paste)."""

    async def go() -> RunDetail:
        return await read_detail(await get_runtime(), run_id)

    try:
        detail = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    if json_:
        print_json(detail.as_json())
        return
    show_detail(detail)


def show_detail(d: RunDetail) -> None:
    r = d.summary
    console.print(
        f"[bold]{escape(r.name)}[/bold] {r.id}  flow={escape(r.flow_name)} queue={escape(r.queue)}"
    )
    console.print(
        f"state: {r.state_type} {to_json(r.state_name)}  run_count={r.run_count}"
        f"  created {stamp(r.created)}"
    )
    if r.message:
        console.print(f"message: {escape(r.message)}")
    console.print(f"parameters: {escape(to_json(d.parameters))}")
    _history(d)
    if d.has_result:
        console.print(f"result: {escape(to_json(d.result))}")
    if d.traceback:
        console.print("error:")
        console.print(escape(d.traceback.rstrip()))
    if d.task_results:
        console.print("task results:")
        for key, value in d.task_results.items():
            console.print(f"  {escape(key)}: {escape(to_json(value))}")
    if d.pause is not None:
        _pause(d)


def _history(d: RunDetail) -> None:
    table = Table("time", "from", "to", "name", "run", "pause key", "message", box=None)
    for e in d.events:
        table.add_row(
            e.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3],
            e.from_type,
            e.type.value,
            escape(e.name),
            str(e.run_count),
            escape(e.pause_key),
            escape(e.message),
        )
    console.print(table)


def _pause(d: RunDetail) -> None:
    p = d.pause
    assert p is not None
    kind = "suspended" if p.suspended else "paused"
    until = (
        f", until {stamp(p.deadline)} ({relative(p.deadline)})" if p.deadline else ", no deadline"
    )
    wants = "waits for input" if p.wants_input else "waits for a resume"
    console.print(f"{kind} at key {escape(to_json(p.key))}: {wants}{until}")
    if p.description:
        console.print(TextMarkdown(p.description))
    if p.fields:
        console.print("input fields:")
        for f in p.fields:
            _field(f, "  ")
    if p.choices:
        titles = " | ".join(c.title for c in p.choices)
        console.print(f"input: one of {escape(titles)} (taken as the first it validates as)")
        for c in p.choices:
            console.print(f"  {escape(c.title)}:")
            for f in c.fields:
                _field(f, "    ")
    console.print(f"resume: {escape(d.resume_command)}")


def field_line(f: InputField) -> str:
    parts = [f"{f.name}: {f.type_label}"]
    if f.required and not f.has_default:
        parts.append("required")
    if f.has_default:
        parts.append(f"default {to_json(f.default)}")
    if f.kind == "enum":
        parts.append("choices " + ", ".join(to_json(c) for c in f.choices))
    line = ", ".join(parts)
    return f"{line} — {f.description}" if f.description else line


def _field(f: InputField, indent: str) -> None:
    console.print(f"{indent}{escape(field_line(f))}")
    for child in f.children:
        _field(child, indent + "  ")
    if f.item is not None and f.item.children:
        for child in f.item.children:
            _field(child, indent + "  [] ")
