"""States: kinds, helpers, constructors and results (pure, no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowbus.states import (
    FINAL_TYPES,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    State,
    StateType,
    Suspended,
)

#: Each helper and the one kind it answers True for.
HELPERS = {
    "is_scheduled": StateType.SCHEDULED,
    "is_pending": StateType.PENDING,
    "is_running": StateType.RUNNING,
    "is_paused": StateType.PAUSED,
    "is_completed": StateType.COMPLETED,
    "is_failed": StateType.FAILED,
    "is_cancelling": StateType.CANCELLING,
    "is_cancelled": StateType.CANCELLED,
    "is_crashed": StateType.CRASHED,
}


def test_state_types_have_prefects_values() -> None:
    assert [t.value for t in StateType] == [
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLING",
        "CANCELLED",
        "CRASHED",
    ]
    assert StateType("RUNNING") is StateType.RUNNING


def test_final_types_are_the_four_terminal_kinds() -> None:
    assert FINAL_TYPES == {
        StateType.COMPLETED,
        StateType.FAILED,
        StateType.CANCELLED,
        StateType.CRASHED,
    }


@pytest.mark.parametrize("kind", list(StateType))
def test_each_helper_is_true_for_its_kind_only(kind: StateType) -> None:
    # Given a state of one kind
    state = State(type=kind, name="x")

    # Then exactly the helper of that kind answers True
    answers = {helper: getattr(state, helper)() for helper in HELPERS}
    assert answers == {helper: HELPERS[helper] is kind for helper in HELPERS}
    assert state.is_final() is (kind in FINAL_TYPES)


@pytest.mark.parametrize(
    ("make", "kind", "name"),
    [
        (Pending, StateType.PENDING, "Pending"),
        (Running, StateType.RUNNING, "Running"),
        (Completed, StateType.COMPLETED, "Completed"),
        (Failed, StateType.FAILED, "Failed"),
        (Crashed, StateType.CRASHED, "Crashed"),
        (Cancelling, StateType.CANCELLING, "Cancelling"),
        (Cancelled, StateType.CANCELLED, "Cancelled"),
    ],
)
def test_constructors_set_kind_and_default_name(make: Any, kind: StateType, name: str) -> None:
    state: State = make()
    named: State = make(name="Custom", message="why")

    assert (state.type, state.name, state.message) == (kind, name, None)
    assert (named.type, named.name, named.message) == (kind, "Custom", "why")
    assert state.timestamp.tzinfo is not None


def test_scheduled_defaults_its_time_to_now_and_keeps_a_given_one() -> None:
    before = datetime.now(UTC)
    later = before + timedelta(hours=1)

    default = Scheduled()
    given = Scheduled(scheduled_time=later, name="AwaitingRetry")

    assert default.type is StateType.SCHEDULED and default.name == "Scheduled"
    assert default.state_details.scheduled_time is not None
    assert default.state_details.scheduled_time >= before
    assert given.state_details.scheduled_time == later
    assert given.name == "AwaitingRetry"


def test_paused_is_a_plain_pause_by_default() -> None:
    state = Paused(pause_key="1")

    assert state.type is StateType.PAUSED and state.name == "Paused"
    assert state.is_paused() and not state.is_suspended()
    assert state.state_details.pause_key == "1"
    assert state.state_details.pause_timeout is None
    assert state.state_details.pause_reschedule is False


def test_paused_timeout_becomes_an_absolute_deadline() -> None:
    before = datetime.now(UTC)

    state = Paused(timeout_seconds=30)

    deadline = state.state_details.pause_timeout
    assert deadline is not None
    assert before + timedelta(seconds=30) <= deadline <= datetime.now(UTC) + timedelta(seconds=30)


def test_paused_accepts_an_expiration_time_but_not_both() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)

    assert Paused(pause_expiration_time=at).state_details.pause_timeout == at
    with pytest.raises(ValueError, match="not both"):
        Paused(timeout_seconds=1, pause_expiration_time=at)


def test_suspended_is_a_rescheduling_pause_named_suspended() -> None:
    before = datetime.now(UTC)

    state = Suspended(timeout_seconds=60, pause_key="k")

    assert state.type is StateType.PAUSED
    assert state.name == "Suspended"
    assert state.state_details.pause_reschedule is True
    assert state.is_paused() and state.is_suspended()
    assert state.state_details.pause_key == "k"
    deadline = state.state_details.pause_timeout
    assert deadline is not None and deadline >= before + timedelta(seconds=60)


def test_result_returns_the_attached_value() -> None:
    state = Completed().with_data({"answer": 42})

    assert state.result() == {"answer": 42}
    assert Completed().result() is None


def test_result_reraises_an_attached_exception_unless_told_not_to() -> None:
    error = ValueError("boom")
    state = Failed(message="boom").with_data(error)

    with pytest.raises(ValueError, match="boom") as raised:
        state.result()
    assert raised.value is error
    assert state.result(raise_on_failure=False) is error


def test_str_shows_name_and_message() -> None:
    assert str(Failed(message="it broke")) == "Failed (it broke)"
    assert str(Running()) == "Running"
