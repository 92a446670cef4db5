"""The short form of the fault-injection run: every figure that must be zero is zero."""

from __future__ import annotations

import pytest

from tests.conftest import own_servers
from tests.test_bench import run_bench

pytestmark = own_servers


@pytest.mark.timeout(300)
def test_short_chaos_run_has_no_violations() -> None:
    result = run_bench("chaos.py", "--short", timeout=280)
    assert result["benchmark"] == "chaos"
    kill = result["worker_kill"]
    assert kill["kills"] >= 1
    assert (kill["lost"], kill["completed_twice"], kill["worker_exits"]) == (0, 0, 0)
    assert kill["tasks_rerun_outside_in_flight_window"] == 0
    assert result["redis_kill"]["always"]["lost"] == 0
    assert all(r["stuck"] == 0 for r in result["redis_kill"].values())
    assert result["resume_storm"]["winners"] == result["resume_storm"]["runs"]
    assert result["fuzz"]["worker_exits"] == 0
    assert result["fuzz"]["valid_runs_not_completed"] == 0
    assert result["sigterm_handoff"]["lost"] == 0
    assert result["zombie_fencing"]["stale_transitions_accepted"] == 0
    assert result["violations"] == 0, result
