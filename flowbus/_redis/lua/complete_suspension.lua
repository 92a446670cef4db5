-- The process of a Suspending run has checkpointed and let go: Suspending → Suspended,
-- keeping the pause key and deadline the request set.
-- ARGV[1] the suspending execution's attempt (fenced; "" unchecked)
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...} | {STALE, reason, ...}
--      | {NOT_FOUND, ...}
local attempt = ARGV[1]

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local stale = fenced(cur, attempt)
if stale then return reply(STALE, stale, cur) end
if cur.type ~= 'PAUSED' or cur.name ~= 'Suspending' then
  return reply(REFUSED, 'the run is not suspending', cur)
end
local opts = pause_until({pause_key = cur.pause_key, reschedule = true}, kept_deadline(cur))
local id, reason = transition(cur, 'PAUSED', 'Suspended', opts)
if not id then return reply(REFUSED, reason, cur) end
return accepted(id, cur)
