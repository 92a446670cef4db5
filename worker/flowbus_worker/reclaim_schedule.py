"""When to look for orphans: when something may have left one, not per queue per tick.

An entry is orphaned when its worker dies (its beat lapses), leaves with runs abandoned past
its grace (its beat vanishes), or when this worker leaves one pending (Redis failed mid-run);
an entry handed to this worker (its flow is here) is taken as soon as the count says so;
a held run when the process holding it ends (its lease in ``<p>:holders`` ends or vanishes).
Each tick reads those two hashes (a few commands per worker, whatever its queues); the
queues' pending lists and held runs are scanned only after such a change: at once, and again
one lease later, when entries delivered just before it are idle long enough to be taken. Also
once at start and once per ``safety`` seconds, for what no tick could see (a process that came
and went between two).
"""

from __future__ import annotations

from collections.abc import Mapping


class ReclaimSchedule:
    """Decides, tick by tick, whether the reclaimer scans its streams."""

    def __init__(self, lease_ms: int, safety: float) -> None:
        self.lease_ms = lease_ms
        self.safety = safety
        self._seen: set[str] = set()
        self._lapsed: set[str] = set()
        #: Monotonic times at which a scan is due; the first is due at once.
        self._due: list[float] = [float("-inf")]
        self._last_scan = float("-inf")
        self._handed: str | None = None

    def observe(self, alive: Mapping[str, bool], at: float) -> None:
        """Take in which processes are alive (by name), as read at monotonic time ``at``."""
        changed = False
        for name, live in alive.items():
            if not live:
                changed |= name not in self._lapsed
                self._lapsed.add(name)
            else:
                self._lapsed.discard(name)
        for name in self._seen - alive.keys():  # left (or its entry was removed)
            changed = True
            self._lapsed.discard(name)
        self._seen = set(alive)
        if changed:
            self._due += [at, at + self.lease_ms / 1000]

    def handed(self, count: str, at: float) -> None:
        """Take in the count of entries other workers handed to this one (``Keys.handovers``):
        a new one is idle past the lease already, to be taken at once."""
        if self._handed is not None and count != self._handed:
            self._due.append(at)
        self._handed = count

    def left_pending(self, at: float) -> None:
        """An entry was left pending at ``at`` (by this worker, or by a dead consumer whose
        entry was not idle long enough to take): scan again once it idled a lease."""
        self._due.append(at + self.lease_ms / 1000)

    def take(self, at: float) -> bool:
        """Whether a scan is due at ``at`` (if so, it counts as done)."""
        due = [t for t in self._due if t <= at]
        if not due and at - self._last_scan < self.safety:
            return False
        self._due = [t for t in self._due if t > at]
        self._last_scan = at
        return True
