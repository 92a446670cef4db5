-- Turn an in-process pause into a suspension because the process holding it is leaving (worker
-- shutdown) or gone (its worker died): PAUSED "Paused" → PAUSED "Suspended", reschedule on,
-- keeping the pause key, deadline and input prefix. A later resume then re-enqueues the run
-- (resume.lua) and any worker re-runs it; the fired key makes the pause return the input.
-- ARGV[1] expected pause key ("" = any)  [2] message
-- ARGV[3] the attempt of the execution handing its pause off (fenced; "" for a reclaimer)
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...} | {STALE, reason, ...}
--      | {NOT_FOUND, ...}
local key, message, attempt = ARGV[1], ARGV[2], ARGV[3]

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local stale = fenced(cur, attempt)
if stale then return reply(STALE, stale, cur) end
if cur.type ~= 'PAUSED' or cur.reschedule or cur.name == 'Suspending' then
  return reply(REFUSED, 'the run is not paused in-process', cur)
end
if key ~= '' and cur.pause_key ~= key then
  return reply(REFUSED, 'the run is paused under another key', cur)
end
local prefix = redis.call('HGET', RUN, 'input_prefix') or ''
local opts = pause_until({message = message, pause_key = cur.pause_key, reschedule = true,
  input_prefix = prefix}, kept_deadline(cur))
local id, reason = transition(cur, 'PAUSED', 'Suspended', opts)
if not id then return reply(REFUSED, reason, cur) end
return accepted(id, cur)
