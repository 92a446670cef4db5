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

from flowbus._core.codec import text
from flowbus._redis.runtime import Runtime
from flowbus.exceptions import FlowbusError, InvalidRunInput
from flowbus.flow_runs import aresume_flow_run
from flowbus_worker import groups

logger = logging.getLogger("flowbus.worker")

#: Seconds a request id is remembered.
SEEN_TTL = 7 * 24 * 3600


class ResumeRequests:
    """Applies the resume requests of one queue."""

    def __init__(self, runtime: Runtime, queue: str) -> None:
        self.runtime = runtime
        self.queue = queue
        self.keys = runtime.store.keys.queue(queue)

    async def handle(self, entry_id: str, fields: dict[str, str]) -> None:
        """Apply one request (unless its id was taken before), record its outcome, ack it."""
        redis = self.runtime.redis
        request_id = fields.get("request_id") or entry_id
        seen = self.keys.resume_request_seen(request_id)
        first = await redis.set(seen, entry_id, nx=True, ex=SEEN_TTL)
        # the same entry delivered again (its worker died) is still this request's turn
        if first or text(await redis.get(seen)) == entry_id:
            status, reason, errors = await self._apply(fields)
            logger.info(
                "Resume request %s for run %s: %s %s",
                request_id,
                fields.get("run_id"),
                status,
                reason,
            )
            await redis.xadd(
                self.keys.resume_outcomes(),
                {
                    "request_id": request_id,
                    "run_id": fields.get("run_id", ""),
                    "status": status,
                    "reason": reason,
                    "errors": json.dumps(errors),
                },
                maxlen=self.runtime.settings.queue_events_maxlen,
                approximate=True,
            )
        else:
            logger.info(
                "Resume request %s was applied before; ignoring entry %s", request_id, entry_id
            )
        await groups.ack(redis, self.keys.resume_requests(), entry_id)

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
            try:
                data = json.loads(raw_input)
            except ValueError as exc:
                return "rejected", f"input is not valid JSON: {exc}", []
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
