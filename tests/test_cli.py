"""The ``flowbus`` command line, run as a real subprocess against the test's server and prefix.

Each command's exit code is its contract: ``resume`` 2 on bad input (one line per field),
``wait`` 0/1/4 by final state and 124 on timeout, 1 with a clear message on unknown runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from anyio.streams.text import TextReceiveStream

from flowbus import (
    Cancelled,
    Completed,
    Failed,
    Flow,
    Pending,
    RunInput,
    Running,
    State,
    StateType,
    flow,
    get_client,
    pause_flow_run,
)
from flowbus._redis.keys import Keys
from tests.conftest import TestServer, env_for_subprocess
from tests.e2e.support import ROOT, WorkerProcess, dump_logs, spawn_worker
from tests.redis_clients import sync_redis
from tests.runs import current_run_id, launch, read, wait_for_ids, wait_until

pytestmark = pytest.mark.anyio

FLOWBUS = str(Path(sys.executable).with_name("flowbus"))
#: Seconds one CLI call may take on a loaded machine before the test fails.
CLI_TIMEOUT = 60.0
UNKNOWN_RUN = "00000000-0000-4000-8000-000000000001"


async def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``flowbus *args`` to its end; stdout and stderr decoded."""
    with anyio.fail_after(CLI_TIMEOUT):
        done = await anyio.run_process(
            [FLOWBUS, *args], check=False, cwd=cwd, env=env if env is not None else {**os.environ}
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def cli_sync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWBUS, *args], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )


async def new_run(*states: State) -> str:
    """A run created through the client and moved through ``states``; its id."""
    async with get_client() as client:
        run = await client.create_flow_run("cli-target")
        for state in states:
            await client.set_flow_run_state(run.id, state)
    return str(run.id)


# -- paused runs ---------------------------------------------------------------------------------


class Approval(RunInput):
    approved: bool
    note: str = ""


def approval_flow(ids: list[str]) -> Flow[..., Any]:
    @flow(name="cli-approval")
    async def body() -> str:
        ids.append(current_run_id())
        answer = await pause_flow_run(wait_for_input=Approval, key="ask", timeout=300)
        return f"{answer.approved}:{answer.note}"

    return body


class PausedRun:
    def __init__(self, run_id: str, handle: asyncio.Task[State]) -> None:
        self.id = run_id
        self.handle = handle

    async def final_state(self) -> State:
        with anyio.fail_after(CLI_TIMEOUT):
            return await self.handle


@pytest.fixture
async def paused(runtime_closed: None) -> AsyncIterator[PausedRun]:
    """An async flow on the test's loop, paused for an ``Approval``; never left behind."""
    ids: list[str] = []
    handle = launch(approval_flow(ids))
    try:
        [run_id] = await wait_for_ids(ids, 1, within=CLI_TIMEOUT)
        await wait_until(run_id, StateType.PAUSED, within=CLI_TIMEOUT)
        yield PausedRun(run_id, handle)
    finally:
        if not handle.done():
            handle.cancel()
        await asyncio.gather(handle, return_exceptions=True)


# -- resume --------------------------------------------------------------------------------------


async def test_resume_with_input_that_is_not_json_exits_2(paused: PausedRun) -> None:
    done = await cli("resume", paused.id, "--input", "{approved: yes")
    assert done.returncode == 2, done
    assert "not JSON" in done.stderr
    assert (await read(paused.id)).state.type is StateType.PAUSED


async def test_resume_with_invalid_input_exits_2_with_one_line_per_field(
    paused: PausedRun,
) -> None:
    # Given input whose fields break the pause's schema (one long, one with markup brackets)
    bad = '{"approved": "[bold]' + "x" * 120 + '", "note": 7}'
    # When it is sent
    done = await cli("resume", paused.id, "--input", bad)
    # Then the exit code is 2, each field gets exactly one line, and the run stays paused
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("invalid approved: ")
    assert "[bold]" + "x" * 120 in lines[0]
    assert "boolean" in lines[0]
    assert lines[1].startswith("invalid note: ")
    assert "string" in lines[1]
    assert (await read(paused.id)).state.type is StateType.PAUSED


