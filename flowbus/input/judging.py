"""Custom validators judged before a resume is accepted, by the code that owns the input type.

A JSON schema cannot express a ``field_validator`` or ``model_validator``, and the resumer (the
CLI, a form, a program in another language) may not be able to import the model. So a pause
whose input has such validators says so (``input_judged``), and a resumer asks its owner: it
adds a ``judge`` entry (the input, a proposal id) to the queue's control stream; the process
holding the pause (or, for a suspended run, a worker that imported the flow's module) validates
it with the real model and answers with a ``verdict`` entry (the errors, ``[]`` when valid).
Invalid input is refused with :class:`InvalidRunInput` and nothing is written; valid input
goes on to the one compare-and-set as before. When no owner answers within
:data:`OWNER_WAIT`, the JSON schema alone has judged (the pause still validates on return).
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

from flowbus._redis.events import RunEvent
from flowbus._redis.keys import RunKeys
from flowbus._redis.runtime import Runtime
from flowbus._redis.store import PauseView
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


async def ask_owner(
    runtime: Runtime, run_id: UUID | str, view: PauseView, run_input: dict[str, Any] | None
) -> None:
    """Have the pause's owner judge ``run_input``: :class:`InvalidRunInput` if it refuses;
    returns when it accepts, or when no owner answered in time."""
    store = runtime.store
    keys = await store.run_keys(run_id)
    proposal = uuid.uuid4().hex
    async with runtime.waiters.subscribe(keys.queue, str(run_id), control=True) as sub:
        request = _entry(str(run_id), view, "judge", proposal, json.dumps(run_input or {}))
        await _publish(runtime, keys, request)
        with anyio.move_on_after(OWNER_WAIT):
            while True:
                event = await sub.next()
                if event is None or event.from_type == StateType.PAUSED:
                    return  # the run left its pause: the compare-and-set will say so
                if event.action == "verdict" and event.proposal == proposal:
                    errors = _errors(event.payload)
                    if errors:
                        raise InvalidRunInput(errors, run_id)
                    return
    logger.info("No owner judged the input of run %s in %s s; its schema did", run_id, OWNER_WAIT)


async def answer(runtime: Runtime, event: RunEvent, expected: Expected | None, key: str) -> None:
    """As the owner, judge a ``judge`` request with the real models and publish the verdict."""
    errors = judge_payload(expected, event.payload, key)
    view = PauseView(str(event.type), event.name, key, "", "")
    keys = await runtime.store.run_keys(event.run_id)
    verdict = _entry(event.run_id, view, "verdict", event.proposal, json.dumps(errors))
    await _publish(runtime, keys, verdict)


def judge_payload(expected: Expected | None, payload: str, key: str) -> Errors:
    """The errors of a request's input (JSON text) under ``expected``; ``[]`` when valid."""
    try:
        data = json.loads(payload)
        if expected is not None:
            expected.load(data, key)
    except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError are both
        if isinstance(exc, ValidationError):
            return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return [("", f"input is not JSON: {exc}")]
    except InvalidRunInput as exc:
        return exc.errors
    except FlowbusError as exc:
        return [("", str(exc))]
    return []


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


def _errors(payload: str) -> Errors:
    """A verdict's errors; a verdict that cannot be read refuses nothing."""
    try:
        raw = json.loads(payload)
        return [(str(field), str(message)) for field, message in raw]
    except (ValueError, TypeError):
        return []


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
