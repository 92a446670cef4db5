"""Input delivered for a pause before the run reaches it: ``resume_flow_run(..., key=K)``.

The resumer stores the input under the key (once per key: a second early delivery is
refused); the pause under that key judges it with its real input type when it comes, then
either takes it (the key fires and the pause returns at once) or refuses it (the input is
dropped, the reason is the PAUSED event's message, and the run pauses as usual). Input a run
never reached is named by its final event (``early_unclaimed``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError

from flowbus._core.codec import decode, encode
from flowbus._redis.replies import Status
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError, InvalidRunInput, NotPausedError
from flowbus.input.expected import Expected


async def deliver_early(
    runtime: Runtime, run_id: UUID | str, key: str, run_input: dict[str, Any] | None
) -> bool:
    """Store ``run_input`` for the pause under ``key``; False if the run is paused there now
    (resume it normally), :class:`NotPausedError` if the key fired, already has early input,
    or the run is final."""
    store = runtime.store
    data = None
    if run_input is not None:
        limit = runtime.settings.max_payload_bytes
        data = encode(run_input, limit=limit, what="run input")
    keys = await store.run_keys(run_id)
    reply = await store.scripts.resume(keys, key=key, data=data, early=True)
    if reply.status is Status.IS_PAUSED:
        return False
    if not reply.accepted:
        raise NotPausedError(run_id, f"cannot deliver input for key {key!r}: {reply.detail}")
    return True


def judge(expected: Expected | None, raw: bytes | None, key: str) -> tuple[Any, str]:
    """``(value, "")`` for early input the pause accepts, ``(None, why)`` for input it refuses."""
    try:
        data = None if raw is None else decode(raw)
        if expected is None:
            if data:
                return None, "early input refused: this pause does not wait for input"
            return None, ""
        return expected.load(data, key), ""
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        return None, f"early input refused: {problems}"
    except InvalidRunInput as exc:
        problems = "; ".join(f"{field or '<input>'}: {msg}" for field, msg in exc.errors)
        return None, f"early input refused: {problems}"
    except FlowbusError as exc:
        return None, f"early input refused: {exc}"


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<input>"