async def test_resume_of_an_unknown_run_exits_1_saying_so() -> None:
    done = await cli("resume", UNKNOWN_RUN)
    assert done.returncode == 1, done
    assert f"Flow run {UNKNOWN_RUN} not found" in " ".join(done.stderr.split())


async def test_resume_with_valid_input_resumes_the_flow(paused: PausedRun) -> None:
    done = await cli("resume", paused.id, "--input", '{"approved": true, "note": "ok"}')
    assert done.returncode == 0, done
    assert f"resumed {paused.id}" in done.stdout
    state = await paused.final_state()
    assert state.type is StateType.COMPLETED
    assert (await state.result()) == "True:ok"


async def test_resume_with_an_input_file(paused: PausedRun, tmp_path: Path) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text('{"approved": false}')
    done = await cli("resume", paused.id, "--input-file", str(answer))
    assert done.returncode == 0, done
    assert (await (await paused.final_state()).result()) == "False:"


async def test_resume_of_a_run_that_is_not_paused_exits_1(runtime_closed: None) -> None:
    run_id = await new_run(Pending(), Running())
    done = await cli("resume", run_id)
    assert done.returncode == 1, done
    assert "error:" in done.stderr
    assert (await read(run_id)).state.type is StateType.RUNNING


# -- wait ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("final", "code"),
    [(Completed(), 0), (Failed(), 1), (Cancelled(), 4)],
    ids=["completed", "failed", "cancelled"],
)
async def test_wait_exit_code_tells_the_final_state(
    final: State, code: int, runtime_closed: None
) -> None:
    # Given a run that is already final
    run_id = await new_run(Pending(), Running(), final)
    # When waited for
    done = await cli("wait", run_id, "--timeout", "30")
    # Then the exit code tells its state, and stdout names it
    assert done.returncode == code, done
    assert f"{run_id} {final.type.value}" in done.stdout


async def test_wait_follows_a_run_to_its_end(runtime_closed: None) -> None:
    # Given a running run, and `flowbus wait` started on it
    run_id = await new_run(Pending(), Running())
    with anyio.fail_after(CLI_TIMEOUT):
        async with await anyio.open_process(
            [FLOWBUS, "wait", run_id, "--timeout", "50"], env={**os.environ}
        ) as proc:
            await anyio.sleep(0.5)  # (if the CLI is not subscribed yet, it reads the end state)
            # When the run completes
            async with get_client() as client:
                await client.set_flow_run_state(run_id, Completed())
            # Then the CLI exits 0
            assert await proc.wait() == 0


async def test_wait_times_out_with_124(runtime_closed: None) -> None:
    run_id = await new_run()
    done = await cli("wait", run_id, "--timeout", "0.5")
    assert done.returncode == 124, done
    assert "error:" in done.stderr


async def test_wait_for_an_unknown_run_exits_1() -> None:
    done = await cli("wait", UNKNOWN_RUN, "--timeout", "5")
    assert done.returncode == 1, done
    assert "not found" in done.stderr


# -- inspect, cancel, suspend --------------------------------------------------------------------


