"""Every Redis key flowbus uses, from one place.

All keys of a queue carry the queue's hash tag (``fb:{queue}:…``), so each transition script
touches a single hash slot and a Redis Cluster can spread queues over shards. Deployments share
the tag ``{deployments}``; every other key (``queues``, ``workers``, ``runs:<id>``) is only ever
used alone. A run is found by its id alone: the id flowbus makes carries its queue's hint
(``run_ids``); only a run whose id its creator chose has an index, ``runs:<id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from uuid import UUID

from flowbus._redis.run_ids import carries_queue

#: Characters a queue name may not hold: braces would break the hash tag, spaces the CLI.
_FORBIDDEN = frozenset("{}: \t\r\n")


def is_queue_name(name: str) -> bool:
    """Whether ``name`` can be a queue name."""
    return bool(name) and len(name) <= 100 and not _FORBIDDEN.intersection(name)


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it can be a queue name, else raise ``ValueError``."""
    if not is_queue_name(name):
        raise ValueError(f"Invalid queue name {name!r}: 1-100 chars, no braces, colons or spaces")
    return name


#: The keys of a run besides its hash, each named ``<run hash><suffix>``, by the name the
#: scripts give them (``lua/_prelude.lua`` builds them from the run hash with these: see
#: ``scripts.library()``).
RUN_KEY_SUFFIXES = {
    "HISTORY": ":history",
    "FIRED": ":fired",
    "INPUT": ":input",
    "MESSAGES": ":messages",
}
#: The keys of a queue a script may touch, each named ``<queue tag><suffix>``, by the name
#: the scripts give them (built like the run keys).
QUEUE_KEY_SUFFIXES = {
    "QEVENTS": ":events",
    "DEADLINES": ":deadlines",
    "QUEUE": ":queue",
    "RUNS": ":runs",
    "CONTROL": ":control",
    "HOLDERS": ":holders",
    "HELD": ":held",
}


def run_index_key(prefix: str, run_id: UUID | str) -> str:
    """String holding the queue of a run whose id carries no hint of it (an id its creator
    chose): outside every queue's slot, so such a run is found by its id alone too."""
    return f"{prefix}:runs:{run_id}"


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run; a script receives two (:meth:`as_list`) and names the others.

    Held for every run a process has in hand (100,000 paused runs, say), so it stores the
    run's hash key and its queue's keys (shared by all its runs); the run's other keys are
    made when asked.
    """

    #: The run's hash.
    run: str
    run_id: str
    queue_keys: QueueKeys

    @property
    def history(self) -> str:
        """The run's state history, a capped list (see ``record()`` in ``lua/_prelude.lua``)."""
        return self.run + RUN_KEY_SUFFIXES["HISTORY"]

    @property
    def fired(self) -> str:
        return self.run + RUN_KEY_SUFFIXES["FIRED"]

    @property
    def input(self) -> str:
        return self.run + RUN_KEY_SUFFIXES["INPUT"]

    @property
    def messages(self) -> str:
        return self.run + RUN_KEY_SUFFIXES["MESSAGES"]

    @property
    def queue_events(self) -> str:
        return self.queue_keys.shared.events

    @property
    def deadlines(self) -> str:
        return self.queue_keys.shared.deadlines

    @property
    def queue_stream(self) -> str:
        return self.queue_keys.shared.stream

    @property
    def runs(self) -> str:
        return self.queue_keys.shared.runs

    @property
    def control(self) -> str:
        return self.queue_keys.shared.control

    @property
    def holders(self) -> str:
        return self.queue_keys.shared.holders

    @property
    def held(self) -> str:
        return self.queue_keys.shared.held

    @property
    def index(self) -> str:
        """The run's queue index (another slot: never passed to a script, see :class:`Keys`);
        written only for a run that is :attr:`indexed`."""
        return run_index_key(self.queue_keys.prefix, self.run_id)

    @property
    def indexed(self) -> bool:
        """Whether the run has an index: its id does not carry its queue's hint (its creator
        chose it), so it cannot be found from the id without one."""
        return not carries_queue(self.run_id, self.queue_keys.name)

    @property
    def queue(self) -> str:
        """The run's queue (a name, not a key)."""
        return self.queue_keys.name

    def as_list(self) -> list[str]:
        """The ``KEYS`` of a script call: the run's hash and its queue's tag (a name no key
        has, in the same slot), from which the script names the keys it touches with
        :data:`RUN_KEY_SUFFIXES` and :data:`QUEUE_KEY_SUFFIXES`. Each key passed costs the
        server more than the script's naming it."""
        return [self.run, self.queue_keys.tag]

    def named(self) -> dict[str, str]:
        """Every key a script may touch, by the name the scripts give it."""
        tag = self.queue_keys.tag
        return {
            "RUN": self.run,
            **{name: self.run + suffix for name, suffix in RUN_KEY_SUFFIXES.items()},
            **{name: tag + suffix for name, suffix in QUEUE_KEY_SUFFIXES.items()},
        }


@dataclass(frozen=True, slots=True)
class _SharedKeys:
    """The keys of a queue that every run's script call names, made once per queue."""

    events: str
    deadlines: str
    stream: str
    runs: str
    control: str
    holders: str
    held: str


@dataclass(frozen=True)
class QueueKeys:
    """Keys of one queue; every one shares the queue's hash slot."""

    prefix: str
    name: str

    @cached_property
    def tag(self) -> str:
        """``<prefix>:{<queue>}``: every key of the queue starts with it."""
        return f"{self.prefix}:{{{self.name}}}"

    @cached_property
    def shared(self) -> _SharedKeys:
        return _SharedKeys(
            self.events(),
            self.deadlines(),
            self.stream(),
            self.runs(),
            self.control(),
            self.holders(),
            self.held(),
        )

    def run(self, run_id: UUID | str) -> RunKeys:
        rid = str(run_id)
        return RunKeys(f"{self.tag}:run:{rid}", rid, self)

    def stream(self) -> str:
        """Runs ready to execute; consumed by workers through a consumer group."""
        return self.tag + QUEUE_KEY_SUFFIXES["QUEUE"]

    def runs(self) -> str:
        """Sorted set of the queue's run ids by creation time (ms), for listing."""
        return self.tag + QUEUE_KEY_SUFFIXES["RUNS"]

    def control(self) -> str:
        """What a process holding a run acts on: requests, ends of pauses, new deadlines."""
        return self.tag + QUEUE_KEY_SUFFIXES["CONTROL"]

    def holders(self) -> str:
        """Hash: name of a process holding runs of the queue → end of its lease (ms)."""
        return self.tag + QUEUE_KEY_SUFFIXES["HOLDERS"]

    def held(self) -> str:
        """Set of the queue's runs held by processes that are not workers (plain scripts)."""
        return self.tag + QUEUE_KEY_SUFFIXES["HELD"]

    def events(self) -> str:
        """Every transition of every run of the queue (capped)."""
        return self.tag + QUEUE_KEY_SUFFIXES["QEVENTS"]

    def deadlines(self) -> str:
        """Sorted set of pause/suspend deadlines and scheduled starts, scored in ms."""
        return self.tag + QUEUE_KEY_SUFFIXES["DEADLINES"]

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

    def queues_added(self) -> str:
        """Stream announcing each queue a process starts creating runs on (``queue_news``)."""
        return f"{self.prefix}:queues:added"

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
