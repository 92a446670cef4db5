"""The CLI's views of runs: ls (paged, filtered), inspect (everything, also as JSON),
deployments ls, workers ls, --version, parameters checked against the deployment's schema,
and every common mistake reported in one line."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

from flowbus import Completed, Failed, Pending, Running, StateType, flow, get_client
from flowbus._redis.embedded import EmbeddedServer
from flowbus._redis.runtime import get_runtime
from tests.e2e.support import ROOT, WorkerProcess
from tests.runs import launch
from tests.test_cli import (  # noqa: F401 - fixtures
    PausedRun,
    cli,
    new_run,
    paused,
    worker_process,
)

pytestmark = pytest.mark.anyio


async def test_ls_lists_newest_first_and_pages(runtime_closed: None) -> None:
    ids = [await new_run() for _ in range(5)]
    done = await cli("ls", "--json", "--limit", "3")
    assert done.returncode == 0, done
    first = json.loads(done.stdout)
    assert len(first["runs"]) == 3
    done = await cli("ls", "--json", "--limit", "3", "--after", first["next"])
    second = json.loads(done.stdout)
    assert second["next"] is None
    listed = first["runs"] + second["runs"]
    # every run once, newest first (runs of the same millisecond in a fixed order)
    assert sorted(r["id"] for r in listed) == sorted(ids)
    created = [r["created"] for r in listed]
    assert created == sorted(created, reverse=True)


async def test_ls_filters_by_state_and_awaiting_input(paused: PausedRun) -> None:
    done_id = await new_run(Pending(), Running(), Completed())
    done = await cli("ls", "--json", "--state", "completed")
    assert [r["id"] for r in json.loads(done.stdout)["runs"]] == [done_id]
    done = await cli("ls", "--json", "--awaiting-input")
    [waiting] = json.loads(done.stdout)["runs"]
    assert (waiting["id"], waiting["awaiting_input"]) == (paused.id, True)
    table = await cli("ls", "--awaiting-input")
    assert paused.id in table.stdout and "input" in table.stdout


async def test_ls_reads_pages_not_the_whole_index(runtime_closed: None) -> None:
    # Given more runs than one scan may read, and one match among the oldest
    target = await new_run(Pending(), Running(), Completed())
    for _ in range(30):
        await new_run()
    from flowbus.views.runs import RunFilter, list_runs

    runtime = await get_runtime()
    wanted = RunFilter(frozenset({"COMPLETED"}))
    # When a page may read only 10 index entries
    page = await list_runs(runtime, wanted=wanted, limit=5, scan_budget=10)
    # Then it stops with a cursor, and following the cursors finds the match
    assert page.runs == [] and page.next_cursor is not None
    found = []
    while page.next_cursor:
        page = await list_runs(
            runtime, wanted=wanted, limit=5, cursor=page.next_cursor, scan_budget=10
        )
        found += [r.id for r in page.runs]
    assert found == [target]


async def test_inspect_shows_what_a_pause_waits_for(paused: PausedRun) -> None:
    done = await cli("inspect", paused.id)
    assert done.returncode == 0, done
    out = done.stdout
    assert 'paused at key "ask": waits for input, until' in out
    assert "approved: bool, required" in out
    assert 'note: str, default ""' in out
    assert f'flowbus resume {paused.id} --input \'{{"approved": false, "note": ""}}\'' in out
    data = json.loads((await cli("inspect", paused.id, "--json")).stdout)
    assert data["pause"]["key"] == "ask"
    assert data["pause"]["wants_input"] is True
    assert data["pause"]["schema"]["required"] == ["approved"]
    assert data["pause"]["deadline"] is not None


@flow(name="cli-breaks")
async def breaks(x: int) -> int:
    return 1 // x


async def test_inspect_of_a_failed_run_shows_its_traceback(runtime_closed: None) -> None:
    state = await launch(breaks, 0)
    assert state.is_failed()
    async with get_client() as client:
        [run] = await client.read_flow_runs(flow_name="cli-breaks")
    done = await cli("inspect", str(run.id), "--json")
    data = json.loads(done.stdout)
    assert data["state_type"] == "FAILED"
    assert "ZeroDivisionError" in data["traceback"]
    assert "return 1 // x" in data["traceback"]
    text = (await cli("inspect", str(run.id))).stdout
    assert "Traceback (most recent call last)" in text


async def test_inspect_shows_result_and_json_values(runtime_closed: None) -> None:
    run_id = await new_run(Pending(), Running(), Failed(message="it broke"))
    out = (await cli("inspect", run_id)).stdout
    assert "state: FAILED" in out and "it broke" in out


async def test_version() -> None:
    done = await cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("flowbus ")


MODULE = textwrap.dedent(
    """
    from flowbus import flow

    @flow
    def report(day: str, copies: int = 1) -> str:
        return day * copies
    """
)


async def test_params_are_checked_against_the_stored_schema(
    tmp_path: Path, runtime_closed: None
) -> None:
    (tmp_path / "cli_schema_mod.py").write_text(MODULE)
    done = await cli("deploy", "cli_schema_mod:report", "--name", "d", cwd=tmp_path)
    assert done.returncode == 0, done
    # an unknown and an ill-typed parameter: refused, one line each, no run created
    done = await cli("run", "report/d", "--param", "day=1", "--param", "copies=x", "--param", "z=1")
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert any(line.startswith("invalid z: unknown parameter") for line in lines)
    assert any(line.startswith("invalid copies:") for line in lines)
    async with get_client() as client:
        assert await client.read_flow_runs(flow_name="report") == []
    # a str parameter that looks like a number stays a string
    done = await cli("run", "report/d", "--param", "day=20261127")
    assert done.returncode == 0, done
    async with get_client() as client:
        [run] = await client.read_flow_runs(flow_name="report")
    assert run.parameters == {"day": "20261127"}
    listed = json.loads((await cli("deployments", "ls", "--json")).stdout)
    assert [d["name"] for d in listed] == ["d"]
    assert listed[0]["parameter_openapi_schema"]["required"] == ["day"]


def _one_line_error(done: object) -> None:
    stderr: str = getattr(done, "stderr")  # noqa: B009
    assert "Traceback" not in stderr, stderr
    assert 1 <= len(stderr.strip().splitlines()) <= 3, stderr
    assert stderr.startswith("error: "), stderr


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (("demo",), "redis://127.0.0.1:1"),
        (("worker", "tests.e2e.flows_module"), "redis://127.0.0.1:1"),
        (("ls",), "notaurl"),
        (("inspect", "00000000-0000-4000-8000-000000000001"), "notaurl"),
        (("worker", "tests.e2e.flows_module"), "notaurl"),
    ],
)
async def test_redis_mistakes_are_one_line(args: tuple[str, ...], url: str) -> None:
    from tests.e2e.support import ROOT

    done = await cli(*args, cwd=ROOT, env={**os.environ, "FLOWBUS_REDIS_URL": url})
    assert done.returncode in (1, 2), done
    _one_line_error(done)


async def test_a_demo_whose_flow_fails_before_it_starts_is_one_line() -> None:
    # parameters larger than allowed: the run is refused before any event is published
    done = await cli("demo", env={**os.environ, "FLOWBUS_MAX_PAYLOAD_BYTES": "0"})
    assert done.returncode == 1, done
    _one_line_error(done)
    assert "PayloadTooLarge" in done.stderr


async def test_a_bad_queue_name_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cli_schema_mod.py").write_text(MODULE)
    done = await cli(
        "deploy", "cli_schema_mod:report", "--name", "d", "--queue", "bad queue", cwd=tmp_path
    )
    assert done.returncode == 2, done
    _one_line_error(done)


async def test_an_unknown_worker_module_is_one_line() -> None:
    done = await cli("worker", "nosuchmodule")
    assert done.returncode == 2, done
    _one_line_error(done)


async def test_a_failing_server_start_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "FLOWBUS_REDIS_URL"}
    done = await cli("server", "start", env={**env, "FLOWBUS_HOME": str(blocker / "home")})
    assert done.returncode == 1, done
    _one_line_error(done)


async def test_a_taken_ui_port_is_one_line() -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the page is served there, Then the server's own reason and one error line
        done = await cli("ui", "--port", str(port))
    assert done.returncode in (1, 2), done
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) <= 3, done.stderr
    assert lines[-1].startswith("error: ") and str(port) in lines[-1], done.stderr


async def test_a_usage_mistake_is_one_line() -> None:
    done = await cli("ls", "--no-such-option")
    assert done.returncode == 2, done
    _one_line_error(done)


async def test_workers_ls_shows_live_workers(
    redis_server: EmbeddedServer, runtime_closed: None
) -> None:
    runtime = await get_runtime()
    keys = runtime.store.keys
    seconds, _ = await runtime.redis.time()
    await runtime.redis.hset(keys.workers(), "w1", int(seconds) * 1000)
    await runtime.redis.hset(keys.workers(), "gone", 1)
    info = {"queues": ["q"], "flows": ["f"], "concurrency": 4, "group": "g"}
    await runtime.redis.hset(keys.worker_info(), "w1", json.dumps(info))
    listed = json.loads((await cli("workers", "ls", "--json")).stdout)
    assert [(w["name"], w["queues"], w["concurrency"], w["runs_held"]) for w in listed] == [
        ("w1", ["q"], 4, 0)
    ]
    assert StateType.PAUSED  # the table form names the same worker
    assert "w1" in (await cli("workers", "ls")).stdout


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_a_worker_lists_itself_and_names_runs_in_its_logs(
    worker_process: WorkerProcess, runtime_closed: None
) -> None:
    # Given a deployment run by a real worker to its end, followed by `run --wait`
    assert (
        await cli("deploy", "tests.e2e.flows_module:add", "--name", "v", cwd=ROOT)
    ).returncode == 0
    done = await cli(
        "run", "add/v", "--param", "x=2", "--param", "y=3", "--wait", "--timeout", "100"
    )
    assert done.returncode == 0, (done, worker_process.log()[-3000:])
    assert "result: 5" in done.stdout
    run_id = done.stdout.split()[1]
    # Then `workers ls` shows the worker, its queue, flows and concurrency
    [listed] = json.loads((await cli("workers", "ls", "--json")).stdout)
    assert listed["name"] == "cli-w"
    assert (listed["queues"], listed["concurrency"], listed["runs_held"]) == (["default"], 4, 0)
    assert "add" in listed["flows"]
    # And each of its log lines about the run names the run and its flow, the start included
    about = [line for line in worker_process.log().splitlines() if run_id in line]
    assert any("state=RUNNING" in line for line in about), about
    assert all("flow=add" in line for line in about), about
