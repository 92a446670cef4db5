"""Given a worker, resume requests published with raw XADD are applied once, with outcomes."""

from __future__ import annotations

import json
from typing import cast

import pytest
import redis.asyncio as aredis

from flowbus import StateType, get_client
from flowbus._redis.keys import Keys
from flowbus._redis.runtime import get_runtime
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker
from tests.e2e.flows_module import key
from tests.e2e.support import is_suspended, wait_for_run

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


async def read_outcomes(rclient: aredis.Redis, stream: str, count: int) -> list[dict[str, str]]:
    """Block until ``count`` outcomes were recorded; return them in order."""
    outcomes: list[dict[str, str]] = []
    last = "0-0"
    while len(outcomes) < count:
        reply = cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]],
            await rclient.xread({stream: last}, block=90_000),
        )
        assert reply, f"only {len(outcomes)} outcome(s) within 90 s"
        for _stream, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                outcomes.append(fields)
    return outcomes


async def test_raw_resume_requests(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a suspended run waiting for an Approval
    start_worker("a")
    async with get_client() as client:
        dep = await client.create_deployment("approval", "d")
        run = await client.create_flow_run_from_deployment(dep, {"tag": "r"})
    await wait_for_run(run.id, is_suspended, within=90)
    qkeys = Keys(flowbus_env).queue("default")
    requests = qkeys.resume_requests()
    rid = str(run.id)
    # When requests arrive as plain stream entries: invalid input, valid, the valid one
    # repeated, then one naming no run
    for fields in (
        {"run_id": rid, "input": json.dumps({"approved": "maybe"}), "request_id": "r1"},
        {"run_id": rid, "input": json.dumps({"approved": True, "note": "raw"}), "request_id": "r2"},
        {"run_id": rid, "input": json.dumps({"approved": False}), "request_id": "r2"},
        {"run_id": "not-a-run", "request_id": "r3"},
    ):
        await rclient.xadd(requests, fields)  # type: ignore[arg-type]
    # Then each request id has one outcome, and the run completes with the valid input
    outcomes = await read_outcomes(rclient, qkeys.resume_outcomes(), 3)
    assert [o["request_id"] for o in outcomes] == ["r1", "r2", "r3"]
    r1, r2, r3 = outcomes
    assert r1["status"] == "rejected" and r1["run_id"] == rid
    assert any(field == "approved" for field, _msg in json.loads(r1["errors"]))
    assert r2["status"] == "accepted" and r2["reason"] == "" and json.loads(r2["errors"]) == []
    assert r3["status"] == "rejected" and "not a UUID" in r3["reason"]
    done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    runtime = await get_runtime()
    assert await runtime.store.read_result(run.id) == "True:raw"
    assert await rclient.get(key("count:r-after")) == "1"
    assert await rclient.xlen(qkeys.resume_outcomes()) == 3
    assert (await rclient.xpending(requests, "flowbus-workers"))["pending"] == 0
