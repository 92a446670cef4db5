"""The web app: routes, the guard, and what lives as long as the server (runtime, live hub)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowbus._redis.runtime import close_runtime, get_runtime
from flowbus.ui import actions, pages
from flowbus.ui.guard import Guard
from flowbus.ui.live import LiveHub, StampPosition
from flowbus.ui.render import HERE, environment


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    runtime = await get_runtime()
    hub = LiveHub(runtime)
    await hub.start()
    app.state.runtime = runtime
    app.state.hub = hub
    try:
        yield
    finally:
        await hub.aclose()
        await close_runtime()


def create_app(token: str | None = None) -> Starlette:
    """The app; with ``token``, every request must carry it (cookie, header or ``?token=``)."""
    routes = [
        Route("/", pages.home),
        Route("/inbox", pages.inbox),
        Route("/inbox/rows", pages.inbox),
        Route("/runs", pages.runs),
        Route("/runs/rows", pages.runs),
        Route("/runs/{run_id}", pages.run_page),
        Route("/runs/{run_id}/{part}", pages.run_page),
        Route("/runs/{run_id}/resume", actions.resume, methods=["POST"]),
        Route("/runs/{run_id}/suspend", actions.suspend, methods=["POST"]),
        Route("/runs/{run_id}/cancel", actions.cancel, methods=["POST"]),
        Route("/deployments", pages.deployments),
        Route("/deployments/{deployment_id}/run", actions.run_deployment, methods=["POST"]),
        Route("/workers", pages.workers),
        Route("/events", pages.events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token), Middleware(StampPosition)],
        lifespan=_lifespan,
    )
    app.state.env = environment()
    return app
