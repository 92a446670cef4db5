"""The pages (GET): inbox, runs, one run, deployments, workers, and the live event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from flowbus._redis.events import RunEvent
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowRunNotFound
from flowbus.states import StateType
from flowbus.ui.live import LiveHub
from flowbus.views.detail import RunDetail, read_detail
from flowbus.views.fields import example_input, parse_schema
from flowbus.views.runs import RunFilter, awaiting_input, list_runs
from flowbus.views.system import list_deployments, list_workers

#: Seconds between keep-alive comments on an idle event stream (no Redis involved).
_KEEPALIVE = 25.0
PAGE_SIZE = 50


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    env = request.app.state.env
    html = env.get_template(template).render(
        request=request, csrf=request.scope["state"]["csrf"], **context
    )
    return HTMLResponse(html, status_code=status)


async def home(request: Request) -> Response:
    return RedirectResponse("/inbox", status_code=303)


async def inbox(request: Request) -> Response:
    page = await awaiting_input(
        runtime_of(request), limit=PAGE_SIZE, cursor=request.query_params.get("after")
    )
    fragment = request.url.path.endswith("/rows")
    return render(request, "_inbox_rows.html" if fragment else "inbox.html", page=page)


def _filter(request: Request) -> tuple[RunFilter, str | None]:
    q = request.query_params
    state = q.get("state", "").upper()
    states = frozenset({state}) if state in StateType.__members__ else frozenset()
    wanted = RunFilter(states, q.get("flow") or None, q.get("awaiting") == "1")
    return wanted, q.get("queue") or None


async def runs(request: Request) -> Response:
    wanted, queue = _filter(request)
    try:
        page = await list_runs(
            runtime_of(request),
            queue=queue,
            wanted=wanted,
            limit=PAGE_SIZE,
            cursor=request.query_params.get("after"),
        )
    except ValueError:  # a queue name that cannot be one
        page = None
    query = {k: v for k, v in request.query_params.items() if k != "after"}
    fragment = request.url.path.endswith("/rows")
    return render(
        request,
        "_runs_rows.html" if fragment else "runs.html",
        page=page,
        query=query,
        states=list(StateType.__members__),
    )


async def _detail(request: Request) -> RunDetail | None:
    try:
        return await read_detail(runtime_of(request), request.path_params["run_id"])
    except FlowRunNotFound:
        return None


async def run_page(request: Request) -> Response:
    detail = await _detail(request)
    if detail is None:
        return render(request, "missing.html", status=404, what="run")
    part = request.path_params.get("part")
    templates = {None: "run.html", "status": "_run_status.html", "pause": "_run_pause.html"}
    if part not in templates:
        return HTMLResponse("", status_code=404)
    values = detail.pause.prefill() if detail.pause else {}
    return render(request, templates[part], d=detail, values=values, errors={}, chosen=0)


async def deployments(request: Request) -> Response:
    found = await list_deployments(runtime_of(request))
    forms = [
        (
            d,
            parse_schema(d.parameter_openapi_schema or {}),
            _prefill(d.parameter_openapi_schema, d.parameters),
        )
        for d in found
    ]
    return render(request, "deployments.html", forms=forms, errors={}, failed=None)


def _prefill(schema: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    return {**example_input(parse_schema(schema or {})), **defaults}


async def workers(request: Request) -> Response:
    return render(request, "workers.html", workers=await list_workers(runtime_of(request)))


def _message(position: str, event: RunEvent | None, run_id: str | None) -> str:
    """One SSE message, its id the hub's ``position`` after it; the event names are the
    triggers the page listens to."""
    if event is None:
        names = ["runs", "inbox", "run", "pause"]
    else:
        pausing = StateType.PAUSED in (event.type, event.from_type)
        names = ["runs"] + (["inbox"] if pausing else [])
        if run_id is not None:
            names = ["run"] + (["pause"] if pausing else [])
    data = json.dumps(
        {"run_id": event.run_id, "type": event.type.value} if event is not None else {}
    )
    return "".join(f"id: {position}\nevent: {name}\ndata: {data}\n\n" for name in names)


async def events(request: Request) -> Response:
    """Server-Sent Events: each run change as it is read from the queue streams, from the
    position the page was rendered at, or after the last message of a stream the browser
    reopens (``Last-Event-ID``)."""
    hub: LiveHub = request.app.state.hub
    run_id = request.query_params.get("run") or None
    since = request.headers.get("last-event-id") or request.query_params.get("since")

    async def stream() -> AsyncIterator[str]:
        async with hub.connect(run_id, since) as client:
            yield ": connected\n\n"
            while True:
                try:
                    position, event = await asyncio.wait_for(client.events.get(), _KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _message(position, event, run_id)

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
