"""A private redis-server per test session (per xdist worker), and a fresh key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flowbus._core import bridge
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.runtime import close_runtime
from flowbus.settings import get_settings
from tests.runs import close_background_runtime


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A private server for this test session, on a free port, AOF on."""
    server = EmbeddedServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def flowbus_env(
    redis_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """Point flowbus at the session's server under a key prefix no other test uses."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FLOWBUS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("FLOWBUS_KEY_PREFIX", prefix)
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield prefix
    if bridge.has_background_loop():
        # sync flows ran on the background loop: its runtime holds this test's settings
        bridge.run_blocking(close_runtime)
    get_settings.cache_clear()


@pytest.fixture
async def runtime_closed() -> AsyncIterator[None]:
    """Close the test loop's runtime at the end of an async test."""
    yield
    await close_runtime()


@pytest.fixture
async def background_closed() -> AsyncIterator[None]:
    """Close the background loop's runtime at the end of an async test that ran sync flows."""
    yield
    await close_background_runtime()


@pytest.fixture
def background_runtime_closed() -> Iterator[None]:
    """Close the background loop's runtime after a sync test, so the next sees its own env."""
    yield
    bridge.run_blocking(close_runtime)


def env_for_subprocess(redis_url: str, prefix: str) -> dict[str, str]:
    """Environment for a child process that must use the same server and prefix."""
    return {**os.environ, "FLOWBUS_REDIS_URL": redis_url, "FLOWBUS_KEY_PREFIX": prefix}
