"""Custom validators judged before a resume is accepted, by the code that owns the input type.

A JSON schema cannot express a ``field_validator`` or ``model_validator``, and the resumer (the
CLI, a form, a program in another language) may not be able to import the model. So a pause
whose input has such validators says so (``input_judged``), and a resumer asks its owner: it
adds a ``judge`` entry (the input, a proposal id) to the queue's control stream; the process
holding the pause (or, for a suspended run, a worker that imported the flow's module)
validates it with the real model. Valid input it applies itself, by the one compare-and-set
any resumer makes, whose event names the proposal (that is the resumer's answer); otherwise
it answers with a ``verdict`` entry: the errors, or why its resume was refused. Invalid input
is refused with :class:`InvalidRunInput` and nothing is written. When no owner answers within
:data:`OWNER_WAIT`, the JSON schema alone has judged and the resumer resumes; the proposal id
makes the owner's and the resumer's resume one.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any
from uuid import UUID

import anyio
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    PlainValidator,
    ValidationError,
    WrapValidator,
)

from flowbus._core.codec import encode
from flowbus._redis.events import RunEvent
from flowbus._redis.keys import RunKeys
from flowbus._redis.pauses import PauseView
from flowbus._redis.replies import Reply, Status
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError, InvalidRunInput
from flowbus.input.expected import Expected
from flowbus.input.run_input import run_input_subclass_from_type
from flowbus.states import StateType

logger = logging.getLogger("flowbus.input")

#: Seconds a resumer waits for the owner's verdict before the JSON schema judges alone.
OWNER_WAIT = 1.0
#: Approximate cap of the control stream (as in ``lua/_prelude.lua``).
CONTROL_MAXLEN = 10000
_VALIDATORS = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)

Errors = list[tuple[str, str]]


def has_custom_validators(expected: Expected | None) -> bool:
    """Whether some model of ``expected`` validates more than its JSON schema says."""
    return expected is not None and any(_custom(model) for model in expected.models)


def _custom(model: type[BaseModel]) -> bool:
    found = model.__pydantic_decorators__
    if found.field_validators or found.model_validators or found.validators:
        return True
    if found.root_validators:
        return True
    metadata = (m for field in model.model_fields.values() for m in field.metadata)
    return any(isinstance(m, _VALIDATORS) for m in metadata)


def new_proposal() -> str:
    """The id of one resume's input, shared by its judge request, verdict and resume."""
    return uuid.uuid4().hex


async def ask_owner(
    runtime: Runtime,
    run_id: UUID | str,
    view: PauseView,
    run_input: dict[str, Any] | None,
    proposal: str,
) -> Reply | None:
    """Have the pause's owner judge ``run_input`` and, if valid, resume the run with it.

    :class:`InvalidRunInput` if it refuses the input; else the reply of the resume the owner
    made, or ``None`` when no owner answered in time (or the run left its pause meanwhile):
    then the caller resumes with ``proposal`` itself, which is applied once either way.
    """
    if OWNER_WAIT <= 0:
        return None  # no wait at all: the schema judges alone, asking nobody
    keys = await runtime.store.run_keys(run_id)
    async with runtime.waiters.subscribe(keys.queue, str(run_id), control=True) as sub:
        request = _entry(str(run_id), view, "judge", proposal, json.dumps(run_input or {}))
        await _publish(runtime, keys, request)
        with anyio.move_on_after(OWNER_WAIT):
            while True:
                event = await sub.next()
                if event is not None and event.proposal == proposal and event.action != "judge":
                    if event.from_type == StateType.PAUSED:  # the owner resumed it with ours
                        return Reply(Status.ACCEPTED, event.id, str(event.type), event.name, 0)
                    return _verdict(run_id, event.payload)
                if event is None or event.from_type == StateType.PAUSED:
                    return None  # the run left its pause: the compare-and-set will say why
    logger.info("No owner judged the input of run %s in %s s; its schema did", run_id, OWNER_WAIT)
    return None


async def judge_and_resume(
    runtime: Runtime, event: RunEvent, expected: Expected | None, key: str
) -> tuple[bool, Any]:
    """As the owner, judge a ``judge`` request with the real models; resume the run with
    valid input at once (one compare-and-set, as any resumer). Publishes the verdict;
    returns whether this resume won, and the loaded input."""
    keys = await runtime.store.run_keys(event.run_id)
    view = PauseView(str(event.type), event.name, key, "", "")
    errors: Errors = []
    try:
        data = json.loads(event.payload)
        value = expected.load(data, key) if expected is not None else None
        limit = runtime.settings.max_payload_bytes
        encoded = encode(data, limit=limit, what="run input")
    except (ValueError, FlowbusError) as exc:  # also JSON's and pydantic's errors
        errors = _errors_of(exc)
    if errors:
        await _publish(runtime, keys, _entry(event.run_id, view, "verdict", event.proposal,
                                             json.dumps({"errors": errors})))  # fmt: skip
        return False, None
    call = runtime.store.scripts.resume(keys, key=key, data=encoded, proposal=event.proposal)
    reply = await call
    if not reply.accepted:  # an accepted one is told by its own event (it names the proposal)
        outcome = {"status": int(reply.status), "detail": reply.detail}
        verdict = _entry(event.run_id, view, "verdict", event.proposal, json.dumps(outcome))
        await _publish(runtime, keys, verdict)
    return reply.accepted, value


def _errors_of(exc: Exception) -> Errors:
    if isinstance(exc, ValidationError):
        return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    if isinstance(exc, InvalidRunInput):
        return exc.errors
    if isinstance(exc, FlowbusError):
        return [("", str(exc))]
    return [("", f"input is not JSON: {exc}")]


def _verdict(run_id: UUID | str, payload: str) -> Reply | None:
    """The owner's verdict: :class:`InvalidRunInput`, or its resume's reply (``None`` for a
    verdict that cannot be read: the caller's own resume decides)."""
    try:
        raw = json.loads(payload)
        errors = [(str(field), str(message)) for field, message in raw.get("errors", [])]
        if errors:
            raise InvalidRunInput(errors, run_id)
        return Reply(Status(int(raw["status"])), str(raw.get("detail", "")), "", "", 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def expected_from_identity(identity: str) -> Expected | None:
    """The input type named by a pause's stored identity, if every class of it lives in a
    module this process has imported (nothing is imported on a stored name's word)."""
    classes = []
    for name in identity.split(" | "):
        module_name, _, qualname = name.rpartition(".")
        target: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return None
        classes.append(target)
    models = tuple(run_input_subclass_from_type(c) for c in classes)
    return Expected(models, identity)


def _entry(
    run_id: str, view: PauseView, action: str, proposal: str, payload: str
) -> dict[str, str]:
    return {
        "run_id": run_id,
        "type": view.state_type,
        "name": view.state_name,
        "pause_key": view.pause_key,
        "action": action,
        "proposal": proposal,
        "payload": payload,
    }


async def _publish(runtime: Runtime, keys: RunKeys, fields: dict[str, str]) -> None:
    entry: Any = fields
    await runtime.redis.xadd(keys.control, entry, maxlen=CONTROL_MAXLEN, approximate=True)
