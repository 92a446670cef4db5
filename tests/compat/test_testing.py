"""``prefect_test_harness``: a user's tests run on a private server of their own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from flowbus import flow
from flowbus.client.orchestration import get_client
from flowbus.exceptions import ObjectNotFound
from flowbus.testing.utilities import prefect_test_harness


@flow
def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture
def harness() -> Iterator[str]:
    """As Prefect's docs write the fixture (there session-scoped): the private server's URL."""
    with prefect_test_harness():
        yield os.environ["FLOWBUS_REDIS_URL"]


def test_flows_in_the_block_run_on_a_private_server(harness: str) -> None:
    state = add(1, 2, return_state=True)
    assert state.result() == 3
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state is not None and run.state.is_completed()
    keys = redis.Redis.from_url(harness).keys("*")
    assert keys, "the run was written to the harness's server"


def test_the_block_leaves_the_outside_settings_and_stops_its_server(flowbus_env: str) -> None:
    outside = os.environ["FLOWBUS_REDIS_URL"]
    with prefect_test_harness(server_startup_timeout=None):
        inside = os.environ["FLOWBUS_REDIS_URL"]
        assert "FLOWBUS_KEY_PREFIX" not in os.environ
        run_id = add(2, 3, return_state=True).state_details.flow_run_id
    assert os.environ["FLOWBUS_REDIS_URL"] == outside
    assert os.environ["FLOWBUS_KEY_PREFIX"] == flowbus_env
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(inside, socket_connect_timeout=1).ping()
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_flow_run(run_id)
    assert add(1, 1) == 2  # the outside server serves again
