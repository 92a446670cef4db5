"""The container files: compose validates, and its workers serve modules that exist."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_compose_config_is_valid() -> None:
    if not compose_available():
        pytest.skip("the docker CLI with the compose plugin is not installed here")
    result = subprocess.run(
        ["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()


def test_compose_and_dockerfile_shape() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    dockerfile = (ROOT / "worker" / "Dockerfile").read_text()
    # Given the files as written, Then redis keeps an AOF and is health-checked, two worker
    # replicas serve the example module, and the image runs the worker entry point
    assert "--appendonly" in compose and "healthcheck" in compose
    assert "replicas: 2" in compose and "flowbus_worker.examples" in compose
    assert "condition: service_healthy" in compose
    assert 'ENTRYPOINT ["python", "-m", "flowbus_worker"]' in dockerfile
    examples = importlib.import_module("flowbus_worker.examples")
    assert {"greet", "approve"} <= {name for name in dir(examples)}
