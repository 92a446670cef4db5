-- Ask a RUNNING run to suspend: it enters PAUSED "Suspending" at once (so no resume can start
-- a second execution); its process sees the event, stops at the next task boundary and
-- completes the move with complete_suspension.lua.
-- ARGV[1] pause key  [2] timeout (ms from now, "" none)
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...} | {NOT_FOUND, ...}
local key, timeout_ms = ARGV[1], tonumber(ARGV[2])

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if cur.type ~= 'RUNNING' then return reply(REFUSED, 'only a RUNNING run can be suspended', cur) end
if deployment_of(cur) == '' then
  return reply(REFUSED, 'cannot suspend a run without a deployment (no worker could resume it)',
    cur)
end
local opts = pause_until({pause_key = key, reschedule = true, message = 'Suspension requested'},
  timeout_ms and now_ms() + timeout_ms)
local id, reason = transition(cur, 'PAUSED', 'Suspending', opts)
if not id then return reply(REFUSED, reason, cur) end
return accepted(id, cur)
