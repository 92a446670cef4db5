"""State changes from the page (POST, CSRF-checked), through the same calls as Python's API.

A resume goes through :func:`aresume_flow_run`: the same schema validation and the same
compare-and-set; its refusals come back to the form, field by field.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from flowbus._engine.suspension import request_suspension
from flowbus.client import get_client
from flowbus.exceptions import DeploymentNotFound, FlowbusError, InvalidRunInput
from flowbus.flow_runs import aresume_flow_run
from flowbus.input.run_input import check_against_schema
from flowbus.states import Cancelling
from flowbus.ui.forms import errors_by_field, object_value
from flowbus.ui.guard import csrf_ok
from flowbus.ui.pages import render, runtime_of
from flowbus.views.detail import read_detail
from flowbus.views.fields import InputChoice, parse_schema
from flowbus.views.params import parameter_errors


async def _form(request: Request) -> dict[str, str] | None:
    """The posted fields, or ``None`` when the CSRF check fails."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return fields if csrf_ok(request, fields) else None


def _forbidden() -> Response:
    return HTMLResponse("This form has expired: reload the page.", status_code=403)


async def resume(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden()
    run_id = request.path_params["run_id"]
    try:
        detail = await read_detail(runtime_of(request), run_id)
    except FlowbusError as exc:
        return render(request, "_notice.html", message=str(exc), ok=False)
    pause = detail.pause
    values: dict[str, Any] | None = None
    chosen = _chosen(form, pause.choices if pause else [])
    if pause is not None and pause.wants_input and form.get("with_input") == "1":
        fields = list(pause.choices[chosen].fields) if pause.choices else pause.fields
        values = object_value(fields, form)
    try:
        await aresume_flow_run(run_id, values)
    except InvalidRunInput as exc:
        problems = exc.errors
        if pause is not None and pause.choices:
            problems = _errors_of_choice(pause.choices[chosen], values, problems)
        return render(
            request,
            "_run_pause.html",
            d=detail,
            values=values or {},
            errors=errors_by_field(problems),
            chosen=chosen,
        )
    except FlowbusError as exc:
        return render(request, "_notice.html", message=str(exc), ok=False)
    return render(request, "_notice.html", message=f"Resumed {run_id}", ok=True)


def _chosen(form: dict[str, str], choices: list[InputChoice]) -> int:
    """The index of the input model picked in the form (the first one by default)."""
    picked = form.get("choice", "")
    return int(picked) if picked.isdigit() and int(picked) < len(choices) else 0


def _errors_of_choice(
    choice: InputChoice, values: Any, problems: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """A union refuses input as a whole ("not valid under any of the given schemas"): the
    model picked in the form names the fields it refuses instead, when it refuses any."""
    if any(path for path, _ in problems):
        return problems
    try:
        check_against_schema(json.dumps(choice.schema), values or {})
    except InvalidRunInput as exc:
        return exc.errors
    return problems


async def suspend(request: Request) -> Response:
    if await _form(request) is None:
        return _forbidden()
    run_id = request.path_params["run_id"]
    try:
        await request_suspension(run_id, None)
    except FlowbusError as exc:
        return render(request, "_notice.html", message=str(exc), ok=False)
    return render(request, "_notice.html", message=f"Suspending {run_id}", ok=True)


async def cancel(request: Request) -> Response:
    if await _form(request) is None:
        return _forbidden()
    run_id = request.path_params["run_id"]
    try:
        async with get_client() as client:
            state = (await client.set_flow_run_state(run_id, Cancelling())).state or Cancelling()
    except FlowbusError as exc:
        return render(request, "_notice.html", message=str(exc), ok=False)
    done = "Cancelled" if state.is_cancelled() else "Cancelling"
    return render(request, "_notice.html", message=f"{done} {run_id}", ok=True)


async def run_deployment(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden()
    runtime = runtime_of(request)
    try:
        dep = await runtime.deployments.read(request.path_params["deployment_id"])
    except DeploymentNotFound as exc:
        return render(request, "_notice.html", message=str(exc), ok=False)
    fields = parse_schema(dep.parameter_openapi_schema or {})
    parameters = object_value(fields, form)
    problems = parameter_errors(dep.parameter_openapi_schema, parameters)
    if problems:
        return render(
            request,
            "_deployment_form.html",
            d=dep,
            fields=fields,
            values=parameters,
            errors=errors_by_field(problems),
        )
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(dep.id, parameters)
    response = render(request, "_notice.html", message=f"Created {run.id}", ok=True)
    response.headers["HX-Redirect"] = f"/runs/{run.id}"
    return response
