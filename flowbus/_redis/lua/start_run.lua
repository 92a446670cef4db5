-- Start executing a run in one step: SCHEDULED → PENDING → RUNNING, or PENDING → RUNNING.
-- Refused for a run in any other state, so two workers can never both start one run.
-- No arguments of its own.
-- Reply: {1, RUNNING event id, ...} | {0, reason, ...} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
if replayed(cur) then return reply(1, cur.op_detail, cur) end
local id, reason = start(cur)
if not id then return reply(0, reason, cur) end
return accepted(id, cur)
