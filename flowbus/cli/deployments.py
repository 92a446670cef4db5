"""Deployments: register one, list them, and create runs of one (``flowbus run``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowbus._redis.keys import validate_queue_name
from flowbus._redis.runtime import get_runtime
from flowbus.cli._output import console, errors, fail, print_json, run, stamp, to_json
from flowbus.cli.control import WAIT_EXIT_CODES, wait_for
from flowbus.cli.follow import print_outcome
from flowbus.exceptions import FlowbusError
from flowbus.models import Deployment, FlowRun
from flowbus.states import StateType
from flowbus.views.params import parameter_errors, parse_param_pairs
from flowbus.views.system import list_deployments

app = typer.Typer()
deployments_app = typer.Typer(help="Registered deployments.", no_args_is_help=True)


@app.command()
def deploy(
    target: Annotated[str, typer.Argument(help="MODULE:FLOW, e.g. myflows:etl")],
    name: Annotated[str, typer.Option()],
    queue: Annotated[str, typer.Option()] = "default",
) -> None:
    """Register a deployment of a flow so workers can run it."""
    from flowbus.flows import Flow

    try:
        validate_queue_name(queue)
    except ValueError as exc:
        fail(str(exc), 2)
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import {module_name!r}: {exc}", 2)
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        fail(f"{target} is not a flow", 2)
    try:
        deployment_id = run(obj.adeploy(name, queue))
    except FlowbusError as exc:
        fail(str(exc))
    console.print(f"deployment {obj.name}/{name} {deployment_id} on queue {queue}")


@app.command("run")
def run_deployment_cmd(
    deployment: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="k=v (v parsed as JSON unless the parameter is a str)"),
    ] = None,
    wait_: Annotated[bool, typer.Option("--wait", help="follow the run to its end")] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="seconds --wait waits (exit 124 after)")
    ] = None,
) -> None:
    """Create a run of a deployment for the workers; --wait follows it to the end.

    Parameters are checked against the schema the deployment stored: unknown or ill-typed
    ones are refused before a run is created.
    """

    async def go() -> FlowRun:
        from flowbus.client import get_client

        runtime = await get_runtime()
        dep: Deployment = await runtime.deployments.read(deployment)
        try:
            parameters = parse_param_pairs(param or [], dep.parameter_openapi_schema)
        except ValueError as exc:
            fail(str(exc), 2)
        problems = parameter_errors(dep.parameter_openapi_schema, {**dep.parameters, **parameters})
        if problems:
            for name, problem in problems:
                errors.print(
                    f"[red]invalid[/red] {escape(name or '<parameters>')}: {escape(problem)}"
                )
            raise typer.Exit(2)
        async with get_client() as client:
            return await client.create_flow_run_from_deployment(dep.id, parameters)

    for item in param or []:
        if "=" not in item or item.startswith("="):
            fail(f"--param {item!r} is not k=v", 2)
    try:
        created = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    console.print(f"created {created.id}")
    if wait_:
        detail = wait_for(str(created.id), timeout)
        r = detail.summary
        console.print(f"{r.id} {r.state_type} {escape(r.state_name)}")
        print_outcome(detail, console)
        raise typer.Exit(WAIT_EXIT_CODES.get(StateType(r.state_type), 1))


@deployments_app.command("ls")
def deployments_ls(
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List deployments: name, queue, default parameters and the parameters the flow takes."""

    async def go() -> list[Deployment]:
        return await list_deployments(await get_runtime())

    try:
        found = run(go())
    except FlowbusError as exc:
        fail(str(exc))
    if json_:
        print_json([d.model_dump(mode="json") for d in found])
        return
    table = Table("name", "id", "queue", "parameters", "defaults", "created", box=None)
    for d in found:
        props = (d.parameter_openapi_schema or {}).get("properties", {})
        takes = ", ".join(props) if isinstance(props, dict) else ""
        table.add_row(
            escape(d.full_name),
            str(d.id),
            escape(d.queue),
            escape(takes),
            escape(to_json(d.parameters)),
            stamp(d.created),
        )
    console.print(table)
