"""Run summaries, listed page by page from each queue's ``runs`` index (never every run),
and runs waiting for input from its ``deadlines`` index first.

A page reads at most ``scan_budget`` index entries per queue; a filter that matches little
returns a cursor to go on from instead of reading further. Summaries read only the small
fields of a run hash (``HMGET``), never its parameters or result.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from flowbus._core.codec import ms_to_datetime
from flowbus._redis.keys import is_queue_name
from flowbus._redis.records import unpack_state
from flowbus._redis.runtime import Runtime
from flowbus.states import StateType

#: Run-hash fields a summary reads, in order.
FIELDS = (
    "state",
    "name",
    "flow_name",
    "created_ms",
    "pause_key",
    "pause_timeout_ms",
    "input_prefix",
    "deployment_id",
)
#: Index entries read per queue for one page, at most.
SCAN_BUDGET = 5000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a list shows of a run."""

    id: str
    name: str
    flow_name: str
    queue: str
    state_type: str
    state_name: str
    message: str
    state_time: datetime
    created: datetime
    run_count: int
    pause_key: str
    deadline: datetime | None
    input_prefix: str
    deployment_id: str

    @property
    def awaiting_input(self) -> bool:
        """Paused or suspended, waiting for typed input."""
        return (
            self.state_type == StateType.PAUSED
            and bool(self.input_prefix)
            and self.state_name != "Suspending"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "flow_name": self.flow_name,
            "queue": self.queue,
            "state_type": self.state_type,
            "state_name": self.state_name,
            "message": self.message,
            "state_time": self.state_time.isoformat(),
            "created": self.created.isoformat(),
            "run_count": self.run_count,
            "awaiting_input": self.awaiting_input,
            "pause_key": self.pause_key or None,
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }


def safe_text(value: Any) -> str:
    """A Redis value as text, whatever its bytes (shown, never trusted)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(value: str) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def summary_from_fields(
    values: Iterable[Any], run_id: str, queue: str, score: float | None = None
) -> RunSummary | None:
    """A summary of the run ``run_id`` of ``queue`` (its hash holds neither) from ``HMGET
    FIELDS`` (``None`` for a run that is gone, or whose hash holds no state we know)."""
    raw = list(values)
    try:
        state = unpack_state(raw[0])
    except ValueError:
        return None
    if state.type not in StateType.__members__:
        return None
    f = dict(zip(FIELDS[1:], (safe_text(v) for v in raw[1:]), strict=True))
    created_ms = _int(f["created_ms"]) if score is None else int(score)
    timeout = _int(f["pause_timeout_ms"])
    return RunSummary(
        id=run_id,
        name=f["name"],
        flow_name=f["flow_name"],
        queue=queue,
        state_type=state.type,
        state_name=state.name,
        message=state.message,
        state_time=ms_to_datetime(state.ts_ms),
        created=ms_to_datetime(created_ms),
        run_count=state.run_count,
        pause_key=f["pause_key"],
        deadline=ms_to_datetime(timeout) if timeout and state.type == "PAUSED" else None,
        input_prefix=f["input_prefix"],
        deployment_id=f["deployment_id"],
    )


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list keeps."""

    states: frozenset[str] = frozenset()
    flow: str | None = None
    awaiting_input: bool = False
    without_deadline: bool = False

    def keep(self, run: RunSummary) -> bool:
        if self.states and run.state_type not in self.states:
            return False
        if self.flow and run.flow_name != self.flow:
            return False
        if self.without_deadline and run.deadline is not None:
            return False
        return run.awaiting_input or not self.awaiting_input


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[RunSummary]
    #: Where the next page starts (``None``: this is the last page).
    next_cursor: str | None


def parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    """``"<created ms>:<run id>"`` → its parts (``None`` for no or a malformed cursor)."""
    if not cursor:
        return None
    ms, _, run_id = cursor.partition(":")
    return (int(ms), run_id) if ms.isdigit() else None


async def queues(runtime: Runtime) -> list[str]:
    """Every queue that ever held a run."""
    names = {safe_text(q) for q in await runtime.redis.smembers(runtime.store.keys.queues())}
    return sorted(n for n in names if is_queue_name(n))


async def read_summaries(runtime: Runtime, queue: str, run_ids: list[str]) -> list[RunSummary]:
    """Summaries of these runs of ``queue`` (runs gone are left out), in one round trip."""
    qkeys = runtime.store.keys.queue(queue)
    pipe = runtime.redis.pipeline(transaction=False)
    for rid in run_ids:
        pipe.hmget(qkeys.run(rid).run, list(FIELDS))
    replies = await pipe.execute()
    found = [summary_from_fields(v, rid, queue) for rid, v in zip(run_ids, replies, strict=True)]
    return [s for s in found if s is not None]


#: A position in an index: (score, run id), the order pages follow.
Position = tuple[int, str]


