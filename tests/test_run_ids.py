"""Run ids that carry their queue's hint (pure, no Redis)."""

from __future__ import annotations

import zlib
from uuid import RFC_4122, UUID, uuid4

import pytest

from flowbus._redis.keys import Keys
from flowbus._redis.run_ids import (
    QueuesByHint,
    carries_queue,
    hint_of,
    new_run_id,
    queue_hint,
)

#: Two queue names whose hints are equal (found by a search over such names).
COLLIDING = ("q-599430bd25", "q-f7633dd321")


@pytest.mark.parametrize("queue", ["default", "q1", "x" * 100])
def test_a_new_run_id_is_a_random_uuid4_carrying_its_queue_s_hint(queue: str) -> None:
    ids = [new_run_id(queue) for _ in range(100)]

    assert all(rid.version == 4 and rid.variant == RFC_4122 for rid in ids)
    assert all(hint_of(rid) == hint_of(str(rid)) == queue_hint(queue) for rid in ids)
    assert all(carries_queue(rid, queue) and not carries_queue(rid, queue + "x") for rid in ids)
    # still random in both halves the hint ties together
    assert len({rid.int >> 96 for rid in ids}) == len({rid.int & 0xFFFFFFFF for rid in ids}) == 100


def test_a_hint_is_the_crc32_of_the_name_and_an_id_s_is_its_outer_halves_xored() -> None:
    rid = UUID("12345678-0000-4000-8000-0000abcdef01")

    assert queue_hint("default") == zlib.crc32(b"default")
    assert hint_of(rid) == 0x12345678 ^ 0xABCDEF01
    assert hint_of("not-a-uuid") is None
    assert not carries_queue("not-a-uuid", "default")


def test_only_a_run_whose_id_does_not_carry_its_queue_is_indexed() -> None:
    queue = Keys().queue("default")
    chosen = uuid4()
    assert not carries_queue(chosen, "default")  # one id in 2**32 would

    assert not queue.run(new_run_id("default")).indexed
    assert queue.run(chosen).indexed
    assert queue.run(new_run_id("other")).indexed


def test_queues_by_hint_names_each_hint_s_known_queues() -> None:
    by_hint = QueuesByHint()
    assert by_hint.named(queue_hint("a")) == () and by_hint.named(None) == ()

    by_hint.fill(["a", "b", *COLLIDING])
    assert by_hint.named(queue_hint("a")) == ("a",)
    assert by_hint.named(queue_hint(COLLIDING[0])) == COLLIDING
    assert by_hint.named(hint_of(new_run_id("c"))) == ()
    # a read of the set replaces what was held
    by_hint.fill(["c"])
    assert by_hint.named(queue_hint("a")) == () and by_hint.named(queue_hint("c")) == ("c",)
