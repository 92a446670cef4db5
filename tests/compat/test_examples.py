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
from uuid import UUID

import anyio
import pytest

from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.runtime import get_runtime
from flowbus.blocks.system import JSON
from flowbus.client.orchestration import get_client
from flowbus.deployments import run_deployment
from flowbus.flow_runs import resume_flow_run, wait_for_flow_run
from flowbus.input import keyset_from_base_key
from flowbus.models import FlowRun
from flowbus.states import StateType
from tests.conftest import env_for_subprocess
from tests.runs import wait_until

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture
def env(redis_server: EmbeddedServer, flowbus_env: str) -> dict[str, str]:
    return {**env_for_subprocess(redis_server.url, flowbus_env), "FLOWBUS_LOGGING_LEVEL": "WARNING"}


def serving(
    script: str, *args: str, env: dict[str, str], log_path: Path, count: int = 2
) -> Iterator[str]:
    """Run ``script`` (which serves deployments) until the test ends; yields its banner."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    banner = []
    for line in proc.stdout:  # the banner is printed once the deployments are registered
        banner.append(line)
        if sum("$ flowbus run" in b for b in banner) == count:  # every deployment is listed
            break
    try:
        yield "".join(banner)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        log.close()


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``python guide.py both``: serves greeter/send-receive and add/my-deployment."""
    yield from serving("guide.py", "both", env=env, log_path=tmp_path / "served.log")


@pytest.fixture
def suspending(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``python suspending.py``: serves approve-later/approve and stops-itself/self."""
    yield from serving("suspending.py", env=env, log_path=tmp_path / "served.log")


@pytest.fixture
def complete_greeter(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``python guide_complete.py greeter``: the guide's complete example, served."""
    yield from serving(
        "guide_complete.py", "greeter", env=env, log_path=tmp_path / "served.log", count=1
    )


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


def test_the_guides_complete_example(complete_greeter: str, env: dict[str, str]) -> None:
    out = run_example("guide_complete.py", "sender", env=env, stdin="andrew\nq\n")
    assert "Hello, andrew!" in out and out.rstrip().endswith("Goodbye!")
    # the greeter kept the key it saw in its JSON block
    assert anyio.run(seen_keys) == 1


async def seen_keys() -> int:
    [greeter] = await get_client().read_flow_runs(flow_name="greeter")
    block = await JSON.load(f"{greeter.id}-seen-ids")
    return len(block.value)


def test_the_seed_examples_wait_for_deployment_runs(served: str, env: dict[str, str]) -> None:
    dep = anyio.run(deployment_id, "add/my-deployment")
    assert run_example("seed_wait_one.py", dep, env=env).startswith("Completed")
    many = run_example("seed_wait_many.py", dep, env=env)
    assert many.count("Completed") == 10


@pytest.mark.anyio
async def test_a_served_run_suspends_for_input_and_resumes(
    suspending: str, runtime_closed: None
) -> None:
    run = await run_deployment("approve-later/approve", timeout=0)
    suspended = await wait_until(run.id, StateType.PAUSED, key="1")
    assert suspended.state.name == "Suspended"
    assert suspended.state.state_details.run_input_keyset == keyset_from_base_key("suspended-1")
    await resume_flow_run(run.id, run_input={"approved": True})
    done = await wait_for_flow_run(run.id, timeout=60)
    assert done.state.is_completed() and await done.state.result() is True


@pytest.mark.anyio
async def test_suspending_itself_by_id_stops_at_the_next_task(
    suspending: str, runtime_closed: None
) -> None:
    run = await run_deployment("stops-itself/self", timeout=0)
    await wait_until(run.id, StateType.PAUSED)
    final = await wait_until_named(run.id, "Suspended")
    results = await (await get_runtime()).store.load_task_results(run.id)
    assert final.state.is_paused() and sorted(results) == ["prepare-1"]


async def wait_until_named(run_id: UUID, name: str) -> FlowRun:
    """Test-side wait until the run's state has ``name``."""
    with anyio.fail_after(60):
        while (run := await get_client().read_flow_run(run_id)).state.name != name:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return run
