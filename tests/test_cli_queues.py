"""``flowbus queues``: each queue's node and hash slot and what waits in it, on one server and
on a cluster; ``--spread`` names one queue per primary."""

from __future__ import annotations

import json

import pytest
from redis.crc import key_slot

from flowbus import get_client
from flowbus._redis.keys import Keys
from flowbus._redis.local_cluster import LocalCluster
from tests.conftest import TestServer
from tests.test_cli import cli

pytestmark = pytest.mark.anyio


def node_serving(server: TestServer, key: str) -> str:
    """``host:port`` of the server (the slot's primary on a cluster) that holds ``key``."""
    if isinstance(server, LocalCluster):
        return f"127.0.0.1:{server.primary_for(key).port}"
    return f"127.0.0.1:{server.port}"


async def test_queues_show_node_slot_and_counts(
    redis_server: TestServer, flowbus_env: str, runtime_closed: None
) -> None:
    # Given two queued runs of queue "reports" and one of "emails", no worker
    async with get_client() as client:
        reports = await client.create_deployment("add", "r", queue="reports")
        emails = await client.create_deployment("add", "e", queue="emails")
        for dep in (reports, reports, emails):
            await client.create_flow_run_from_deployment(dep, {"x": 1, "y": 1})

    # When the queues are listed
    done = await cli("queues", "--json")

    # Then each shows the node its slot lives on, the slot, and its two or one queued runs
    assert done.returncode == 0, done.stderr
    keys = Keys(flowbus_env)
    expected = [
        {
            "queue": name,
            "node": node_serving(redis_server, keys.queue(name).stream()),
            "slot": key_slot(name.encode()),
            "queued": queued,
            "running": 0,
            "paused_with_deadline": 0,
        }
        for name, queued in (("emails", 1), ("reports", 2))
    ]
    assert json.loads(done.stdout) == expected
    table = await cli("queues")
    assert table.returncode == 0 and "reports" in table.stdout and "slot" in table.stdout


async def test_spread_names_one_queue_per_primary(
    redis_server: TestServer, flowbus_env: str
) -> None:
    # When names are asked for base name "jobs"
    done = await cli("queues", "--spread", "jobs", "--json")

    # Then there is one per primary, each on the node named, all "jobs-N"
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout)
    primaries = redis_server.masters if isinstance(redis_server, LocalCluster) else 1
    assert len(names) == len({n["node"] for n in names}) == primaries
    keys = Keys(flowbus_env)
    for entry in names:
        assert entry["queue"].startswith("jobs-")
        assert entry["node"] == node_serving(redis_server, keys.queue(entry["queue"]).stream())


async def test_spread_refuses_a_name_no_queue_may_have() -> None:
    done = await cli("queues", "--spread", "no:colons")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Invalid queue name" in done.stderr
