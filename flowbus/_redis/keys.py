"""Every Redis key flowbus uses, from one place.

All keys of a queue carry the queue's hash tag (``fb:{queue}:…``), so each transition script
touches a single hash slot and a Redis Cluster can spread queues over shards. Deployments share
the tag ``{deployments}``; every other key (``queues``, ``workers``, ``runs:<id>``) is only ever
used alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

#: Characters a queue name may not hold: braces would break the hash tag, spaces the CLI.
_FORBIDDEN = frozenset("{}: \t\r\n")


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it can be a queue name, else raise ``ValueError``."""
    if not name or len(name) > 100 or _FORBIDDEN.intersection(name):
        raise ValueError(f"Invalid queue name {name!r}: 1-100 chars, no braces, colons or spaces")
    return name


def run_index_key(prefix: str, run_id: UUID | str) -> str:
    """String holding the queue of a run (written once, read by resume/wait): outside every
    queue's slot, so a run is found by its id alone."""
    return f"{prefix}:runs:{run_id}"


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run, in the order every run script receives them as ``KEYS``."""

    run: str
    #: The run's state history, a capped list (see ``record()`` in ``lua/_prelude.lua``).
    history: str
    queue_events: str
    fired: str
    input: str
    results: str
    deadlines: str
    queue_stream: str
    runs: str
    messages: str
    control: str
    holders: str
    held: str
    #: The run's queue index (another slot: never passed to a script, see :class:`Keys`).
    index: str
    #: The run's queue (a name, not a key).
    queue: str

    def as_list(self) -> list[str]:
        return [
            self.run,
            self.history,
            self.queue_events,
            self.fired,
            self.input,
            self.results,
            self.deadlines,
            self.queue_stream,
            self.runs,
            self.messages,
            self.control,
            self.holders,
            self.held,
        ]


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Keys of one queue; every one shares the queue's hash slot."""

    prefix: str
    name: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{{self.name}}}"

    def run(self, run_id: UUID | str) -> RunKeys:
        base = f"{self.tag}:run:{run_id}"
        return RunKeys(
            run=base,
            history=f"{base}:history",
            queue_events=self.events(),
            fired=f"{base}:fired",
            input=f"{base}:input",
            results=f"{base}:results",
            deadlines=self.deadlines(),
            queue_stream=self.stream(),
            runs=self.runs(),
            messages=f"{base}:messages",
            control=self.control(),
            holders=self.holders(),
            held=self.held(),
            index=run_index_key(self.prefix, run_id),
            queue=self.name,
        )

    def stream(self) -> str:
        """Runs ready to execute; consumed by workers through a consumer group."""
        return f"{self.tag}:queue"

    def runs(self) -> str:
        """Sorted set of the queue's run ids by creation time (ms), for listing."""
        return f"{self.tag}:runs"

    def control(self) -> str:
        """What a process holding a run acts on: requests, ends of pauses, new deadlines."""
        return f"{self.tag}:control"

    def holders(self) -> str:
        """Hash: name of a process holding runs of the queue → end of its lease (ms)."""
        return f"{self.tag}:holders"

    def held(self) -> str:
        """Set of the queue's runs held by processes that are not workers (plain scripts)."""
        return f"{self.tag}:held"

    def events(self) -> str:
        """Every transition of every run of the queue (capped)."""
        return f"{self.tag}:events"

    def deadlines(self) -> str:
        """Sorted set of pause/suspend deadlines and scheduled starts, scored in ms."""
        return f"{self.tag}:deadlines"

    def dead_letter(self) -> str:
        return f"{self.tag}:dead-letter"

    def resume_requests(self) -> str:
        return f"{self.tag}:resume-requests"

    def resume_outcomes(self) -> str:
        return f"{self.tag}:resume-outcomes"

    def resume_request_seen(self, request_id: str) -> str:
        """Marker of a resume request already taken by a worker (applied once per request id)."""
        return f"{self.tag}:resume-request:{request_id}"


@lru_cache(maxsize=1024)
def _queue_keys(prefix: str, name: str) -> QueueKeys:
    return QueueKeys(prefix, validate_queue_name(name))


@dataclass(frozen=True, slots=True)
class Keys:
    """Key factory for one key prefix."""

    prefix: str = "fb"

    def queue(self, name: str) -> QueueKeys:
        return _queue_keys(self.prefix, name)

    def run_index(self, run_id: UUID | str) -> str:
        return run_index_key(self.prefix, run_id)

    def queues(self) -> str:
        """Set of every queue that ever held a run (swept by workers)."""
        return f"{self.prefix}:queues"

    def block(self, kind: str, name: str) -> str:
        """One saved block (a ``JSON`` value of ``flowbus.blocks.system``), by kind and name."""
        return f"{self.prefix}:block:{kind}:{name}"

    def deployment(self, deployment_id: UUID | str) -> str:
        """One deployment; it shares the names hash's slot, as both are written together."""
        return f"{self.prefix}:{{deployments}}:{deployment_id}"

    def deployment_names(self) -> str:
        """Hash ``flow-name/deployment-name`` → deployment id."""
        return f"{self.prefix}:{{deployments}}"

    def workers(self) -> str:
        """Hash worker name → last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    def worker_info(self) -> str:
        """Hash worker name → JSON: its queues, flows, concurrency and runs held."""
        return f"{self.prefix}:worker-info"

    def handovers(self) -> str:
        """Hash worker name → how many entries other workers handed to it (it watches the
        count, to take them at once)."""
        return f"{self.prefix}:handovers"

    def holders(self) -> str:
        """Hash: name of every process holding runs of any queue → end of its lease (ms), so
        workers learn of a holder's end without reading every queue's holders."""
        return f"{self.prefix}:holders"
