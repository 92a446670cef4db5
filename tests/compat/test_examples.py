"""Prefect's documented examples run on flowbus with only their imports changed.

``examples/guide.py`` is the send/receive example of Prefect's interactive-workflows guide:
its ``greeter`` is served by ``flow.serve`` (here with the seed's ``add`` deployment, through
``flowbus.serve``), and its ``sender`` talks to it from another process, reading names from
stdin. ``examples/seed_wait_*.py`` are the two examples of ``wait_for_flow_run``'s docstring.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowbus._redis.embedded import EmbeddedServer
from flowbus.client.orchestration import get_client
from tests.conftest import env_for_subprocess

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture
def env(redis_server: EmbeddedServer, flowbus_env: str) -> dict[str, str]:
    return {**env_for_subprocess(redis_server.url, flowbus_env), "FLOWBUS_LOGGING_LEVEL": "WARNING"}


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``python guide.py both``: serves greeter/send-receive and add/my-deployment."""
    log = (tmp_path / "served.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "guide.py"), "both"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    banner = []
    for line in proc.stdout:  # the banner is printed once the deployments are registered
        banner.append(line)
        if "flowbus run 'add/my-deployment'" in line:
            break
    try:
        yield "".join(banner)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        log.close()


def run_example(name: str, *args: str, env: dict[str, str], stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def deployment_id(full_name: str) -> str:
    return str((await get_client().read_deployment_by_name(full_name)).id)


def test_served_greeter_answers_the_sender(served: str, env: dict[str, str]) -> None:
    assert "flowbus run 'greeter/send-receive'" in served
    out = run_example("guide.py", "sender", env=env, stdin="andrew\nada\nq\n")
    assert "Hello, andrew!" in out and "Hello, ada!" in out and out.rstrip().endswith("Goodbye!")


def test_the_seed_examples_wait_for_deployment_runs(served: str, env: dict[str, str]) -> None:
    dep = anyio.run(deployment_id, "add/my-deployment")
    assert run_example("seed_wait_one.py", dep, env=env).startswith("Completed")
    many = run_example("seed_wait_many.py", dep, env=env)
    assert many.count("Completed") == 10
