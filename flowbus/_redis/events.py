"""Stream entries as typed values: the one place where XREAD/XRANGE replies, the run events
``transition()`` in ``lua/_prelude.lua`` publishes, and the history it records, are parsed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbus._core.codec import loads_json, ms_to_datetime, text
from flowbus.exceptions import MalformedEntry, SerializationError
from flowbus.states import FINAL_TYPES, State, StateType

logger = logging.getLogger("flowbus._redis.events")

#: An entry id and its fields, decoded as text.
Entry = tuple[str, dict[str, str]]
#: An entry id and its fields as the client returned them (bytes).
RawEntry = tuple[str, Mapping[Any, Any]]


def raw_entries(raw: Any) -> list[RawEntry]:
    """The entries of an ``XRANGE`` reply (or of one stream of an ``XREAD`` reply), their
    fields left undecoded.

    Never fails on an entry's content: anyone can ``XADD`` anything. An entry without fields
    (deleted while pending) has none; what each field means is for its reader to check, and
    :func:`text` turns bytes that are not UTF-8 into U+FFFD.
    """
    if not isinstance(raw, list):
        raise MalformedEntry("stream reply", repr(raw)[:200])
    return [(text(item[0]), _fields(item[1])) for item in raw if _is_entry(item)]


def _is_entry(item: Any) -> bool:
    return isinstance(item, list | tuple) and len(item) == 2 and item[0] is not None


def _fields(raw: Any) -> Mapping[Any, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list | tuple):  # a reply redis-py did not turn into a dict
        return dict(zip(raw[::2], raw[1::2], strict=False))
    return {}


def raw_xread(raw: Any) -> list[tuple[str, list[RawEntry]]]:
    """An ``XREAD``/``XREADGROUP`` reply: per stream, its entries (none on timeout)."""
    if not raw:
        return []
    if isinstance(raw, dict):  # RESP3 replies are maps
        return [(text(k), raw_entries(v)) for k, v in raw.items()]
    return [(text(stream), raw_entries(entries)) for stream, entries in raw]


def parse_entries(raw: Any) -> list[Entry]:
    """Parse an ``XRANGE`` reply (or one stream of an ``XREAD`` reply)."""
    return [(i, {text(k): text(v) for k, v in f.items()}) for i, f in raw_entries(raw)]


def parse_xread(raw: Any) -> list[tuple[str, list[Entry]]]:
    """Parse an ``XREAD``/``XREADGROUP`` reply: per stream, its entries (empty on timeout)."""
    return [
        (stream, [(i, {text(k): text(v) for k, v in f.items()}) for i, f in entries])
        for stream, entries in raw_xread(raw)
    ]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One published state change of a run, as every reader of the event streams sees it."""

    id: str
    run_id: str
    flow: str
    type: StateType
    name: str
    message: str
    from_type: str
    from_name: str
    ts_ms: int
    run_count: int
    #: The pause the run enters or leaves ("" none).
    pause_key: str
    #: A deadline the transition set (pause timeout, scheduled start), epoch ms.
    deadline_ms: int | None
    #: On the control stream, what the process holding the run must do ("cancel", "suspend",
    #: or "fence": another process took the run over, the old execution stops); "judge" a
    #: resume's input, and the "verdict" that answers it (see flowbus/input/judging.py).
    action: str
    #: A judge request's id, which its verdict, or the resume that applied it, repeats.
    proposal: str = ""
    #: A judge request's input, a verdict's errors (JSON text; "" otherwise).
    payload: str = ""
    #: On the control stream, the input a resume stored (JSON text, ``null`` for none), so
    #: the paused process reads nothing ("" when the resume did not carry it).
    input: str = ""

    @property
    def timestamp(self) -> datetime:
        return ms_to_datetime(self.ts_ms)

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    def state(self) -> State:
        """The state the run entered (its details stay in the run hash)."""
        return State(
            type=self.type, name=self.name, message=self.message or None, timestamp=self.timestamp
        )


def _number(value: str) -> int:
    return int(value) if value else 0


def _text_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An entry's fields as text (by ``text`` only when they are not all bytes)."""
    try:
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
    except AttributeError:  # a client that decodes its replies
        return {text(k): text(v) for k, v in raw.items()}


def parse_event(entry_id: str, raw: Mapping[Any, Any]) -> RunEvent:
    """A run event from its entry; :class:`MalformedEntry` for one that is not ours."""
    try:
        fields = _text_fields(raw)
        deadline = fields.get("deadline")
        return RunEvent(
            id=entry_id,
            run_id=fields["run_id"],
            flow=fields.get("flow", ""),
            type=StateType(fields["type"]),
            name=fields.get("name", ""),
            message=fields.get("message", ""),
            from_type=fields.get("from_type", ""),
            from_name=fields.get("from_name", ""),
            ts_ms=_number(fields.get("ts") or entry_id.partition("-")[0]),
            run_count=_number(fields.get("run_count", "")),
            pause_key=fields.get("pause_key", ""),
            deadline_ms=int(deadline) if deadline else None,
            action=fields.get("action", ""),
            proposal=fields.get("proposal", ""),
            payload=fields.get("payload", ""),
            input=fields.get("input", ""),
        )
    except (KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedEntry("run event", f"entry {entry_id}: {exc!r}") from exc


def event_or_none(stream: str, entry_id: str, raw: Mapping[Any, Any]) -> RunEvent | None:
    """The run event of an entry, or ``None`` (logged, naming stream and entry) if malformed."""
    try:
        return parse_event(entry_id, raw)
    except MalformedEntry as exc:
        logger.warning("Skipping entry %s of %s: %s", entry_id, stream, exc)
        return None


#: Longest history entry parsed (a state message is cut long before this).
_HISTORY_ENTRY_CHARS = 1 << 20


def history_events(key: str, run_id: str, flow: str, raw: Any) -> list[RunEvent]:
    """The run events of an ``LRANGE`` reply of a run's history (``key``), oldest first.

    Each entry is a JSON object of its event's fields without the run's own (``run_id``,
    ``flow``: given here) and without empty ones; ``id`` is the queue events entry that
    published it. An entry that is not one is skipped with a warning.
    """
    found: list[RunEvent] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            fields = loads_json(text(item), limit=_HISTORY_ENTRY_CHARS, what="history entry")
            if not isinstance(fields, dict):
                raise SerializationError("a history entry is a JSON object")
            strings = {k: "" if v is None else str(v) for k, v in fields.items()}
            entry = parse_event(strings.get("id", ""), {**strings, "run_id": run_id, "flow": flow})
        except (SerializationError, MalformedEntry) as exc:
            logger.warning("Skipping entry %d of %s: %s", index, key, exc)
            continue
        found.append(entry)
    return found
