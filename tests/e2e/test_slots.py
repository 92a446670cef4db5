"""Given a representative workload (a worker, deployments, pauses, resumes, inputs, the CLI)
on a one-node cluster of its own watched by ``MONITOR``, no command flowbus sent and no
MULTI/EXEC block names keys of two hash slots: on a cluster of several nodes each would be
refused with CROSSSLOT (one node owning every slot refuses it too, so the workload would fail).

The keys of every command are those the server itself finds in it (``COMMAND GETKEYS``), so
scripts (FCALL's KEYS), stream reads and everything else are judged alike; a command the
node refused never reaches MONITOR, so its error count (``INFO errorstats``) must show no
CROSSSLOT either.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from flowbus import RunInput, StateType, flow, get_client, pause_flow_run
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.local_cluster import LocalCluster
from flowbus._redis.runtime import close_runtime
from flowbus.flow_runs import aresume_flow_run, await_for_flow_run
from flowbus.settings import get_settings
from tests.conftest import env_for_subprocess, own_servers, session_binary
from tests.e2e.support import dump_logs, is_suspended, spawn_worker, wait_for_run
from tests.runs import close_background_runtime, launch

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(240), own_servers]

#: One argument of a MONITOR line: a quoted string with C-style escapes.
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_NAMED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
#: MONITOR line: time, [db client], then the arguments.
_LINE = re.compile(rb"^[\d.]+ \[\d+ ([^\]]+)\] (.*)$", re.DOTALL)


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code.startswith(b"x") and len(code) == 3:
        return bytes([int(code[1:], 16)])
    return _NAMED.get(code, code)


def parse(line: bytes) -> tuple[str, list[bytes]] | None:
    """A MONITOR line's client and arguments (None for what is not a command line)."""
    found = _LINE.match(line)
    if found is None:
        return None
    args = [_ESCAPE.sub(_unescape, arg) for arg in _ARG.findall(found.group(2))]
    return found.group(1).decode(), args


class Monitor:
    """Every command a server receives, from a ``MONITOR`` connection read on a thread (a
    plain socket: its replies are lines, ``+<time> [<db> <client>] "arg" …``)."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if server.password:
            self._send(b"AUTH", server.password.encode())
        self._send(b"MONITOR")
        self._buffer = b""
        for _ in range(2 if server.password else 1):
            assert self._line() == b"+OK"
        self._sock.settimeout(0.2)
        self.commands: list[tuple[str, list[bytes]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _send(self, *args: bytes) -> None:
        parts = [b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args]
        self._sock.sendall(b"".join(parts))

    def _line(self) -> bytes | None:
        while b"\r\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("the monitor's connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read(self) -> None:
        while not self._stop.is_set():
            line = self._line()
            if line is not None and (command := parse(line.removeprefix(b"+"))) is not None:
                self.commands.append(command)

    def stop(self) -> list[tuple[str, list[bytes]]]:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        return self.commands


def keys_of(client: redis.Redis, args: list[bytes]) -> list[bytes]:
    """The keys the server finds in a command (none for a command that takes none)."""
    try:
        found = client.command_getkeys(*args)
    except redis.ResponseError:  # "has no key arguments", or a command GETKEYS cannot parse
        return []
    return [key if isinstance(key, bytes) else key.encode() for key in found]


def spanning(client: redis.Redis, commands: list[tuple[str, list[bytes]]]) -> list[str]:
    """Commands, and MULTI/EXEC blocks, whose keys hash to more than one slot."""
    bad: list[str] = []
    blocks: dict[str, list[bytes]] = {}  # client → keys of its open MULTI
    for who, args in commands:
        name = args[0].lower()
        if name == b"multi":
            blocks[who] = []
            continue
        if name in (b"exec", b"discard"):
            keys = blocks.pop(who, [])
            if len({key_slot(k) for k in keys}) > 1:
                bad.append(f"MULTI/EXEC of {who}: {keys!r}")
            continue
        keys = keys_of(client, args)
        if who in blocks:
            blocks[who] += keys
        if len({key_slot(k) for k in keys}) > 1:
            bad.append(repr([arg[:60] for arg in args[:8]]))
    # a block whose EXEC the server refused (CROSSSLOT is refused before MONITOR sees it)
    bad += [f"MULTI of {who}: {keys!r}" for who, keys in blocks.items() if keys]
    return bad


class Approval(RunInput):
    approved: bool


@pytest.fixture
def one_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    """A cluster of one primary (every slot on the node MONITOR watches)."""
    with LocalCluster(tmp_path / "cluster", masters=1, binary=session_binary()) as cluster:
        monkeypatch.setenv("FLOWBUS_REDIS_URL", cluster.url)
        get_settings.cache_clear()
        yield cluster


async def test_no_command_of_a_workload_spans_hash_slots(
    one_node: LocalCluster, flowbus_env: str, tmp_path: Path, runtime_closed: None
) -> None:
    await close_background_runtime()
    [node] = one_node.nodes
    monitor = Monitor(node)
    env = env_for_subprocess(one_node.url, flowbus_env)
    worker = spawn_worker(env, tmp_path, "a")
    try:
        # Given a worker running deployed runs (one suspends for input and is resumed)
        async with get_client() as client:
            add = await client.create_deployment("add", "d")
            approval = await client.create_deployment("approval", "d")
            done = await client.create_flow_run_from_deployment(add, {"x": 1, "y": 2})
            waiting = await client.create_flow_run_from_deployment(approval, {"tag": "slots"})
            assert (await await_for_flow_run(done.id, timeout=90)).state.is_completed()
            await wait_for_run(waiting.id, is_suspended, within=90)
            await aresume_flow_run(waiting.id, {"approved": True})
            finished = await await_for_flow_run(waiting.id, timeout=90)
            assert finished.state.type is StateType.COMPLETED

            # and an in-process pause, resumed, with inputs sent to the run meanwhile
            @flow(name="slot-pause")
            async def paused() -> bool:
                answer: Approval = await pause_flow_run(wait_for_input=Approval, timeout=60)
                return answer.approved

            handle = launch(paused)
            runs = await client.read_flow_runs(flow_name="slot-pause")
            while not runs or not runs[0].state.is_paused():
                runs = await client.read_flow_runs(flow_name="slot-pause")
            await client.create_flow_run_input(runs[0].id, "note", '"hello"')
            await aresume_flow_run(runs[0].id, {"approved": True})
            assert (await (await handle).result()) is True
            await client.delete_flow_run(done.id)
        # and the CLI's listings
        for command in (["ls", "--json"], ["deployments", "ls"], ["workers", "ls"]):
            subprocess.run(  # noqa: ASYNC221  # the workload waits for each anyway
                [str(Path(sys.executable).with_name("flowbus")), *command],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
        assert worker.terminate() == 0
    finally:
        worker.ensure_stopped()
        await close_runtime()
        commands = monitor.stop()
    # Then the workload's commands were seen, scripts among them, and none spans two slots
    names = {args[0].lower() for _, args in commands}
    assert {b"fcall", b"xreadgroup", b"xread", b"hset"} <= names, b" ".join(sorted(names))
    with redis.Redis.from_url(node.url) as client:
        bad = spanning(client, commands)
        refused = client.info("errorstats")
    if bad:
        dump_logs([worker])
    assert bad == []
    assert "errorstat_CROSSSLOT" not in refused, refused
