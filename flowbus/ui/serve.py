"""``flowbus ui``: serve the app with uvicorn, refusing an open address without a token."""

from __future__ import annotations

import asyncio
import os
import socket
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


class Server(uvicorn.Server):
    """uvicorn's server, telling when it listens (so an address is printed only then)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()


def address(host: str, port: int, token: str | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


async def _serve(server: Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot start (a taken port): not listening
        pass


async def start(
    host: str, port: int, token: str | None = None
) -> tuple[Server, asyncio.Task[None]]:
    """The server, serving on its task once this returns; ``ConfigurationError`` if it cannot."""
    server = Server(uvicorn.Config(create_app(token), host=host, port=port, log_level="warning"))
    serving = asyncio.ensure_future(_serve(server))
    listening = asyncio.ensure_future(server.listening.wait())
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not server.listening.is_set():
        listening.cancel()
        raise ConfigurationError(f"cannot serve on {host}:{port} (is the port taken?)")
    return server, serving


def serve(host: str, port: int, echo: Callable[[str], None]) -> None:
    token = os.environ.get("FLOWBUS_UI_TOKEN") or None
    check_exposure(host, token)

    async def main() -> None:
        _, serving = await start(host, port, token)
        echo(f"flowbus ui on {address(host, port, token)}")
        await serving

    asyncio.run(main())
