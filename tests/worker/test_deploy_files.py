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


@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]], ids=["default", "cluster"])
def test_compose_config_is_valid(profile: list[str]) -> None:
    if not compose_available():
        pytest.skip("the docker CLI with the compose plugin is not installed here")
    result = subprocess.run(
        ["docker", "compose", *profile, "config", "-q"], cwd=ROOT, capture_output=True, timeout=60
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
    # and the cluster profile has three cluster-enabled primaries, formed before its workers
    # start, which reach them with a cluster URL naming all three
    assert compose.count("redis-c1: &cluster-node") == 1 and '"--cluster-enabled", "yes"' in compose
    assert "--cluster create" in compose and "service_completed_successfully" in compose
    assert "redis+cluster://redis-c1:6379,redis-c2:6379,redis-c3:6379" in compose
    examples = importlib.import_module("flowbus_worker.examples")
    assert {"greet", "approve"} <= {name for name in dir(examples)}
