"""A run's pause as its resumers read it: the pause (state, key, schema), the input a wake-up
brings, and the schema this process saw at each run's pause last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flowbus._core.codec import blob, decode, text
from flowbus._redis.records import StoredState, pause_expired, unpack_state
from flowbus.exceptions import FlowRunNotFound, MalformedEntry

if TYPE_CHECKING:
    from flowbus._redis.store import RunStore

#: Runs whose pause schema this process keeps (a resumer's guess at a run's next pause).
_SCHEMA_CACHE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PauseView:
    state_type: str
    state_name: str
    pause_key: str
    input_prefix: str
    schema: str
    message: str = ""
    #: The pause's input has validators the JSON schema cannot express: its owner judges it.
    judged: bool = False

    @property
    def expired(self) -> bool:
        return pause_expired(self.state_type, self.message)


@dataclass(frozen=True, slots=True)
class ResumeView:
    state_type: str
    state_name: str
    message: str
    fired: bool
    response: Any

    @property
    def expired(self) -> bool:
        return pause_expired(self.state_type, self.message)


class SeenSchemas:
    """The schema of each run's pause this process saw last, by run id: what a resume checks
    its input against first (it names it, so a stale one costs a round trip)."""

    __slots__ = ("_schemas",)

    def __init__(self) -> None:
        self._schemas: dict[str, str] = {}

    def seen(self, run_id: UUID | str) -> str | None:
        """The schema of the run's pause this process saw last (None: none seen)."""
        return self._schemas.get(str(run_id))

    def saw(self, run_id: UUID | str, schema: str) -> None:
        if len(self._schemas) >= _SCHEMA_CACHE_SIZE:
            self._schemas.clear()
        self._schemas[str(run_id)] = schema


async def pause_view(store: RunStore, run_id: UUID | str) -> PauseView:
    """What a resumer must know: state, pause key and the schema stored by the pause."""
    keys = await store.run_keys(run_id)
    fields = await store.redis.hmget(
        keys.run, ["state", "pause_key", "input_prefix", "input_judged"]
    )
    if fields[0] is None:
        raise FlowRunNotFound(run_id)
    try:
        state = unpack_state(fields[0])
    except ValueError as exc:
        raise MalformedEntry("run hash", str(exc), {"state": text(fields[0])}) from exc
    pause_key, prefix, judged = (text(f) for f in fields[1:])
    schema = await store.redis.hget(keys.input, f"{prefix}-schema") if prefix else None
    if schema:
        store.schemas.saw(run_id, text(schema))
    return PauseView(
        state.type,
        state.name,
        pause_key,
        prefix,
        text(schema) if schema else "",
        state.message,
        judged == "1",
    )


async def resumed_input(
    store: RunStore, run_id: UUID | str, pause_key: str, prefix: str
) -> ResumeView:
    """After a wake-up: the run's state, whether ``pause_key`` fired, and its input."""
    keys = await store.run_keys(run_id)
    pipe = store.redis.pipeline(transaction=False)
    pipe.hget(keys.run, "state")
    pipe.sismember(keys.fired, pause_key)
    pipe.hget(keys.input, f"{prefix}-response")
    raw_state, fired, response = await pipe.execute()
    try:
        state = unpack_state(raw_state)
    except ValueError:  # gone (or not ours): the caller finds it left its pause
        state = StoredState("", 0, 0, "", "")
    return ResumeView(
        state.type,
        state.name,
        state.message,
        bool(fired),
        None if response is None else decode(blob(response)),
    )
