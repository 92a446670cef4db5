"""FLOWBUS_CLUSTER_WAIT_REPLICAS: a resume or a final transition is followed by WAIT on its
own connection; fewer replicas than asked within the timeout is logged, and changes nothing."""

from __future__ import annotations

import logging

import pytest

from flowbus import Cancelled, StateType, get_client
from flowbus.settings import get_settings
from tests.redis_clients import summed

pytestmark = pytest.mark.anyio


def waits() -> int:
    return summed("commandstats").get("cmdstat_wait", 0)


async def test_a_final_transition_waits_for_replicas_and_says_when_too_few_had_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, runtime_closed: None
) -> None:
    # Given flowbus asked to wait for one replica (the test server has none) for 10 ms
    monkeypatch.setenv("FLOWBUS_CLUSTER_WAIT_REPLICAS", "1")
    monkeypatch.setenv("FLOWBUS_CLUSTER_WAIT_TIMEOUT_MS", "10")
    get_settings.cache_clear()
    async with get_client() as client:
        dep = await client.create_deployment("f", "d")
        run = await client.create_flow_run_from_deployment(dep)
        before = waits()
        # When the run is cancelled
        with caplog.at_level(logging.WARNING, logger="flowbus"):
            await client.set_flow_run_state(run.id, Cancelled())
        # Then it is cancelled, one WAIT followed, and the missing replica was logged
        assert (await client.read_flow_run(run.id)).state.type is StateType.CANCELLED
    assert waits() - before == 1
    assert f"Run {run.id}: 0 of 1 replicas had its last change" in caplog.text


async def test_no_wait_by_default(runtime_closed: None) -> None:
    async with get_client() as client:
        dep = await client.create_deployment("f", "d")
        run = await client.create_flow_run_from_deployment(dep)
        before = waits()
        await client.set_flow_run_state(run.id, Cancelled())
    assert waits() == before
