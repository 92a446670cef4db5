"""The codec: msgpack of JSON-like values, models and opt-in pickle (pure, no Redis)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgpack
import pytest
from pydantic import BaseModel

from flowbus._core.codec import (
    blob,
    decode,
    encode,
    exact_json,
    json_depth,
    loads_json,
    text,
)
from flowbus._redis.events import parse_entries
from flowbus.exceptions import PayloadTooLarge, SerializationError


class Point(BaseModel):
    x: int
    y: int


class Opaque:
    """An object neither msgpack nor pydantic can encode."""

    def __init__(self, value: int) -> None:
        self.value = value


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**40,
        1.5,
        "text ✓",
        b"\x00bytes",
        [],
        [1, "two", None],
        {"a": {"b": [1, 2, {"c": None}]}},
        {1: "int keys survive"},
    ],
)
def test_json_like_values_roundtrip(value: Any) -> None:
    assert decode(encode(value)) == value


def test_models_datetimes_and_uuids_become_json_like() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    uid = UUID(int=1)

    decoded = decode(encode({"point": Point(x=1, y=2), "when": when, "id": uid}))

    assert decoded == {
        "point": {"x": 1, "y": 2},
        "when": when.isoformat().replace("+00:00", "Z"),
        "id": str(uid),
    }
    assert Point.model_validate(decoded["point"]) == Point(x=1, y=2)


def test_an_arbitrary_object_is_refused_with_a_hint() -> None:
    with pytest.raises(SerializationError, match="serializer='pickle'"):
        encode(Opaque(1))


def test_pickle_encodes_arbitrary_objects_only_when_chosen() -> None:
    # Given a value holding an arbitrary object, encoded with the pickle serializer
    data = encode({"obj": Opaque(3), "n": 1}, serializer="pickle")

    # When it is decoded with pickle allowed, Then the object comes back
    decoded = decode(data, allow_pickle=True)
    assert isinstance(decoded["obj"], Opaque) and decoded["obj"].value == 3
    assert decoded["n"] == 1


def test_decode_refuses_pickle_unless_allowed() -> None:
    data = encode(Opaque(3), serializer="pickle")

    with pytest.raises(SerializationError, match="unpickle"):
        decode(data)


def test_pickle_serializer_keeps_json_like_values_plain() -> None:
    # JSON-like parts stay msgpack, so a reader without pickle can still read them
    assert decode(encode({"a": [1, 2]}, serializer="pickle")) == {"a": [1, 2]}


def test_an_unknown_extension_is_refused() -> None:
    data = msgpack.packb(msgpack.ExtType(7, pickle.dumps(1)))

    with pytest.raises(SerializationError, match="Unknown msgpack extension 7"):
        decode(data, allow_pickle=True)


def test_garbage_bytes_raise_serialization_error() -> None:
    with pytest.raises(SerializationError, match="Cannot decode"):
        decode(b"\xc1")


def test_payload_over_the_limit_is_refused_with_its_size() -> None:
    value = "x" * 100
    size = len(encode(value))

    assert decode(encode(value, limit=size)) == value
    with pytest.raises(PayloadTooLarge, match="parameters is") as refused:
        encode(value, limit=size - 1, what="parameters")
    assert (refused.value.size, refused.value.limit) == (size, size - 1)


def test_blob_and_text_normalise_redis_replies() -> None:
    assert blob(b"a") == b"a" and blob("a") == b"a"
    assert text(None) == "" and text(b"a") == "a" and text(3) == "3"
    with pytest.raises(SerializationError):
        blob(3)


def test_text_never_fails_on_bytes_that_are_not_utf8() -> None:
    assert text(b"\xff\xfe") == "\ufffd\ufffd"


@pytest.mark.parametrize(
    ("raw", "depth"),
    [("1", 0), ("[[[]]]", 3), ('{"a": "[[[["}', 1), ('["a\\\\", [1]]', 2), ('"\\"[["', 0)],
)
def test_json_depth_counts_brackets_outside_strings(raw: str, depth: int) -> None:
    assert json_depth(raw) == depth


def test_json_from_redis_is_bounded_before_parsing() -> None:
    assert loads_json('{"a": [1]}', limit=100) == {"a": [1]}
    with pytest.raises(SerializationError, match="nests deeper than 64 levels"):
        loads_json("[" * 5000 + "]" * 5000, limit=10**6)
    with pytest.raises(SerializationError, match="larger than 10 bytes"):
        loads_json('"' + "x" * 20 + '"', limit=10, what="input")
    with pytest.raises(SerializationError, match="not valid JSON"):
        loads_json("{", limit=10)


@pytest.mark.parametrize(
    "value", [{"n": 1, "x": [1.5, None, True, "é"], "d": {"k": {}}}, {}, None, [1, "a"]]
)
def test_exact_json_is_text_whose_reader_gets_what_msgpack_s_reader_gets(value: Any) -> None:
    raw = exact_json(value, limit=1000)
    assert loads_json(raw) == decode(encode(value)) == value


@pytest.mark.parametrize(
    "value", [{"b": b"bytes"}, {1: "int key"}, {"t": (1, 2)}, {"f": float("nan")}, {"o": object()}]
)
def test_exact_json_is_empty_for_what_json_would_change(value: Any) -> None:
    # bytes and objects JSON cannot say; int keys and tuples it would turn into text and lists
    assert exact_json(value, limit=1000) == ""


def test_exact_json_is_empty_beyond_its_limit() -> None:
    assert exact_json({"s": "x" * 20}, limit=20) == ""
    assert exact_json({"s": "x"}, limit=20) == '{"s":"x"}'


def test_stream_entries_parse_whatever_their_content() -> None:
    raw = [[b"1-0", {b"run_id": b"\xff"}], [b"2-0", None], (b"3-0", [b"a", b"b"]), None, [b"x"]]
    assert parse_entries(raw) == [("1-0", {"run_id": "\ufffd"}), ("2-0", {}), ("3-0", {"a": "b"})]
