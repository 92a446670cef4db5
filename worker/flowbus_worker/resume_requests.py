"""Resume by event: any program XADDs a request; a worker applies it and records the outcome.

Request fields: ``run_id``, ``input`` (JSON object text, optional), ``key`` (optional: the
pause key, which lets the input arrive before the pause), ``request_id`` (optional; the entry
id stands in). Outcome fields: ``request_id``, ``run_id``, ``status``
(``accepted``/``rejected``), ``reason``, ``errors`` (JSON list of ``[field, message]``).
A request id is applied once: the first worker to take it marks it (``SET NX`` with a TTL);
a later request with the same id is acknowledged without an outcome.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowbus._core.codec import loads_json, text
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError, InvalidRunInput, SerializationError
from flowbus.flow_runs import aresume_flow_run
from flowbus_worker import groups

logger = logging.getLogger("flowbus.worker")

#: Seconds a request id is remembered.
SEEN_TTL = 7 * 24 * 3600
#: Longest request id or run id echoed in an outcome (characters); longer ones are cut.
MAX_ID_CHARS = 200


class ResumeRequests:
    """Applies the resume requests of one queue."""

    def __init__(self, runtime: Runtime, queue: str) -> None:
        self.runtime = runtime
        self.queue = queue
        self.keys = runtime.store.keys.queue(queue)

    async def handle(self, entry_id: str, fields: dict[str, str]) -> None:
        """Apply one request (unless its id was taken before), record its outcome, ack it.

        Nothing in a request may end the worker: one whose handling fails is rejected with
        the reason; only a Redis that is unreachable leaves it pending.
        """
        request_id = fields.get("request_id", "")[:MAX_ID_CHARS] or entry_id
        try:
            if len(fields.get("request_id", "")) > MAX_ID_CHARS:
                raise ValueError(f"request_id is longer than {MAX_ID_CHARS} characters")
            await self._handle(entry_id, request_id, fields)
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except Exception as exc:
            logger.exception("Resume request %s failed", request_id)
            await self._record(request_id, fields, ("rejected", f"the worker failed: {exc!r}", []))
            await groups.ack(self.runtime.redis, self.keys.resume_requests(), entry_id)

    async def _handle(self, entry_id: str, request_id: str, fields: dict[str, str]) -> None:
        redis = self.runtime.redis
        seen = self.keys.resume_request_seen(request_id)
        first = await redis.set(seen, entry_id, nx=True, ex=SEEN_TTL)
        # the same entry delivered again (its worker died) is still this request's turn
        if first or text(await redis.get(seen)) == entry_id:
            outcome = await self._apply(fields)
            logger.info(
                "Resume request %s for run %s: %s %s",
                request_id,
                fields.get("run_id", "")[:MAX_ID_CHARS],
                *outcome[:2],
            )
            await self._record(request_id, fields, outcome)
        else:
            logger.info(
                "Resume request %s was applied before; ignoring entry %s", request_id, entry_id
            )
        await groups.ack(redis, self.keys.resume_requests(), entry_id)

    async def _record(
        self, request_id: str, fields: dict[str, str], outcome: tuple[str, str, list[list[str]]]
    ) -> None:
        status, reason, errors = outcome
        await self.runtime.redis.xadd(
            self.keys.resume_outcomes(),
            {
                "request_id": request_id,
                "run_id": fields.get("run_id", "")[:MAX_ID_CHARS],
                "status": status,
                "reason": reason,
                "errors": json.dumps(errors),
            },
            maxlen=self.runtime.settings.queue_events_maxlen,
            approximate=True,
        )

    async def _apply(self, fields: dict[str, str]) -> tuple[str, str, list[list[str]]]:
        """``(status, reason, errors)`` of one request."""
        raw_id = fields.get("run_id", "")
        try:
            run_id = UUID(raw_id)
        except ValueError:
            return "rejected", f"run_id {raw_id[:80]!r} is not a UUID", []
        data: Any = None
        raw_input = fields.get("input", "")
        if raw_input:
            limit = self.runtime.settings.max_payload_bytes
            try:
                data = loads_json(raw_input, limit=limit, what="input")
            except SerializationError as exc:
                return "rejected", str(exc), []
            if not isinstance(data, dict):
                return "rejected", "input must be a JSON object", []
        try:
            if await self.runtime.store.queue_of(run_id) != self.queue:
                return "rejected", f"run {run_id} is not in queue {self.queue!r}", []
            await aresume_flow_run(run_id, data, key=fields.get("key") or None)
        except InvalidRunInput as exc:
            return "rejected", "invalid input", [[field, message] for field, message in exc.errors]
        except FlowbusError as exc:
            return "rejected", str(exc), []
        return "accepted", "", []
