"""Fixtures of the end-to-end tests: worker processes that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from tests.conftest import TestServer, env_for_subprocess
from tests.e2e.support import WorkerProcess, dump_logs, spawn_worker
from tests.redis_clients import async_redis

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(
    redis_server: TestServer,
    flowbus_env: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[StartWorker]:
    """Start workers (``start_worker("a")``); every one is stopped when the test ends."""
    started: list[WorkerProcess] = []
    env = env_for_subprocess(redis_server.url, flowbus_env)

    def start(
        name: str, *extra: str, queue: str = "default", module: str = "tests.e2e.flows_module"
    ) -> WorkerProcess:
        worker = spawn_worker(env, tmp_path, name, *extra, queue=queue, module=module)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.ensure_stopped()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            dump_logs(started)


@pytest.fixture
async def rclient(redis_server: TestServer) -> AsyncIterator[aredis.Redis]:
    """A plain async Redis client for raw stream commands (decoded replies)."""
    client = async_redis(redis_server.url, decode_responses=True)
    if isinstance(client, aredis.RedisCluster):
        # connected here: redis-py's cluster transactions queue commands on a thread of their
        # own, which would otherwise connect on its short-lived loop
        await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
