"""The replies of the Lua transition scripts, typed: what each position of a reply means.

Every reply starts ``{status, detail, state_type, state_name, run_count}`` (see
``lua/_prelude.lua``); some scripts add values after it, read here by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from flowbus._core.codec import blob, text
from flowbus._redis.records import StoredState
from flowbus.exceptions import MalformedEntry, SerializationError


class Status(IntEnum):
    """First element of every script reply (named alike in ``_prelude.lua``)."""

    ACCEPTED = 1
    REFUSED = 0
    NOT_FOUND = -1
    ALREADY_FIRED = 2
    EXPIRED = 3
    SUSPENDING = 4
    #: The process holding the run is gone: the script ended the run instead.
    ORPHANED = 5
    #: Input for the pause key came before the pause (``pause``).
    EARLY = 6
    #: An early resume found the run paused under its key: resume it normally (``resume``).
    IS_PAUSED = 7
    #: The calling execution was superseded by a newer one (fencing): nothing was written.
    STALE = 8
    #: A resume's input was checked against another schema than its pause's (``resume``).
    SCHEMA = 9


@dataclass(frozen=True, slots=True)
class Reply:
    """A script's outcome, its event id or reason (``detail``), and the run's state after it."""

    status: Status
    detail: str
    state_type: str
    state_name: str
    run_count: int

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED


@dataclass(frozen=True, slots=True)
class CreateReply(Reply):
    """``create_run``: the creation time (server clock), once the run exists."""

    created_ms: int | None


@dataclass(frozen=True, slots=True)
class ClaimReply(Reply):
    """``claim_run``: the run hash as the claim left it (empty when there is no such run);
    after a start, only what a run record holds of it but its id, queue and state: the
    fields the claim returns, and the state it wrote as ``started``."""

    run_hash: dict[bytes, bytes]
    started: StoredState | None = None


@dataclass(frozen=True, slots=True)
class PauseReply(Reply):
    """``pause``: the pause's deadline when accepted; when the key already fired, the input
    response stored by its resume (``None``: none was stored) and the identity of the input
    type it fired with (``""``: not recorded); when input came early (EARLY), that input."""

    deadline_ms: int | None
    response: bytes | None
    input_type: str = ""


@dataclass(frozen=True, slots=True)
class ResumeReply(Reply):
    """``resume``: when the input was checked against another schema than its pause's
    (SCHEMA), what a resumer needs to check it: the pause's key, its input prefix ("" for a
    pause without input), its schema and whether its owner judges the input."""

    pause_key: str = ""
    input_prefix: str = ""
    schema: str = ""
    judged: bool = False


@dataclass(frozen=True, slots=True)
class DueReply(Reply):
    """``expire_pause`` and ``start_scheduled``: milliseconds left before the deadline, when
    refused because it has not come by the server's clock (else ``None``)."""

    left_ms: int | None


R = TypeVar("R", bound=Reply)
#: Reads a script's reply (a list of at least the five shared values) as its type.
Parser = Callable[[list[Any]], R]


def _head(raw: Any) -> tuple[Status, str, str, str, int]:
    status, detail, state_type, state_name, run_count = raw[:5]
    return Status(int(status)), text(detail), text(state_type), text(state_name), int(run_count)


def _number(value: Any) -> int | None:
    """An integer reply value; ``""`` (and a missing one) is ``None``."""
    if value is None or value == b"" or value == "":
        return None
    return int(value)


def _extra(raw: list[Any], index: int) -> Any:
    return raw[5 + index] if len(raw) > 5 + index else None


def parse(raw: Any, read: Parser[R]) -> R:
    """``raw`` read by ``read``; :class:`MalformedEntry` for anything that is not a reply."""
    if not isinstance(raw, list) or len(raw) < 5:
        raise MalformedEntry("script reply", repr(raw)[:200])
    try:
        return read(raw)
    except (TypeError, ValueError, UnicodeDecodeError, SerializationError) as exc:
        raise MalformedEntry("script reply", f"{exc}: {raw!r}"[:200]) from exc


def plain(raw: list[Any]) -> Reply:
    return Reply(*_head(raw))


def created(raw: list[Any]) -> CreateReply:
    return CreateReply(*_head(raw), created_ms=_number(_extra(raw, 0)))


#: The run-hash fields a claim that started its run returns the values of, in order
#: (CLAIM_FIELDS in ``lua/_prelude.lua``).
_CLAIM_FIELDS = (
    b"flow_name",
    b"deployment_id",
    b"name",
    b"parent_id",
    b"parameters",
    b"created_ms",
    b"scheduled_ms",
)


def claimed(raw: list[Any]) -> ClaimReply:
    head = _head(raw)
    started_ms = _extra(raw, 0)
    if not started_ms:  # the whole hash, as the claim found and left it
        fields = raw[6:]
        return ClaimReply(*head, run_hash=dict(zip(fields[::2], fields[1::2], strict=True)))
    # a start: what a run record needs of the hash besides its state, which is the reply's
    values = raw[6 : 6 + len(_CLAIM_FIELDS)]
    run_hash = {k: v for k, v in zip(_CLAIM_FIELDS, values, strict=True) if v is not None}
    started = StoredState(head[2], _number(started_ms) or 0, head[4], head[3], "")
    return ClaimReply(*head, run_hash=run_hash, started=started)


def paused(raw: list[Any]) -> PauseReply:
    head = _head(raw)
    if head[0] in (Status.ALREADY_FIRED, Status.EARLY):
        stored = text(_extra(raw, 1) or b"") == "1"
        response = blob(_extra(raw, 0)) if stored else None
        kind = text(_extra(raw, 2) or b"")
        return PauseReply(*head, deadline_ms=None, response=response, input_type=kind)
    deadline = _number(_extra(raw, 0)) if head[0] is Status.ACCEPTED else None
    return PauseReply(*head, deadline_ms=deadline, response=None)


def resumed(raw: list[Any]) -> ResumeReply:
    head = _head(raw)
    if head[0] is not Status.SCHEMA:
        return ResumeReply(*head)
    key, prefix, schema, judged = (text(_extra(raw, i) or b"") for i in range(4))
    return ResumeReply(
        *head, pause_key=key, input_prefix=prefix, schema=schema, judged=judged == "1"
    )


def due(raw: list[Any]) -> DueReply:
    head = _head(raw)
    left = _number(_extra(raw, 0)) if head[0] is Status.REFUSED else None
    return DueReply(*head, left_ms=left)
