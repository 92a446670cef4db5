"""Stream entries as typed values: the one place where XREAD/XRANGE replies are parsed."""

from __future__ import annotations

from typing import Any

from flowbus._core.codec import text
from flowbus.exceptions import MalformedEntry

#: An entry id and its fields, decoded as text.
Entry = tuple[str, dict[str, str]]


def parse_entries(raw: Any) -> list[Entry]:
    """Parse an ``XRANGE`` reply (or one stream of an ``XREAD`` reply)."""
    if not isinstance(raw, list):
        raise MalformedEntry("stream reply", repr(raw)[:200])
    entries: list[Entry] = []
    for item in raw:
        entry_id, fields = item
        entries.append((text(entry_id), {text(k): text(v) for k, v in (fields or {}).items()}))
    return entries


def parse_xread(raw: Any) -> list[tuple[str, list[Entry]]]:
    """Parse an ``XREAD``/``XREADGROUP`` reply: per stream, its entries (empty on timeout)."""
    if not raw:
        return []
    if isinstance(raw, dict):  # RESP3 replies are maps
        return [(text(k), parse_entries(v)) for k, v in raw.items()]
    return [(text(stream), parse_entries(entries)) for stream, entries in raw]
