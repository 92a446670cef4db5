"""The async client against a real Redis: runs, states, deployments and configuration errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest

from flowbus import (
    Completed,
    FlowbusClient,
    Pending,
    Running,
    Scheduled,
    StateType,
    flow,
    get_client,
)
from flowbus._core.bridge import run_blocking
from flowbus._core.codec import text
from flowbus._redis.runtime import close_runtime
from flowbus._redis.store import RunStore
from flowbus.exceptions import (
    ClientNotOpen,
    ConfigurationError,
    DeploymentNotFound,
    FlowRunNotFound,
    InvalidStateTransition,
)
from flowbus.settings import get_settings

anyio_test = pytest.mark.anyio


async def run_snapshot(store: RunStore, run_id: UUID) -> tuple[Any, Any]:
    keys = await store.run_keys(run_id)
    return await store.redis.hgetall(keys.run), await store.redis.lrange(keys.history, 0, -1)


@flow
def greet(name: str = "world", punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


# -- runs ------------------------------------------------------------------------------------------


@anyio_test
async def test_create_and_read_a_flow_run(runtime_closed: None) -> None:
    async with get_client() as client:
        # When a run is created
        run = await client.create_flow_run("etl", {"day": "2024-01-01"}, queue="nightly")

        # Then it is SCHEDULED, readable, and not handed to workers
        read = await client.read_flow_run(run.id)
        assert read == run
        assert (read.flow_name, read.queue, read.parameters) == (
            "etl",
            "nightly",
            {"day": "2024-01-01"},
        )
        assert read.state.type is StateType.SCHEDULED
        queue = client.store.keys.queue("nightly")
        assert await client.store.redis.xlen(queue.stream()) == 0
        assert await client.read_flow_run(str(run.id)) == run


@anyio_test
async def test_read_flow_runs_filters_by_state_flow_and_queue(runtime_closed: None) -> None:
    async with get_client() as client:
        # Given runs of two flows in two queues, one of them running
        # (created in distinct milliseconds: "newest first" is by creation time in ms)
        a1 = await client.create_flow_run("a", queue="q1")
        await anyio.sleep(0.003)
        a2 = await client.create_flow_run("a", queue="q2")
        await anyio.sleep(0.003)
        b1 = await client.create_flow_run("b", queue="q1")
        await client.set_flow_run_state(a2.id, Pending())
        await client.set_flow_run_state(a2.id, Running())

        def ids(runs: list[Any]) -> list[UUID]:
            return [run.id for run in runs]

        # Then each filter, and their combination, selects the right runs, newest first
        assert ids(await client.read_flow_runs()) == [b1.id, a2.id, a1.id]
        assert ids(await client.read_flow_runs(queue="q1")) == [b1.id, a1.id]
        assert ids(await client.read_flow_runs(flow_name="a")) == [a2.id, a1.id]
        assert ids(await client.read_flow_runs(state_types=[StateType.RUNNING])) == [a2.id]
        assert ids(
            await client.read_flow_runs(
                queue="q1", flow_name="a", state_types=[StateType.SCHEDULED]
            )
        ) == [a1.id]
        assert await client.read_flow_runs(queue="q2", state_types=[StateType.SCHEDULED]) == []
        assert ids(await client.read_flow_runs(limit=1)) == [b1.id]


@anyio_test
async def test_listing_reads_a_large_queue_page_by_page_and_drops_expired_ids(
    runtime_closed: None,
) -> None:
    async with get_client() as client:
        # Given 4 runs of flow "rare", then 250 newer runs of flow "common" in one queue,
        # 10 of which have expired (their hash is gone, their id still indexed)
        rare = [await client.create_flow_run("rare", queue="big") for _ in range(4)]
        await anyio.sleep(0.003)
        common = [await client.create_flow_run("common", queue="big") for _ in range(250)]
        store = client.store
        expired = common[100:110]
        for run in expired:
            await store.redis.delete((await store.run_keys(run.id)).run)

        # When the rare runs are listed (they sit three pages deep), and the newest few
        listed = await client.read_flow_runs(flow_name="rare", limit=10)
        newest = await client.read_flow_runs(queue="big", limit=3)

        # Then every rare run is found once; the newest are among the last created (runs of
        # one millisecond tie); and the expired ids left the index on the way
        assert sorted(r.id for r in listed) == sorted(r.id for r in rare)
        assert len(newest) == 3
        assert {r.id for r in newest} <= {r.id for r in common[-30:]}
        index = store.keys.queue("big").runs()
        assert await store.redis.zcard(index) == 254 - len(expired)


@anyio_test
async def test_set_flow_run_state_accepted(runtime_closed: None) -> None:
    async with get_client() as client:
        run = await client.create_flow_run("etl")

        returned = await client.set_flow_run_state(run.id, Pending(message="claimed"))

        read = await client.read_flow_run(run.id)
        assert returned.state is not None and returned.state.is_pending()
        assert (read.state.type, read.state.message) == (StateType.PENDING, "claimed")


@anyio_test
async def test_set_flow_run_state_refused_raises_and_writes_nothing(
    runtime_closed: None,
) -> None:
    async with get_client() as client:
        # Given a scheduled run
        run = await client.create_flow_run("etl")
        before = await run_snapshot(client.store, run.id)

        # When an illegal state is proposed
        with pytest.raises(InvalidStateTransition) as refused:
            await client.set_flow_run_state(run.id, Completed())

        # Then the error carries the reason and the current state, and nothing changed
        assert refused.value.reason == "cannot move from SCHEDULED to COMPLETED"
        assert refused.value.state is not None and refused.value.state.is_scheduled()
        assert refused.value.run_id == str(run.id)
        assert "current state: SCHEDULED" in str(refused.value)
        assert await run_snapshot(client.store, run.id) == before


@anyio_test
async def test_force_is_the_retry_that_leaves_a_final_state(runtime_closed: None) -> None:
    async with get_client() as client:
        # Given a completed run
        run = await client.create_flow_run("etl")
        for state in (Pending(), Running(), Completed()):
            await client.set_flow_run_state(run.id, state)

        # Then it stays final unless forced
        with pytest.raises(InvalidStateTransition, match="only an explicit retry"):
            await client.set_flow_run_state(run.id, Scheduled())
        await client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)

        read = await client.read_flow_run(run.id)
        assert (read.state.type, read.state.name) == (StateType.SCHEDULED, "AwaitingRetry")


@anyio_test
async def test_an_unknown_run_is_not_found(runtime_closed: None) -> None:
    async with get_client() as client:
        with pytest.raises(FlowRunNotFound):
            await client.read_flow_run(uuid4())
        with pytest.raises(FlowRunNotFound):
            await client.set_flow_run_state(uuid4(), Running())
        assert await client.read_flow_runs() == []


@anyio_test
async def test_the_client_works_without_async_with(runtime_closed: None) -> None:
    # as in Prefect: only flowbus's own `store` property needs the client entered
    client = FlowbusClient()

    assert await client.read_flow_runs() == []
    with pytest.raises(ClientNotOpen, match="async with get_client"):
        client.store  # noqa: B018 - the property raises


# -- deployments -------------------------------------------------------------------------------


@anyio_test
async def test_a_deployment_is_read_by_id_and_by_full_name(runtime_closed: None) -> None:
    async with get_client() as client:
        dep_id = await client.create_deployment(
            "etl", "nightly", queue="batch", parameters={"day": "today"}
        )

        by_id = await client.read_deployment(dep_id)
        by_text_id = await client.read_deployment(str(dep_id))
        by_name = await client.read_deployment("etl/nightly")

        assert by_id == by_text_id == by_name
        assert (by_id.id, by_id.flow_name, by_id.name, by_id.queue) == (
            dep_id,
            "etl",
            "nightly",
            "batch",
        )
        assert by_id.parameters == {"day": "today"} and by_id.full_name == "etl/nightly"


@anyio_test
async def test_redeploying_keeps_the_id_and_updates_the_rest(runtime_closed: None) -> None:
    async with get_client() as client:
        first = await client.create_deployment("etl", "nightly", queue="a")
        second = await client.create_deployment("etl", "nightly", queue="b")

        assert first == second
        assert (await client.read_deployment("etl/nightly")).queue == "b"


@anyio_test
async def test_a_run_from_a_deployment_is_enqueued_with_merged_parameters(
    runtime_closed: None,
) -> None:
    async with get_client() as client:
        # Given a deployment with default parameters
        dep_id = await client.create_deployment(
            "etl", "nightly", queue="batch", parameters={"day": "today", "full": False}
        )

        # When a run is created from it with an override
        run = await client.create_flow_run_from_deployment(dep_id, {"full": True})

        # Then the run has the merged parameters and sits in the deployment's queue stream
        assert run.parameters == {"day": "today", "full": True}
        assert (run.deployment_id, run.queue, run.flow_name) == (dep_id, "batch", "etl")
        assert run.state.type is StateType.SCHEDULED
        stream = client.store.keys.queue("batch").stream()
        assert await client.store.redis.xlen(stream) == 1
        [(_, job)] = await client.store.redis.xrange(stream) or []
        assert job is not None and text(job[b"run_id"]) == str(run.id)


@anyio_test
async def test_an_unknown_deployment_is_not_found(runtime_closed: None) -> None:
    async with get_client() as client:
        for ref in (uuid4(), str(uuid4()), "etl/missing", "not-even-a-name"):
            with pytest.raises(DeploymentNotFound):
                await client.read_deployment(ref)
        with pytest.raises(DeploymentNotFound):
            await client.create_flow_run_from_deployment("etl/missing")
        assert await client.read_flow_runs() == []


def test_flow_deploy_from_sync_code_returns_the_deployment_id() -> None:
    try:
        dep_id = greet.deploy("default-greeting", parameters={"name": "sync"})

        assert isinstance(dep_id, UUID)
        assert run_blocking(_read_deployment, "greet/default-greeting").id == dep_id
    finally:
        run_blocking(close_runtime)


async def _read_deployment(ref: str) -> Any:
    async with get_client() as client:
        return await client.read_deployment(ref)


@anyio_test
async def test_flow_adeploy_and_deploy_from_async_code(runtime_closed: None) -> None:
    dep_id = await greet.adeploy("loud", queue="shouts", parameters={"punctuation": "!!"})
    again = await greet.deploy("loud", queue="shouts")

    assert isinstance(dep_id, UUID) and again == dep_id
    async with get_client() as client:
        deployment = await client.read_deployment("greet/loud")
    assert (deployment.queue, deployment.parameters) == ("shouts", {})


# -- configuration ---------------------------------------------------------------------------------


@pytest.fixture(params=["redis://127.0.0.1:1/0", "redis://:s3cret@127.0.0.1:1/0"])
def unreachable_redis(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """FLOWBUS_REDIS_URL pointing at a port nothing listens on (with and without password)."""
    url: str = request.param
    monkeypatch.setenv("FLOWBUS_REDIS_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@anyio_test
async def test_an_unreachable_redis_is_a_configuration_error(
    unreachable_redis: str, runtime_closed: None
) -> None:
    started = time.monotonic()

    # When the client first needs Redis, Then it fails fast, naming the URL but no password
    with pytest.raises(ConfigurationError, match=r"Cannot reach Redis at redis://") as failed:
        async with get_client() as client:
            await client.read_flow_runs()

    assert time.monotonic() - started < 10
    assert "127.0.0.1:1/0" in str(failed.value)
    assert "s3cret" not in str(failed.value)
