"""Key names: one factory, every queue key under the queue's hash tag (pure, no Redis)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from redis.crc import key_slot

from flowbus._redis.keys import Keys, validate_queue_name


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_every_queue_and_run_key_carries_the_queue_hash_tag() -> None:
    # Given the keys of one queue and of one of its runs
    queue = Keys("fb").queue("emails")
    run_keys = queue.run(uuid4())
    keys = [
        queue.stream(),
        queue.runs(),
        queue.events(),
        queue.deadlines(),
        queue.dead_letter(),
        queue.resume_requests(),
        queue.resume_outcomes(),
        *run_keys.as_list(),
        *run_keys.named().values(),
    ]

    # Then every key hashes on the queue name, under the prefix: every script (they all take
    # the run's hash and its queue's tag as KEYS, and name the keys they touch from them)
    # touches one cluster slot
    assert {hash_tag(key) for key in keys} == {"emails"}
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert all(key.startswith("fb:{emails}") for key in keys)


def test_a_script_gets_the_run_hash_and_queue_tag_and_names_the_keys_the_store_uses() -> None:
    run_id = uuid4()
    queue = Keys("p").queue("q")
    run_keys = queue.run(run_id)

    assert run_keys.as_list() == [f"p:{{q}}:run:{run_id}", "p:{q}"]
    assert run_keys.named() == {
        "RUN": f"p:{{q}}:run:{run_id}",
        "HISTORY": run_keys.history,
        "FIRED": f"p:{{q}}:run:{run_id}:fired",
        "INPUT": run_keys.input,
        "MESSAGES": run_keys.messages,
        "QEVENTS": queue.events(),
        "DEADLINES": queue.deadlines(),
        "QUEUE": queue.stream(),
        "RUNS": queue.runs(),
        "CONTROL": queue.control(),
        "HOLDERS": "p:{q}:holders",
        "HELD": "p:{q}:held",
    }


def test_run_keys_of_different_runs_differ_but_share_queue_keys() -> None:
    queue = Keys().queue("default")
    first, second = queue.run(uuid4()), queue.run(uuid4())

    assert first.run != second.run and first.history != second.history
    assert first.queue_events == second.queue_events == queue.events()


def test_prefix_separates_namespaces() -> None:
    assert Keys("a").queue("q").stream() != Keys("b").queue("q").stream()
    assert Keys("a").run_index("x") == "a:runs:x"
    assert Keys("a").deployment("d") == "a:{deployments}:d"


@pytest.mark.parametrize(
    "name",
    ["", "a{b", "a}b", "a:b", "has space", "tab\there", "new\nline", "x" * 101],
)
def test_invalid_queue_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid queue name"):
        validate_queue_name(name)
    with pytest.raises(ValueError, match="Invalid queue name"):
        Keys().queue(name)


@pytest.mark.parametrize("name", ["default", "a", "emails-high_prio.v2", "x" * 100])
def test_valid_queue_names_pass_through(name: str) -> None:
    assert validate_queue_name(name) == name
