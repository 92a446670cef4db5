"""``flowbus ui``: serve the app with uvicorn, refusing an open address without a token."""

from __future__ import annotations

import os
from collections.abc import Callable

import uvicorn

from flowbus.exceptions import ConfigurationError
from flowbus.ui.app import create_app

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def check_exposure(host: str, token: str | None) -> None:
    """Any address but this machine's own needs ``FLOWBUS_UI_TOKEN``."""
    if host not in LOCAL_HOSTS and not token:
        raise ConfigurationError(
            f"refusing to serve on {host}: set FLOWBUS_UI_TOKEN (every request must carry it)"
        )


def serve(host: str, port: int, echo: Callable[[str], None]) -> None:
    token = os.environ.get("FLOWBUS_UI_TOKEN") or None
    check_exposure(host, token)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    echo(f"flowbus ui on {address}")
    config = uvicorn.Config(create_app(token), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise ConfigurationError(f"cannot serve on {host}:{port} (is the port taken?)")
