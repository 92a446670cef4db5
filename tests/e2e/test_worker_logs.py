"""A worker's ``--json`` log: every line about a run names it (``run_id``, ``flow``), lines
logged by the run's code keep ``flow_run_id``, ``flow_name`` and ``task_run_key``, and a run
gets one line when it starts, not only when it ends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowbus import StateType, get_client
from flowbus.flow_runs import await_for_flow_run
from tests.e2e.conftest import StartWorker

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(150)]


async def test_json_lines_name_the_run_its_flow_and_task(
    start_worker: StartWorker, runtime_closed: None
) -> None:
    # Given a worker logging JSON lines, and a run of a flow that logs in the flow and a task
    worker = start_worker("json-w", "--json")
    async with get_client() as client:
        dep = await client.create_deployment("logged", "j")
        run = await client.create_flow_run_from_deployment(dep, {"n": 4})
        done = await await_for_flow_run(run.id, timeout=90)
    assert done.state.type is StateType.COMPLETED, done.state
    worker.terminate()
    # Then every line is a JSON object, and those about the run name it and its flow
    lines: list[dict[str, Any]] = [json.loads(line) for line in worker.log().splitlines()]
    about = [line for line in lines if str(run.id) in json.dumps(line)]
    assert about and all(
        (line["run_id"], line["flow"]) == (str(run.id), "logged") for line in about
    ), about
    # the run's own loggers keep Prefect's fields, the task's line its task-run key
    [flow_line] = [line for line in about if line["message"] == "starting with 4"]
    assert (flow_line["flow_run_id"], flow_line["flow_name"]) == (str(run.id), "logged")
    [task_line] = [line for line in about if line["message"] == "step 4"]
    assert task_line["flow_run_id"] == str(run.id)
    assert task_line["task_run_key"] == "logged_step-1"
    # one transition line when the run starts, and one when it ends
    states = [line.get("state") for line in about if line["logger"] == "flowbus.worker.runs"]
    assert states.count("RUNNING") == 1 and states[-1] == "COMPLETED", states