class _QueueScan:
    """Matches of one queue's sorted index beyond a position, in one direction, within a
    budget: the runs index newest first (scores: creation times), or the deadline index
    soonest first (scores: deadlines; it also holds scheduled starts, which filters drop)."""

    def __init__(
        self, runtime: Runtime, queue: str, beyond: Position | None, *, soonest: bool = False
    ) -> None:
        self.runtime = runtime
        self.queue = queue
        self.beyond = beyond
        self.soonest = soonest
        self.offset = 0
        self.scanned = 0
        self.exhausted = False  # the index has nothing more
        self.frontier: Position | None = None  # the last index entry read

    async def _read(self, count: int) -> list[Position]:
        qkeys = self.runtime.store.keys.queue(self.queue)
        if self.soonest:
            low: float | str = self.beyond[0] if self.beyond else "-inf"
            raw = await self.runtime.redis.zrangebyscore(
                qkeys.deadlines(), low, "+inf", start=self.offset, num=count, withscores=True
            )
        else:
            top: float | str = self.beyond[0] if self.beyond else "+inf"
            raw = await self.runtime.redis.zrevrangebyscore(
                qkeys.runs(), top, "-inf", start=self.offset, num=count, withscores=True
            )
        return [(int(s), safe_text(m)) for m, s in cast("list[tuple[Any, float]]", raw)]

    def _is_beyond(self, at: Position) -> bool:
        if self.beyond is None:
            return True
        return at > self.beyond if self.soonest else at < self.beyond

    async def collect(
        self, wanted: RunFilter, count: int, budget: int
    ) -> list[tuple[Position, RunSummary]]:
        qkeys = self.runtime.store.keys.queue(self.queue)
        found: list[tuple[Position, RunSummary]] = []
        seen: set[str] = set()  # a run added meanwhile shifts the offsets: never list one twice
        while len(found) < count and self.scanned < budget:
            read = await self._read(min(_CHUNK, budget - self.scanned))
            if not read:
                self.exhausted = True
                break
            self.offset += len(read)
            self.frontier = (read[-1][0], read[-1][1])
            fresh = [
                (ms, rid) for ms, rid in read if rid not in seen and self._is_beyond((ms, rid))
            ]
            # entries before the position (of its score, read again from the score's first)
            # do not count: a page after more than a budget of runs of one score moves on
            self.scanned += len(fresh)
            seen.update(rid for _, rid in fresh)
            pipe = self.runtime.redis.pipeline(transaction=False)
            for _, rid in fresh:
                pipe.hmget(qkeys.run(rid).run, list(FIELDS))
            for (ms, rid), values in zip(fresh, await pipe.execute(), strict=True):
                run = summary_from_fields(values, rid, self.queue, None if self.soonest else ms)
                if run is not None and wanted.keep(run):
                    found.append(((ms, rid), run))
        return found


async def _page(
    scans: list[_QueueScan], wanted: RunFilter, limit: int, budget: int, *, soonest: bool
) -> tuple[list[RunSummary], Position | None]:
    """One page merged across the queues' scans, and where the next one starts (``None``:
    every index was read to its end)."""
    per_queue = [await s.collect(wanted, limit + 1, budget) for s in scans]
    merged = list(heapq.merge(*per_queue, key=lambda pair: pair[0], reverse=not soonest))
    # a queue not read to its end may hold more runs beyond what it read: the page stops there
    frontiers = [s.frontier for s in scans if not s.exhausted and s.frontier]
    cut = (max(frontiers) if not soonest else min(frontiers)) if frontiers else None
    if cut is not None:
        merged = [p for p in merged if (p[0] <= cut if soonest else p[0] >= cut)]
    if len(merged) > limit:
        return [run for _, run in merged[:limit]], merged[limit - 1][0]
    return [run for _, run in merged], cut


def _cursor(at: Position | None) -> str | None:
    return None if at is None else f"{at[0]}:{at[1]}"


async def list_runs(
    runtime: Runtime,
    *,
    queue: str | None = None,
    wanted: RunFilter | None = None,
    limit: int = 50,
    cursor: str | None = None,
    scan_budget: int = SCAN_BUDGET,
) -> RunPage:
    """One page of runs, newest first, across queues (or of ``queue``)."""
    wanted = wanted or RunFilter()
    below = parse_cursor(cursor)
    scans = [_QueueScan(runtime, q, below) for q in ([queue] if queue else await queues(runtime))]
    runs, last = await _page(scans, wanted, limit, scan_budget, soonest=False)
    return RunPage(runs, _cursor(last))


#: An inbox cursor's phases: runs by deadline, then runs without one (newest first).
_BY_DEADLINE, _NO_DEADLINE = "d", "n"


async def awaiting_input(
    runtime: Runtime,
    *,
    limit: int = 50,
    cursor: str | None = None,
    scan_budget: int = SCAN_BUDGET,
) -> RunPage:
    """One page of the runs waiting for input: oldest deadline first, then those without a
    deadline, newest first. Runs with a deadline come from each queue's deadline index, the
    others from its runs index; the cursor names the phase and the position in it."""
    phase, _, at = (cursor or f"{_BY_DEADLINE}:").partition(":")
    found: list[RunSummary] = []
    if phase == _BY_DEADLINE:
        scans = [
            _QueueScan(runtime, q, parse_cursor(at), soonest=True) for q in await queues(runtime)
        ]
        wanted = RunFilter(awaiting_input=True)
        found, last = await _page(scans, wanted, limit, scan_budget, soonest=True)
        if last is not None or len(found) == limit:
            return RunPage(found, f"{_BY_DEADLINE}:{_cursor(last)}" if last else f"{_NO_DEADLINE}:")
        at = ""
    rest = await list_runs(
        runtime,
        wanted=RunFilter(awaiting_input=True, without_deadline=True),
        limit=limit - len(found),
        cursor=at or None,
        scan_budget=scan_budget,
    )
    more = None if rest.next_cursor is None else f"{_NO_DEADLINE}:{rest.next_cursor}"
    return RunPage(found + rest.runs, more)
