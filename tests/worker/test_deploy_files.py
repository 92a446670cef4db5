"""The container files: compose validates, and its workers serve modules that exist."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    """``docker compose`` (the CLI plugin), else the standalone ``docker-compose`` (Debian's
    package; .ci/run installs it when neither is here), else ``None``."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return None if standalone is None else [standalone]


@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]], ids=["default", "cluster"])
def test_compose_config_is_valid(profile: list[str]) -> None:
    compose = compose_command()
    if compose is None:
        pytest.skip("neither docker compose nor docker-compose is installed here")
    result = subprocess.run(
        [*compose, *profile, "config", "-q"], cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stderr.strip(), result.stderr.decode()  # no warning either


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
