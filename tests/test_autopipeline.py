"""Automatic pipelining and hiredis packing against a real Redis: calls of one loop turn share a
round trip, each caller gets its own replies or its own error, NOSCRIPT is recovered."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from flowbus._redis.autopipeline import AutoPipeline
from flowbus._redis.connect import QueuedCluster, close_client
from flowbus._redis.runtime import open_redis
from flowbus.settings import get_settings
from tests.conftest import on_cluster
from tests.redis_clients import primaries, summed

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis(flowbus_env: str) -> AsyncIterator[Redis]:
    client = open_redis(os.environ["FLOWBUS_REDIS_URL"], get_settings())
    yield client
    await close_client(client)


async def reads_processed(redis: Redis) -> int:
    """Socket reads the server (every primary of a cluster) processed so far."""
    return summed("stats")["total_reads_processed"]


async def no_reload() -> None:
    raise AssertionError("no script should be reloaded")


async def test_calls_of_one_loop_turn_share_one_round_trip(redis: Redis, flowbus_env: str) -> None:
    # Given 50 callers, each with its own command, submitting in the same loop turn
    batch = AutoPipeline(redis, no_reload)
    key = f"{flowbus_env}:counter"
    await redis.set(key, 0)  # the client's connection (to the key's node) is made, not counted
    await redis.delete(key)
    before = await reads_processed(redis)

    replies = await asyncio.gather(
        *(batch.execute(lambda pipe: pipe.execute_command("INCR", key)) for _ in range(50))
    )

    # Then each got its own reply, in submission order, and the server read a few times only
    # (one pipeline, and the INFO calls, one per primary; not one read per caller)
    assert sorted(r[0] for r in replies) == list(range(1, 51))
    assert [r[0] for r in replies] == list(range(1, 51))
    assert await reads_processed(redis) - before <= 1 + len(primaries())


async def test_a_callers_error_is_raised_to_that_caller_only(
    redis: Redis, flowbus_env: str
) -> None:
    # Given a caller whose command fails (wrong type) among callers whose commands succeed
    batch = AutoPipeline(redis, no_reload)
    hash_key, counter = f"{flowbus_env}:h", f"{flowbus_env}:c"
    await redis.hset(hash_key, "f", "v")

    outcomes: list[Any] = await asyncio.gather(
        batch.execute(lambda pipe: pipe.execute_command("INCR", counter)),
        batch.execute(lambda pipe: pipe.execute_command("INCR", hash_key)),
        batch.execute(lambda pipe: pipe.execute_command("GET", counter)),
        return_exceptions=True,
    )
    good, bad, good_too = outcomes

    # Then only that caller sees the error
    assert good == [1]
    assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)
    assert good_too == [b"1"]


async def test_noscript_loads_the_scripts_and_resends_only_what_met_it(
    redis: Redis, flowbus_env: str
) -> None:
    # Given a script call and a plain command in one turn, on a server that lost its scripts
    script = "return redis.call('INCR', KEYS[1])"
    sha = await redis.script_load(script)
    await redis.script_flush()
    loads: list[str] = []

    async def reload() -> None:
        loads.append(await redis.script_load(script))

    batch = AutoPipeline(redis, reload)
    scripted, plain = f"{flowbus_env}:scripted", f"{flowbus_env}:plain"

    by_script, by_command = await asyncio.gather(
        batch.execute(lambda pipe: pipe.execute_command("EVALSHA", sha, 1, scripted)),
        batch.execute(lambda pipe: pipe.execute_command("INCR", plain)),
    )

    # Then the scripts were loaded once, the script's caller got its reply, and the plain
    # command (which did not meet NOSCRIPT) ran once
    assert loads == [sha]
    assert by_script == [1] and by_command == [1]
    assert await redis.get(plain) == b"1"


async def test_a_second_noscript_is_raised(redis: Redis, flowbus_env: str) -> None:
    # Given a reload that does not bring the script back
    async def useless_reload() -> None:
        return None

    batch = AutoPipeline(redis, useless_reload)
    with pytest.raises(NoScriptError):
        await batch.execute(
            lambda pipe: pipe.execute_command("EVALSHA", "0" * 40, 1, f"{flowbus_env}:k")
        )


async def test_a_caller_cancelled_before_the_send_sends_nothing(
    redis: Redis, flowbus_env: str
) -> None:
    # Given a caller cancelled in the loop turn it submitted in
    batch = AutoPipeline(redis, no_reload)
    key = f"{flowbus_env}:never"
    call = asyncio.ensure_future(batch.execute(lambda pipe: pipe.execute_command("SET", key, "1")))
    await asyncio.sleep(0)  # the call has submitted its command
    call.cancel()

    # When the loop moves on and another caller's command is sent
    assert await batch.execute(lambda pipe: pipe.execute_command("EXISTS", key)) == [0]

    # Then the cancelled caller's command never reached Redis
    assert await redis.exists(key) == 0


one_server = pytest.mark.skipif(on_cluster(), reason="a cluster's pipelines use its own pool")


async def client_id(batch: AutoPipeline) -> int:
    """The id of the connection the batch of this turn was sent on."""
    (reply,) = await batch.execute(lambda pipe: pipe.execute_command("CLIENT", "ID"))
    return int(reply)


@one_server
async def test_a_batch_sent_while_another_waits_goes_out_on_another_connection(
    redis: Redis, flowbus_env: str
) -> None:
    # Given a batch waiting for its reply (a blocking pop), holding the kept connection
    batch = AutoPipeline(redis, no_reload)
    first = await client_id(batch)
    waiting = asyncio.ensure_future(
        batch.execute(lambda pipe: pipe.execute_command("BLPOP", f"{flowbus_env}:l", 0.3))
    )
    await asyncio.sleep(0.05)

    # When another turn's caller sends meanwhile
    other = await client_id(batch)

    # Then it was answered at once, on another connection; the first batch gets its own reply
    assert other != first and not waiting.done()
    assert await waiting == [None]
    assert await client_id(batch) in (first, other)


@one_server
async def test_a_kept_connection_the_server_closed_is_replaced(
    redis: Redis, flowbus_env: str
) -> None:
    # Given the batches' connection, closed by the server while it was kept
    batch = AutoPipeline(redis, no_reload)
    kept = await client_id(batch)
    await redis.client_kill_filter(_id=str(kept))
    key = f"{flowbus_env}:after-kill"

    # When the next caller sends its command
    reply = await batch.execute(lambda pipe: pipe.execute_command("INCR", key))

    # Then it ran once, on a new connection
    assert reply == [1]
    assert await client_id(batch) != kept


@one_server
async def test_a_pool_of_one_connection_keeps_none_from_the_clients_own_commands(
    flowbus_env: str,
) -> None:
    # Given a client allowed one connection, and a batch sent through it
    client = open_redis(os.environ["FLOWBUS_REDIS_URL"], get_settings(), max_connections=1)
    batch = AutoPipeline(client, no_reload)
    key = f"{flowbus_env}:one"
    try:
        assert await batch.execute(lambda pipe: pipe.execute_command("INCR", key)) == [1]

        # Then the client's own command finds the connection in the pool at once
        async with asyncio.timeout(2):
            assert await client.get(key) == b"1"
    finally:
        await close_client(client)


async def test_multi_word_commands_and_buffers_pack_as_redis_py_packs_them(redis: Redis) -> None:
    # connections of flowbus's pools pack with hiredis; names like "CLIENT SETNAME" are split
    config: Any = await redis.config_get("maxmemory-policy")
    assert "maxmemory-policy" in config
    key = "flowbus-packing-test:buffer"
    await redis.set(key, memoryview(b"raw bytes"))
    assert await redis.get(key) == b"raw bytes"
    assert await redis.object("encoding", key) in (b"embstr", "embstr")
    await redis.delete(key)


@pytest.mark.skipif(not on_cluster(), reason="a cluster client's slot map")
async def test_reading_the_slot_map_again_bears_nodes_reordered_meanwhile(redis: Redis) -> None:
    # Given a cluster client whose startup nodes are reordered while it reads its slot map
    # (redis-py moves a node that failed a command to the end of them)
    assert isinstance(redis, QueuedCluster)
    manager = redis.nodes_manager
    if not hasattr(manager, "move_node_to_end_of_cached_nodes"):
        pytest.skip("this redis-py does not reorder its nodes")
    reading = True

    async def reorder() -> None:
        while reading:
            for name in list(manager.startup_nodes):
                manager.move_node_to_end_of_cached_nodes(name)
            await asyncio.sleep(0)

    churn = asyncio.ensure_future(reorder())
    try:
        # When it reads the map again and again, Then none fails and the client serves on
        for _ in range(20):
            redis.remap()
            await asyncio.gather(*(redis.initialize() for _ in range(4)))
    finally:
        reading = False
        await churn
    assert await redis.ping()
