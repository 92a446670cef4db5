"""Given real worker processes, no entry of any stream they read can take one down.

The first tests are the reproductions of the reliability report, as an operator types them;
the last one fuzzes every stream a worker reads, interleaved with valid work.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.to_thread
import msgpack
import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbus import StateType, get_client
from flowbus._core.codec import text
from flowbus._redis.keys import Keys, QueueKeys
from flowbus._redis.runtime import get_runtime
from flowbus.flow_runs import await_for_flow_run
from flowbus.models import FlowRun
from tests.conftest import TestServer
from tests.e2e.conftest import StartWorker
from tests.e2e.support import WorkerProcess, wait_for_run
from tests.redis_clients import async_redis, cli_args

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(240)]

GROUP = "flowbus-workers"


def qkeys(prefix: str, queue: str = "default") -> QueueKeys:
    return Keys(prefix).queue(queue)


def redis_cli(server: TestServer, *args: str | bytes) -> str:
    """Run ``redis-cli`` against the test server, as an operator would."""
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if cli is None:
        pytest.skip("no redis-cli on PATH")
    done = subprocess.run(
        [cli, *cli_args(server.url), *args], capture_output=True, check=True, timeout=30
    )
    return done.stdout.decode(errors="replace").strip()


async def add_run(x: int = 1) -> FlowRun:
    async with get_client() as client:
        dep = await client.create_deployment("add", "d")
        return await client.create_flow_run_from_deployment(dep, {"x": x, "y": 1})


async def completes(run: FlowRun) -> None:
    done = await await_for_flow_run(run.id, timeout=120)
    assert done.state.type is StateType.COMPLETED, done.state


async def first_entries(client: aredis.Redis, stream: str, within: float = 60.0) -> Any:
    """The stream's first entries once there are some (blocking reads shorter than the
    client's socket timeout, re-issued)."""
    with anyio.fail_after(within):
        while not (reply := await client.xread({stream: "0"}, block=2000)):
            pass
    return reply


def alive(*workers: WorkerProcess) -> None:
    for worker in workers:
        assert worker.proc.poll() is None, f"{worker.name} exited:\n{worker.log()[-3000:]}"
        assert "Traceback" not in worker.log() or "failed" in worker.log()


async def test_a_field_that_is_not_utf8_is_dead_lettered(
    start_worker: StartWorker,
    redis_server: TestServer,
    flowbus_env: str,
    rclient: aredis.Redis,
    runtime_closed: None,
) -> None:
    # Given two workers, and the report's command: a run_id whose bytes are not UTF-8
    workers = start_worker("a"), start_worker("b")
    keys = qkeys(flowbus_env)
    bad_id = redis_cli(redis_server, "XADD", keys.stream(), "*", "run_id", b"\xff\xfe")
    # When a valid run follows it
    await completes(await add_run())
    # Then no worker exited, the entry is a dead letter, and nothing stays pending
    alive(*workers)
    dead = cast(list[tuple[str, dict[str, str]]], await rclient.xrange(keys.dead_letter()))
    assert [fields["source_id"] for _id, fields in dead] == [bad_id]
    assert "not a UUID" in dead[0][1]["reason"]
    assert await rclient.xpending(keys.stream(), GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_a_poison_entry_past_max_deliveries_is_retired(
    start_worker: StartWorker,
    redis_server: TestServer,
    flowbus_env: str,
    rclient: aredis.Redis,
    runtime_closed: None,
) -> None:
    # Given a non-UTF-8 entry delivered 5 times to a consumer that is dead (no heartbeat)
    keys = qkeys(flowbus_env)
    raw = async_redis(redis_server.url)
    await raw.xgroup_create(keys.stream(), GROUP, id="0", mkstream=True)
    bad_id = text(await raw.xadd(keys.stream(), {"run_id": b"\xff\xfe"}))
    await raw.xreadgroup(GROUP, "ghost", {keys.stream(): ">"})
    await raw.xclaim(keys.stream(), GROUP, "ghost", 0, [bad_id], retrycount=5, justid=True)
    await raw.aclose()
    # When a worker's reclaimer takes it (the max-deliveries path)
    worker = start_worker("a")
    await completes(await add_run())
    dead = await first_entries(rclient, keys.dead_letter())
    # Then it is retired as a dead letter, and the worker lives on
    assert dead and dead[0][1][0][1]["source_id"] == bad_id
    alive(worker)
    await completes(await add_run(2))


async def test_deep_resume_input_gets_a_rejected_outcome(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a worker, and a resume request whose input nests 5,000 deep
    worker = start_worker("a")
    keys = qkeys(flowbus_env)
    deep = "[" * 5000 + "]" * 5000
    fields = {"run_id": str(uuid.uuid4()), "input": deep, "request_id": "deep"}
    await rclient.xadd(keys.resume_requests(), fields)  # type: ignore[arg-type]
    # Then the request gets a rejected outcome with the reason, and valid work goes on
    outcomes = await first_entries(rclient, keys.resume_outcomes())
    (_id, outcome), *_ = outcomes[0][1]
    assert outcome["request_id"] == "deep"
    assert outcome["status"] == "rejected"
    assert "nests deeper than 64 levels" in outcome["reason"]
    await completes(await add_run())
    alive(worker)


async def test_a_queue_entry_flow_field_never_overrides_the_runs_flow(
    start_worker: StartWorker, flowbus_env: str, rclient: aredis.Redis, runtime_closed: None
) -> None:
    # Given a real run, not started yet, and an entry naming it with a bogus flow
    keys = qkeys(flowbus_env)
    run = await (await get_runtime()).store.create_run("add", {"x": 2, "y": 2})  # not enqueued
    await rclient.xadd(keys.stream(), {"run_id": str(run.id), "flow": "bogus", "run_count": "0"})
    # When a worker takes the entry
    start_worker("a")
    # Then the run's own flow runs it
    await completes(run)


# -- fuzzing --------------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(
    ["run_id", "flow", "run_count", "input", "request_id", "action", "type", "deadline", "ts"]
    + ["name", "from_type", "pause_key", "", "x" * 300]
)
DEEP = st.integers(min_value=60, max_value=6000).map(lambda n: "[" * n + "]" * n)
WRONG_MSGPACK = st.sampled_from([msgpack.packb(v) for v in ([1, 2], "s", 3, None, {1: 2})])
VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"", b"0", b"-1"]),
    st.text(max_size=40).map(str.encode),
    st.integers(min_value=1, max_value=300_000).map(lambda n: b"z" * n),
    DEEP.map(str.encode),
    WRONG_MSGPACK,
    st.sampled_from(
        [b"COMPLETED", b"cancel", b"suspend", b"PAUSED", b"{}", b"[]", b"null", b"1e999"]
    ),
    st.uuids().map(lambda u: str(u).encode()),
)
ENTRY = st.dictionaries(FIELD_NAMES, VALUES, max_size=6)


