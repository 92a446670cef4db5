-- Start executing a run in one step: SCHEDULED → PENDING → RUNNING, or PENDING → RUNNING.
-- Refused for a run in any other state, so two workers can never both start one run.
-- No arguments of its own.
-- Reply: {ACCEPTED, RUNNING event id, ...} | {REFUSED, reason, ...} | {NOT_FOUND, ...}
local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local id, reason = start(cur)
if not id then return reply(REFUSED, reason, cur) end
return accepted(id, cur)
