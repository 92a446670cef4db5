"""A flow run as a script shows its run logs on the console, as Prefect's do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flowbus._redis.embedded import EmbeddedServer
from tests.conftest import env_for_subprocess

SCRIPT = """
from flowbus import flow, task
from flowbus.logging import get_run_logger


@task
def step() -> int:
    get_run_logger().info("inside the task")
    return 1


@flow(log_prints=True)
def scripted() -> int:
    get_run_logger().info("hello from the run")
    print("a printed line")
    return step()


if __name__ == "__main__":
    assert scripted() == 1
"""


def run_script(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=60
    )


def test_run_logs_show_on_the_console_by_default(
    tmp_path: Path, redis_server: EmbeddedServer, flowbus_env: str
) -> None:
    done = run_script(tmp_path, env_for_subprocess(redis_server.url, flowbus_env))
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for expected in (
        "Created flow run",
        "Beginning flow run",
        "hello from the run",
        "a printed line",
        "inside the task",
        "Finished in state Completed(",
    ):
        assert expected in err, err
    assert "| INFO    | Flow run 'scripted-" in err
    assert "| INFO    | Task run 'step-1' - inside the task" in err
    assert "a printed line" not in done.stdout


def test_flowbus_logging_level_tunes_them(
    tmp_path: Path, redis_server: EmbeddedServer, flowbus_env: str
) -> None:
    env = {**env_for_subprocess(redis_server.url, flowbus_env), "FLOWBUS_LOGGING_LEVEL": "WARNING"}
    done = run_script(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "hello from the run" not in done.stderr