@st.composite
def fuzz_batches(draw: st.DrawFn) -> list[tuple[str, dict[str, bytes]]]:
    """Entries for the streams a worker reads; ``@other`` / ``@real`` become real run ids."""
    kinds = st.sampled_from(["queue", "resume", "control", "events"])
    entries = draw(st.lists(st.tuples(kinds, ENTRY), min_size=5, max_size=25))
    out = []
    for kind, fields in entries:
        if draw(st.booleans()):
            fields = {**fields, "run_id": draw(st.sampled_from([b"@other", b"@real"]))}
        out.append((kind, fields))
    return out


async def test_fuzzed_streams_never_take_a_worker_down(
    start_worker: StartWorker,
    redis_server: TestServer,
    flowbus_env: str,
    runtime_closed: None,
) -> None:
    # Given two workers serving a queue, and a run of another queue
    workers = start_worker("a"), start_worker("b")
    keys = qkeys(flowbus_env)
    other = await (await get_runtime()).store.create_run("add", {"x": 1, "y": 1}, queue="other")
    raw = async_redis(redis_server.url)
    streams = {
        "queue": keys.stream(),
        "resume": keys.resume_requests(),
        "control": keys.control(),
        "events": keys.events(),
    }
    tried = 0

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=fuzz_batches())
    def fuzz(batch: list[tuple[str, dict[str, bytes]]]) -> None:
        anyio.from_thread.run(one_batch, batch)

    async def one_batch(batch: list[tuple[str, dict[str, bytes]]]) -> None:
        nonlocal tried
        # When fuzzed entries go to every stream, interleaved with valid runs
        valid = [await add_run()]
        for kind, fields in batch:
            real = valid[-1].id
            ids = {b"@other": str(other.id).encode(), b"@real": str(real).encode()}
            concrete = {k: ids.get(v, v) for k, v in fields.items()} or {"empty": b""}
            await raw.xadd(streams[kind], cast(Any, concrete))
            tried += 1
            if tried % 7 == 0:
                valid.append(await add_run())
        valid.append(await add_run())
        # Then every valid run completes, and no worker exited
        for run in valid:
            await wait_for_run(run.id, lambda r: r.state.is_final(), within=120)
        alive(*workers)

    try:  # hypothesis drives a sync callable: it runs in a thread, each batch on this loop
        await anyio.to_thread.run_sync(fuzz)
    finally:
        await raw.aclose()
    assert tried >= 30
    alive(*workers)
    # and the queue keeps working
    await completes(await add_run(7))
