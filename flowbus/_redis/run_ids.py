"""Run ids that carry their queue, so a run is found by its id without an index key.

A queue's hint is a 32-bit number from its name. An id flowbus makes for a run of a queue is
a random uuid4 whose low 32 bits are its high 32 bits XOR the queue's hint: it still looks
random, its version and variant bits (neither in the first nor the last 32 bits) are those
of a uuid4, and the hint is read back from the id alone. A process looks a run up in the
queues whose hint its id carries (:class:`QueuesByHint`); only an id its creator chose,
which carries no hint of its queue, is written in an index (``RunKeys.indexed``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from functools import lru_cache
from uuid import UUID, uuid4

_LOW = 0xFFFFFFFF
#: An id's text as ``str(UUID)`` writes it.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@lru_cache(maxsize=1024)
def queue_hint(queue: str) -> int:
    """The 32-bit hint of a queue: what the ids of its runs carry."""
    return zlib.crc32(queue.encode())


def new_run_id(queue: str) -> UUID:
    """A new random id of a run of ``queue``, carrying the queue's hint."""
    value = uuid4().int & ~_LOW
    return UUID(int=value | ((value >> 96) ^ queue_hint(queue)))


def hint_of(run_id: UUID | str) -> int | None:
    """The hint an id carries (the queue's, for an id flowbus made); None for an id that is
    no uuid, which names no run flowbus made. Read from an id's text in its canonical form
    without parsing it whole: every final transition asks."""
    if isinstance(run_id, UUID):
        value = run_id.int
        return (value >> 96) ^ (value & _LOW)
    try:
        if _CANONICAL.fullmatch(run_id):
            return int(run_id[:8], 16) ^ int(run_id[28:], 16)
        value = UUID(run_id).int
    except ValueError:
        return None
    return (value >> 96) ^ (value & _LOW)


def carries_queue(run_id: UUID | str, queue: str) -> bool:
    """Whether ``run_id`` carries ``queue``'s hint, so a run of it needs no index."""
    return hint_of(run_id) == queue_hint(queue)


class QueuesByHint:
    """Queue names by their hint: where a process looks for a run it does not know.

    Filled from the set of every queue; a queue born after the last read is missing until
    the set is read again (a run whose hint names no known queue makes its finder read it).
    """

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[int, tuple[str, ...]] = {}

    def fill(self, queues: Iterable[str]) -> None:
        """Hold ``queues`` (the whole set, as read now) instead of the names held so far."""
        names: dict[int, tuple[str, ...]] = {}
        for queue in sorted(queues):
            hint = queue_hint(queue)
            names[hint] = (*names.get(hint, ()), queue)
        self._names = names

    def named(self, hint: int | None) -> tuple[str, ...]:
        """The known queues of ``hint`` (several only for names whose hints collide)."""
        return () if hint is None else self._names.get(hint, ())
