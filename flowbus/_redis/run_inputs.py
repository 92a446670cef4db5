"""A run's inputs as Prefect's ``FlowRunInput`` records: create, read, filter and delete.

Every input created or sent is a stream entry (``key``, JSON ``payload``, ``sender``) of the
run's ``messages`` stream, found by key through the ``at:<key>`` field of the run's input
hash (written by ``send_input.lua`` in the same step). A pause keeps its schema, description
and response as fields of that hash itself; reading one of those keys returns it as JSON too.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from flowbus._core.codec import blob, decode, ms_to_datetime, text
from flowbus._redis.events import Entry, parse_entries
from flowbus._redis.keys import RunKeys
from flowbus._redis.replies import Status
from flowbus._redis.store import RunStore
from flowbus.exceptions import FlowRunNotFound, InputKeyExists, InvalidInputKey, PayloadTooLarge
from flowbus.models import FlowRunInput

#: Approximate cap of one run's message stream (entries).
MESSAGES_MAXLEN = 10_000
#: Keys are what Prefect accepts; no colon, so they never meet the hash's own fields.
_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
#: Entries read per XRANGE page while filtering.
_PAGE = 500


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidInputKey.for_key(key)
    return key


async def add(
    store: RunStore,
    run_id: UUID | str,
    key: str,
    value_json: str | bytes,
    sender: str | None,
    idempotency_key: str | None = None,
    *,
    indexed: bool = True,
) -> None:
    """Store an input under ``key``; :class:`InputKeyExists` if the key is taken. A message
    (``indexed=False``, its key unique by construction) is found by key by a scan."""
    size = len(value_json)
    if size > store.settings.max_payload_bytes:
        raise PayloadTooLarge("run input", size, store.settings.max_payload_bytes)
    keys = await store.run_keys(run_id)
    reply = await store.scripts.send_input(
        keys,
        key=key,
        payload=value_json.encode() if isinstance(value_json, str) else value_json,
        sender=sender or "",
        idempotency_key=idempotency_key or "",
        maxlen=MESSAGES_MAXLEN,
        indexed=indexed,
    )
    if reply.status is Status.NOT_FOUND:
        raise FlowRunNotFound(run_id)
    if reply.status is Status.REFUSED:
        raise InputKeyExists(f"Flow run {run_id} already has an input with key {key!r}")


def _as_json(raw: bytes) -> str:
    """A pause's hash field as JSON text: the schema is JSON, the response msgpack, the
    description plain text."""
    try:
        json.loads(raw)
        return text(raw)
    except (ValueError, RecursionError):
        pass
    try:
        return json.dumps(decode(raw))
    except Exception:  # not msgpack either: a description
        return json.dumps(text(raw))


def record(run_id: UUID | str, entry: Entry) -> FlowRunInput:
    entry_id, fields = entry
    return FlowRunInput(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"flowbus:{run_id}:{entry_id}"),
        created=ms_to_datetime(int(entry_id.split("-", 1)[0])),
        flow_run_id=UUID(str(run_id)),
        key=fields.get("key", ""),
        value=fields.get("payload") or "null",
        sender=fields.get("sender") or None,
    )


async def read(store: RunStore, run_id: UUID | str, key: str) -> FlowRunInput | None:
    """The input under ``key``, or ``None``."""
    keys = await store.run_keys(run_id)
    own, entry_id = await store.redis.hmget(keys.input, [key, f"at:{key}"])
    if own is not None:
        return FlowRunInput(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"flowbus:{run_id}:{key}"),
            flow_run_id=UUID(str(run_id)),
            key=key,
            value=_as_json(blob(own)),
        )
    entry = await _entry(store, keys, key, entry_id)
    return None if entry is None else record(run_id, entry)


async def _entry(store: RunStore, keys: RunKeys, key: str, entry_id: Any) -> Entry | None:
    """The stream entry of the input under ``key``: by its index, else (a message) by a scan."""
    if entry_id is not None:
        found = parse_entries(
            await store.redis.xrange(keys.messages, text(entry_id), text(entry_id))
        )
        return found[0] if found else None
    after = "-"
    while page := await entries(store, keys, after):
        after = page[-1][0]
        for entry in page:
            if entry[1].get("key") == key:
                return entry
    return None


async def delete(store: RunStore, run_id: UUID | str, key: str) -> None:
    """Remove the input under ``key`` (nothing if there is none)."""
    keys = await store.run_keys(run_id)
    entry = await _entry(store, keys, key, await store.redis.hget(keys.input, f"at:{key}"))
    pipe = store.redis.pipeline(transaction=True)
    pipe.hdel(keys.input, key, f"at:{key}")
    if entry is not None:
        pipe.xdel(keys.messages, entry[0])
    await pipe.execute()


async def entries(store: RunStore, keys: RunKeys, after: str = "-") -> list[Entry]:
    """One page of the run's inputs, oldest first, after entry ``after``."""
    start = after if after == "-" else f"({after}"
    return parse_entries(await store.redis.xrange(keys.messages, start, "+", count=_PAGE))


async def filter_inputs(
    store: RunStore,
    run_id: UUID | str,
    key_prefix: str,
    limit: int = 1,
    exclude_keys: Iterable[str] | None = None,
) -> list[FlowRunInput]:
    """Up to ``limit`` inputs whose key starts with ``key_prefix``, oldest first."""
    keys = await store.run_keys(run_id)
    excluded = set(exclude_keys or ())
    found: list[FlowRunInput] = []
    after = "-"
    while len(found) < limit:
        page = await entries(store, keys, after)
        if not page:
            break
        after = page[-1][0]
        for entry in page:
            key = entry[1].get("key", "")
            if key.startswith(key_prefix) and key not in excluded:
                found.append(record(run_id, entry))
    return found[:limit]


def payload(value: Any) -> str:
    """JSON text of a value, as inputs are stored."""
    return json.dumps(value, separators=(",", ":"))
