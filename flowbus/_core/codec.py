"""msgpack encoding of parameters, results and inputs; the one place raw bytes become values.

Values are JSON-like after :func:`pydantic_core.to_jsonable_python` (so pydantic models,
datetimes and UUIDs work); readers re-validate with the annotated type. Pickle is never read
unless the caller opts in, because unpickling data from Redis runs code.
"""

from __future__ import annotations

import json
import pickle
import re
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Literal

import msgpack
from pydantic_core import PydanticSerializationError, to_jsonable_python

from flowbus.exceptions import PayloadTooLarge, SerializationError

#: msgpack extension code of a pickled value.
_PICKLE_EXT = 42

Serializer = Literal["msgpack", "pickle"]


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise SerializationError(
            f"Cannot encode {type(value).__name__!r} with msgpack: {exc}. "
            "Return JSON-like values or pydantic models, or opt into serializer='pickle'."
        ) from exc


def _pickle_default(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return msgpack.ExtType(_PICKLE_EXT, pickle.dumps(value))


def encode(
    value: Any,
    *,
    serializer: Serializer = "msgpack",
    limit: int | None = None,
    what: str = "value",
) -> bytes:
    """Encode ``value``; raise :class:`SerializationError` or :class:`PayloadTooLarge`."""
    default = _pickle_default if serializer == "pickle" else _jsonable
    try:
        data: bytes = msgpack.packb(value, default=default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"Cannot encode {what}: {exc}") from exc
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(what, len(data), limit)
    return data


def decode(data: bytes, *, allow_pickle: bool = False) -> Any:
    """Decode what :func:`encode` wrote; pickled parts only with ``allow_pickle``."""

    def ext_hook(code: int, payload: bytes) -> Any:
        if code != _PICKLE_EXT:
            raise SerializationError(f"Unknown msgpack extension {code}")
        if not allow_pickle:
            raise SerializationError("Refusing to unpickle a value read from Redis (opt in)")
        return pickle.loads(payload)

    try:
        return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)
    except SerializationError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SerializationError(f"Cannot decode msgpack payload: {exc}") from exc


def blob(value: object) -> bytes:
    """A Redis reply known to be binary (clients here never decode replies)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise SerializationError(f"Expected bytes from Redis, got {type(value).__name__}")


def text(value: object) -> str:
    """A Redis reply field as text ("" for a missing field).

    Bytes that are not UTF-8 become U+FFFD: anyone can write a field, and no field may end a
    reader (a run id with such bytes is then simply not a UUID).
    """
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


#: Deepest nesting of JSON read from Redis (deeper text would exhaust the parser's stack).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')  # possessive: no backtracking
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(raw: str) -> int:
    """How deep ``raw`` nests arrays and objects (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", raw))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def loads_json(raw: str, *, limit: int | None = None, what: str = "JSON") -> Any:
    """Parse JSON text from an untrusted source, its size and depth bounded before parsing.

    Raises :class:`SerializationError` (with the reason) for text too large, too deep or
    not JSON.
    """
    if limit is not None and len(raw) > limit:
        raise SerializationError(f"{what} is larger than {limit} bytes")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise SerializationError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} is not valid JSON: {exc}") from exc


def exact_json(value: Any, *, limit: int) -> str:
    """``value`` as JSON text that decodes to an equal value, at most ``limit`` characters;
    "" when there is none (bytes, keys that are not text, tuples, NaN, larger text), so a
    reader of the text gets what a reader of its msgpack would."""
    try:
        raw = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return ""
    if len(raw) > limit or json.loads(raw) != value:
        return ""
    return raw


def ms_to_datetime(ms: int) -> datetime:
    """A time Redis holds as epoch milliseconds (the scripts' clock) as an aware datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def datetime_to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)
