"""The resumer's side of a pause: input checked against the pause's schema, then one
compare-and-set (``resume.lua``) that wakes the paused process.

A resume without input is one script call. One with input names the schema it was checked
against, so that the script refuses it, writing nothing, when the pause waits for another:
the schema this process saw at the run's last pause makes it one call, and a refusal brings
the pause's own. A run this process does not know is looked for in the one queue its id's
hint names (``RunStore.guess_keys``), before it is looked up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from flowbus._core.codec import encode, exact_json
from flowbus._redis import run_inputs
from flowbus._redis.keys import RunKeys
from flowbus._redis.pauses import PauseView, pause_view
from flowbus._redis.replies import Reply, ResumeReply, Status
from flowbus._redis.runtime import Runtime, get_runtime
from flowbus._redis.scripts import Call
from flowbus._redis.store import RunStore
from flowbus.exceptions import (
    FlowPauseTimeout,
    FlowRunNotFound,
    HolderGone,
    InvalidRunInput,
    NotPausedError,
    ResumeRefused,
    SerializationError,
    StillSuspending,
)
from flowbus.input.early import deliver_early
from flowbus.input.judging import ask_owner, new_proposal
from flowbus.input.run_input import check_against_schema, schema_accepts, schema_digest
from flowbus.states import StateType

logger = logging.getLogger("flowbus.flow_runs")

#: What a resumer that came too late gets (Prefect's message).
TOO_LATE = "Flow run can no longer be resumed."
#: Longest input (JSON characters) a resume's event carries to the paused process; a longer
#: one it reads (the control stream keeps some 10,000 entries).
CARRIED_INPUT_CHARS = 1024
#: What a resume names when it checked its input against no schema: no pause has it, so
#: the script answers with the pause's.
_UNCHECKED = "-"


async def aresume_flow_run(
    flow_run_id: UUID | str, run_input: dict[str, Any] | None = None, key: str | None = None
) -> None:
    """Resume a paused or suspended run, with input if its pause waits for some.

    The input is validated against the JSON schema the pause stored, before anything is
    written: :class:`InvalidRunInput` (a ``RuntimeError`` worded as Prefect's, "Cannot resume
    this run: Reason: ...") lists every bad field and the run stays paused. Then one
    compare-and-set resumes it: of concurrent resumers exactly one wins and the others get
    :class:`NotPausedError`. A resume after the deadline raises :class:`FlowPauseTimeout`
    (the run is FAILED). A resume that comes before the pause is refused (NotPausedError),
    unless it names the pause's ``key``: then the input is kept for that pause, which returns
    it at once when the run reaches it (once per key; the pause validates it).
    """
    try:
        await _resume(flow_run_id, run_input, key)
    except InvalidRunInput as exc:
        raise InvalidRunInput(exc.errors, flow_run_id, resume=True) from None


async def _resume(
    flow_run_id: UUID | str, run_input: dict[str, Any] | None, key: str | None
) -> None:
    runtime = await get_runtime()
    store = runtime.store
    if key is None and run_input is None and await _resume_without_input(store, flow_run_id):
        return
    if key is None and run_input is not None:
        return await _resume_checked(runtime, flow_run_id, run_input)
    while True:
        view = await pause_view(store, flow_run_id)
        if key is None or (view.state_type == StateType.PAUSED and view.pause_key == key):
            return await _resume_paused(runtime, flow_run_id, view, run_input)
        if await deliver_early(runtime, flow_run_id, key, run_input):
            logger.info("Input for flow run %s stored for its pause %r", flow_run_id, key)
            return


async def _resume_checked(
    runtime: Runtime, flow_run_id: UUID | str, run_input: dict[str, Any]
) -> None:
    """A resume with input and no key: one compare-and-set naming the schema the input was
    checked against. That is the schema this process saw at the run's pause last, when the
    input is valid for it: one round trip. Else none: the refusal brings the pause's schema
    (nothing written), and the input is checked against it as after a read of the pause."""
    store = runtime.store
    seen = store.schemas.seen(flow_run_id)
    checked = _UNCHECKED
    if seen is not None and schema_accepts(seen, run_input):
        checked = schema_digest(seen)
    data = encode(run_input, limit=runtime.settings.max_payload_bytes, what="run input")
    carried = exact_json(run_input, limit=CARRIED_INPUT_CHARS)
    reply = await _on_run(
        store,
        flow_run_id,
        lambda keys: store.scripts.resume(keys, data=data, checked=checked, carried=carried),
    )
    if reply.status is Status.SCHEMA:
        if reply.input_prefix:
            store.schemas.saw(flow_run_id, reply.schema)
        view = PauseView(
            reply.state_type,
            reply.state_name,
            reply.pause_key,
            reply.input_prefix,
            reply.schema,
            judged=reply.judged,
        )
        return await _resume_paused(runtime, flow_run_id, view, run_input)
    if reply.status is Status.NOT_FOUND:
        raise FlowRunNotFound(flow_run_id)
    _raise_for_refusal(flow_run_id, reply)
    if not reply.accepted:
        raise NotPausedError(flow_run_id, f"cannot resume: {reply.detail}")


async def _resume_paused(
    runtime: Runtime, flow_run_id: UUID | str, view: PauseView, run_input: dict[str, Any] | None
) -> None:
    """The compare-and-set of a resume, once the input is checked against the pause's schema."""
    store = runtime.store
    if view.expired:
        raise FlowPauseTimeout(TOO_LATE)
    if view.state_type != StateType.PAUSED:
        raise NotPausedError(flow_run_id, f"cannot resume a run that is {view.state_type}")
    data, carried = None, ""
    if view.input_prefix:
        await _check_input(store, flow_run_id, view, run_input)
        if run_input is not None:
            data = encode(run_input, limit=runtime.settings.max_payload_bytes, what="run input")
        carried = exact_json(run_input, limit=CARRIED_INPUT_CHARS)
    elif run_input:
        raise InvalidRunInput([("", "this pause does not wait for input")], flow_run_id)
    proposal = new_proposal() if view.judged else ""
    reply = await ask_owner(runtime, flow_run_id, view, run_input, proposal) if proposal else None
    if reply is None:  # not judged, or no owner answered: this resume decides
        keys = await store.run_keys(flow_run_id)
        call = store.scripts.resume(
            keys, key=view.pause_key, data=data, proposal=proposal, carried=carried
        )
        reply = await call
    _raise_for_refusal(flow_run_id, reply)
    if not reply.accepted:
        raise NotPausedError(flow_run_id, f"cannot resume: {reply.detail}")


async def _check_input(
    store: RunStore, flow_run_id: UUID | str, view: PauseView, run_input: dict[str, Any] | None
) -> None:
    """Check resume input against its pause's schema. A schema stored again by hand
    (``create_flow_run_input``) is read where that puts it; one that is gone or is no JSON
    refuses the resume as Prefect's server does (:class:`ResumeRefused`)."""
    schema = view.schema
    if not schema:
        stored = await run_inputs.read(store, flow_run_id, f"{view.input_prefix}-schema")
        schema = stored.value if stored is not None else ""
    if not schema:
        raise ResumeRefused(flow_run_id, "Run input schema not found.")
    try:
        check_against_schema(schema, run_input if run_input is not None else {})
    except SerializationError:
        raise ResumeRefused(flow_run_id, "Run input schema is not valid JSON.") from None


async def _resume_without_input(store: RunStore, flow_run_id: UUID | str) -> bool:
    """The one-round-trip resume: no input, so no schema to read first.

    False when the script refused (not paused, or the pause needs input): the caller then
    reads the run and explains exactly why.
    """
    reply = await _on_run(store, flow_run_id, store.scripts.resume)
    if reply.status is Status.NOT_FOUND:
        raise FlowRunNotFound(flow_run_id)
    _raise_for_refusal(flow_run_id, reply)
    return reply.accepted


async def _on_run(
    store: RunStore, flow_run_id: UUID | str, call: Callable[[RunKeys], Call[ResumeReply]]
) -> ResumeReply:
    """``call`` on the run's keys. A run this process does not know is looked for in the
    one queue its id's hint names before it is looked up: the script call tests the guess
    (a wrong one finds no run: NOT_FOUND, nothing written), which saves the lookup's round
    trip."""
    guess = await store.guess_keys(flow_run_id)
    if guess is not None:
        reply = await call(guess)
        if reply.status is not Status.NOT_FOUND:
            store.found(guess)
            return reply
    return await call(await store.run_keys(flow_run_id))


def _raise_for_refusal(flow_run_id: UUID | str, reply: Reply) -> None:
    if reply.status is Status.EXPIRED:
        raise FlowPauseTimeout(TOO_LATE)
    if reply.status is Status.SUSPENDING:
        raise StillSuspending(flow_run_id, reply.detail)
    if reply.status is Status.ORPHANED:
        raise HolderGone(flow_run_id, reply.detail)