async def test_inspect_prints_the_state_history(runtime_closed: None) -> None:
    run_id = await new_run(Pending(), Running(), Completed())
    done = await cli("inspect", run_id, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done
    out = done.stdout
    assert run_id in out
    assert "flow=cli-target" in out
    assert "state: COMPLETED" in out
    rows = [line for line in out.splitlines() if any(t in line for t in ("PENDING", "RUNNING"))]
    assert any("SCHEDULED" in r and "PENDING" in r for r in rows), out
    assert any("PENDING" in r and "RUNNING" in r for r in rows), out
    assert any("RUNNING" in r and "COMPLETED" in r for r in rows), out


async def test_watch_follows_the_run_live_until_it_ends(runtime_closed: None) -> None:
    # Given a running run and a watcher that has printed its history so far
    run_id = await new_run(Pending(), Running())
    with anyio.fail_after(CLI_TIMEOUT):
        async with await anyio.open_process([FLOWBUS, "watch", run_id], env={**os.environ}) as proc:
            assert proc.stdout is not None
            lines = TextReceiveStream(proc.stdout)
            printed = ""
            while "RUNNING" not in printed:
                printed += await lines.receive()
            # When the run completes only now
            async with get_client() as client:
                await client.set_flow_run_state(run_id, Completed())
            # Then the watcher prints the new state as it happens, and exits
            async for chunk in lines:
                printed += chunk
            assert await proc.wait() == 0
    *changes, outcome = printed.splitlines()
    assert [line.split()[1] for line in changes] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    assert outcome == "result: null"


async def test_inspect_of_an_unknown_run_exits_1() -> None:
    done = await cli("inspect", UNKNOWN_RUN)
    assert done.returncode == 1, done
    assert "not found" in done.stderr


async def test_cancel_of_a_paused_run_cancels_it(paused: PausedRun) -> None:
    done = await cli("cancel", paused.id)
    assert done.returncode == 0, done
    assert f"cancelled {paused.id}" in done.stdout
    assert (await read(paused.id)).state.type is StateType.CANCELLED
    # and the paused flow stops waiting
    with anyio.fail_after(CLI_TIMEOUT):
        await asyncio.gather(paused.handle, return_exceptions=True)
    assert (await read(paused.id)).state.type is StateType.CANCELLED


async def test_suspend_of_a_run_that_is_not_running_exits_1(runtime_closed: None) -> None:
    run_id = await new_run()  # SCHEDULED
    done = await cli("suspend", run_id)
    assert done.returncode == 1, done
    assert "cannot suspend" in done.stderr
    assert (await read(run_id)).state.type is StateType.SCHEDULED


async def test_suspend_of_an_unknown_run_exits_1() -> None:
    done = await cli("suspend", UNKNOWN_RUN)
    assert done.returncode == 1, done
    assert "error:" in done.stderr


# -- deploy and run ------------------------------------------------------------------------------

FLOWS_MODULE = textwrap.dedent(
    """
    from flowbus import flow

    @flow
    def greet(name: str, times: int = 1) -> str:
        return " ".join([f"hello {name}"] * times)

    not_a_flow = 3
    """
)


async def test_deploy_then_run_enqueues_a_run(
    tmp_path: Path, flowbus_env: str, redis_server: TestServer, runtime_closed: None
) -> None:
    # Given a module of flows in the working directory
    (tmp_path / "cli_flows_mod.py").write_text(FLOWS_MODULE)
    # When a flow of it is deployed on queue q1
    done = await cli("deploy", "cli_flows_mod:greet", "--name", "n1", "--queue", "q1", cwd=tmp_path)
    assert done.returncode == 0, done
    assert "deployment greet/n1" in done.stdout
    async with get_client() as client:
        dep = await client.read_deployment("greet/n1")
    assert (dep.flow_name, dep.name, dep.queue) == ("greet", "n1", "q1")
    assert str(dep.id) in done.stdout
    # And a run of it is created with parameters (a JSON value and a plain string)
    done = await cli("run", "greet/n1", "--param", "name=bob", "--param", "times=2")
    assert done.returncode == 0, done
    assert done.stdout.startswith("created ")
    run_id = done.stdout.split()[1]
    # Then the run is recorded with its parameters and is the one entry of q1's stream
    run = await read(run_id)
    assert run.parameters == {"name": "bob", "times": 2}
    assert (run.queue, run.deployment_id) == ("q1", dep.id)
    client_r = sync_redis(redis_server.url)
    try:
        assert client_r.xlen(Keys(flowbus_env).queue("q1").stream()) == 1
    finally:
        client_r.close()


async def test_deploy_of_something_that_is_not_a_flow_exits_2(tmp_path: Path) -> None:
    (tmp_path / "cli_flows_mod.py").write_text(FLOWS_MODULE)
    done = await cli("deploy", "cli_flows_mod:not_a_flow", "--name", "n", cwd=tmp_path)
    assert done.returncode == 2, done
    assert "is not a flow" in done.stderr


async def test_deploy_of_a_module_that_does_not_import_exits_2(tmp_path: Path) -> None:
    done = await cli("deploy", "no_such_cli_module:greet", "--name", "n", cwd=tmp_path)
    assert done.returncode == 2, done
    assert "cannot import 'no_such_cli_module'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_run_of_an_unknown_deployment_exits_1() -> None:
    done = await cli("run", "nothing/here")
    assert done.returncode == 1, done
    assert "not found" in done.stderr


async def test_run_with_a_param_that_is_not_k_v_exits_2() -> None:
    done = await cli("run", "greet/n1", "--param", "oops")
    assert done.returncode == 2, done
    assert "not k=v" in done.stderr


@pytest.fixture
def worker_process(
    redis_server: TestServer, flowbus_env: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    """One real worker on the e2e flows, on queue "default"; always stopped."""
    worker = spawn_worker(env_for_subprocess(redis_server.url, flowbus_env), tmp_path, "cli-w")
    ok = False
    try:
        yield worker
        ok = True
    finally:
        worker.ensure_stopped()
        if not ok:
            dump_logs([worker])


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_run_wait_with_a_worker_exits_0(
    worker_process: WorkerProcess, runtime_closed: None
) -> None:
    # Given the e2e `add` flow deployed from the repository root, and a worker running
    done = await cli("deploy", "tests.e2e.flows_module:add", "--name", "cli", cwd=ROOT)
    assert done.returncode == 0, done
    # When a run of it is created and followed
    done = await cli("run", "add/cli", "--param", "x=2", "--param", "y=3", "--wait")
    # Then the CLI exits 0 once the worker completed it
    assert done.returncode == 0, (done, worker_process.log()[-3000:])
    assert "COMPLETED" in done.stdout
    run_id = done.stdout.split()[1]
    async with get_client() as client:
        assert await client.store.read_result(run_id) == 5


# -- worker passthrough --------------------------------------------------------------------------


async def test_worker_with_bad_args_exits_with_the_workers_usage() -> None:
    done = await cli("worker", "--no-such-option")
    assert done.returncode == 2, done
    assert "usage: python -m flowbus_worker" in done.stderr


async def test_worker_help_is_the_workers_help() -> None:
    done = await cli("worker", "--help")
    assert done.returncode == 0, done
    assert "usage: python -m flowbus_worker" in done.stdout
    assert "--concurrency" in done.stdout


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_worker_runs_beside_a_users_own_worker_module(
    tmp_path: Path, runtime_closed: None
) -> None:
    # Given a Prefect-style project with its own worker.py (and a worker/ package) beside its flows
    for shadow in (tmp_path / "worker.py", tmp_path / "worker" / "__main__.py"):
        shadow.parent.mkdir(exist_ok=True)
        shadow.write_text("raise SystemExit('the user worker ran')\n")
    (tmp_path / "myflows.py").write_text(
        "from flowbus import flow\n\n\n@flow\ndef hello(name: str) -> str:\n"
        "    return f'hello {name}'\n"
    )
    done = await cli("deploy", "myflows:hello", "--name", "mine", "--queue", "mine", cwd=tmp_path)
    assert done.returncode == 0, done
    # When flowbus worker is started there, Then flowbus's worker serves the project's flows
    done = await cli("worker", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: python -m flowbus_worker" in done.stdout, done
    async with await anyio.open_process(
        [FLOWBUS, "worker", "myflows", "--queue", "mine"], cwd=tmp_path
    ) as worker:
        done = await cli("run", "hello/mine", "--param", "name=you", "--wait")
        assert worker.returncode is None  # still serving
        worker.terminate()
    assert done.returncode == 0, done
    assert "hello you" in done.stdout or "COMPLETED" in done.stdout


# -- embedded server -----------------------------------------------------------------------------


def test_server_start_and_stop(tmp_path: Path) -> None:
    # Given no FLOWBUS_REDIS_URL and a home of its own
    env = {k: v for k, v in os.environ.items() if k != "FLOWBUS_REDIS_URL"}
    env["FLOWBUS_HOME"] = str(tmp_path / "server-home")
    try:
        # When the server is started
        done = cli_sync("server", "start", env=env)
        # Then it prints a URL that answers, and a second start finds the same server
        assert done.returncode == 0, done
        url = done.stdout.strip()
        assert url.startswith("redis://"), done
        client = redis.Redis.from_url(url, socket_timeout=10)
        try:
            assert client.ping()
        finally:
            client.close()
        again = cli_sync("server", "start", env=env)
        assert (again.returncode, again.stdout.strip()) == (0, url)
        # When it is stopped, it says so; and a second stop finds nothing running
        stopped = cli_sync("server", "stop", env=env)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped"), stopped
        assert cli_sync("server", "stop", env=env).stdout.strip() == "not running"
    finally:
        cli_sync("server", "stop", env=env)
