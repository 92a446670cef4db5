-- Start executing a run in one step: SCHEDULED → PENDING → RUNNING, or PENDING → RUNNING.
-- Refused for a run in any other state, so two workers can never both start one run.
-- ARGV[1] the name of the process starting it (its holder)  [2] its first lease (ms, "" none)
-- Reply: {ACCEPTED, RUNNING event id, ...} | {REFUSED, reason, ...} | {NOT_FOUND, ...}
local holder, first_lease = ARGV[1], ARGV[2]

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local id, reason = start(cur, holder, first_lease, false, true)
if not id then return reply(REFUSED, reason, cur) end
return replied(id, cur)
