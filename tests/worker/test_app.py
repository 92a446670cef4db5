"""The worker's command line, log format and entry parsing (no Redis needed)."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from flowbus_worker.app import load_flows, parser, use_uvloop
from flowbus_worker.executor import parse_run_id
from flowbus_worker.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_repeatable_queues() -> None:
    args = parser().parse_args(["mod", "-q", "a", "--queue", "b", "--concurrency", "3"])
    assert args.modules == ["mod"]
    assert args.queues == ["a", "b"]
    assert args.concurrency == 3
    assert args.lease == 5.0 and args.grace == 30.0 and not args.json


def test_the_event_loop_is_uvloop_when_installed_unless_asked_otherwise() -> None:
    installed = importlib.util.find_spec("uvloop") is not None
    assert parser().parse_args(["mod"]).loop == "auto"
    assert use_uvloop("auto") is installed
    assert use_uvloop("uvloop") is True
    assert use_uvloop("asyncio") is False


@pytest.mark.parametrize(
    "bad",
    [["mod", "--queue", "a{b}"], ["mod", "--loop", "trio"], ["mod", "--concurrency", "0"], []],
)
def test_bad_arguments_exit_with_usage(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(bad)
    assert exc.value.code == 2


def test_unimportable_module_exits_2() -> None:
    # in a child process: main() configures the root logger
    out = subprocess.run(
        [sys.executable, "-m", "flowbus_worker", "no_such_module_for_flowbus_tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: cannot import no_such_module_for_flowbus_tests")
    assert "Traceback" not in out.stderr


def test_load_flows_returns_the_modules_flows() -> None:
    flows = load_flows(["flowbus_worker.examples"])
    # a second import defines nothing new, so compare with the module's own flows
    from flowbus_worker import examples

    assert set(flows) <= {"greet", "approve"}
    assert examples.greet.name == "greet"


def test_parse_run_id() -> None:
    rid = uuid.uuid4()
    assert parse_run_id({"run_id": str(rid)}) == rid
    assert "no run_id" in str(parse_run_id({}))
    assert "not a UUID" in str(parse_run_id({"run_id": "x"}))


def test_json_log_lines_carry_run_fields() -> None:
    record = logging.LogRecord("flowbus.worker.runs", logging.INFO, "f", 1, "run %s", ("x",), None)
    record.run_id = "x"
    record.state = "COMPLETED"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "run x"
    assert line["run_id"] == "x" and line["state"] == "COMPLETED"
    assert line["level"] == "INFO"


def test_flowbus_never_imports_worker() -> None:
    code = (
        "import sys, flowbus, flowbus._engine.engine, flowbus.flow_runs, flowbus.client;"
        "print(any(m == 'worker' or m.startswith('worker.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_modules_without_flows_refuse_to_start(tmp_path: Path) -> None:
    (tmp_path / "no_flows_here.py").write_text("X = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "flowbus_worker", "no_flows_here"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr == "error: the modules no_flows_here define no flows\n"
