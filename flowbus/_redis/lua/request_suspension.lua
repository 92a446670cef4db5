-- Ask a RUNNING run to suspend: it enters PAUSED "Suspending" at once (so no resume can start
-- a second execution); its process sees the event, stops at the next task boundary and
-- completes the move with complete_suspension.lua.
-- ARGV[4] pause key  [5] timeout (ms from now, "" none)
-- Reply: {1, event id, ...} | {0, reason, ...} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
if replayed(cur) then return reply(1, cur.op_detail, cur) end
if cur.type ~= 'RUNNING' then return reply(0, 'only a RUNNING run can be suspended', cur) end
if cur.deployment == '' then
  return reply(0, 'cannot suspend a run without a deployment (no worker could resume it)', cur)
end
local opts = {pause_key = ARGV[4], reschedule = true, message = 'Suspension requested'}
if ARGV[5] ~= '' then
  opts.pause_timeout_ms = now_ms() + tonumber(ARGV[5])
  opts.deadline_ms = opts.pause_timeout_ms
end
local id, reason = transition(cur, 'PAUSED', 'Suspending', opts)
if not id then return reply(0, reason, cur) end
return accepted(id, cur)
