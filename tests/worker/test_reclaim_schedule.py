"""When the reclaimer scans: at start, after a process ends, one lease later, and rarely."""

from __future__ import annotations

from flowbus_worker.reclaim_schedule import ReclaimSchedule

LEASE_MS = 2000


def test_the_first_tick_scans_then_nothing_until_something_ends() -> None:
    schedule = ReclaimSchedule(LEASE_MS, safety=300)
    schedule.observe({"worker a": True, "worker b": True}, at=0.0)
    assert schedule.take(0.0)
    for at in (1.0, 2.0, 3.0):
        schedule.observe({"worker a": True, "worker b": True}, at=at)
        assert not schedule.take(at)


def test_a_lapsed_beat_scans_at_once_and_one_lease_later_once() -> None:
    schedule = ReclaimSchedule(LEASE_MS, safety=300)
    schedule.observe({"worker a": True}, at=0.0)
    assert schedule.take(0.0)
    schedule.observe({"worker a": False}, at=10.0)
    assert schedule.take(10.0)
    schedule.observe({"worker a": False}, at=11.0)
    assert not schedule.take(11.0)  # still lapsed: no new change
    schedule.observe({"worker a": False}, at=12.0)
    assert schedule.take(12.0)  # one lease later
    schedule.observe({"worker a": False}, at=13.0)
    assert not schedule.take(13.0)


def test_a_vanished_entry_scans() -> None:
    schedule = ReclaimSchedule(LEASE_MS, safety=300)
    schedule.observe({"worker a": True, "holder s": True}, at=0.0)
    schedule.take(0.0)
    schedule.observe({"worker a": True}, at=1.0)
    assert schedule.take(1.0)


def test_an_entry_left_pending_here_is_scanned_for_one_lease_later() -> None:
    schedule = ReclaimSchedule(LEASE_MS, safety=300)
    schedule.take(0.0)
    schedule.left_pending(5.0)
    assert not schedule.take(6.0)
    assert schedule.take(7.0)


def test_the_safety_scan_comes_when_nothing_happens() -> None:
    schedule = ReclaimSchedule(LEASE_MS, safety=300)
    schedule.take(0.0)
    assert not schedule.take(299.0)
    assert schedule.take(300.0)
