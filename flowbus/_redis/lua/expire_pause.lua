-- Act on a run whose pause deadline passed, only if it is still paused under that key: the
-- same compare-and-set as resume, so a timer and a resume never both win. The run is FAILED,
-- or resumed without input when its pause said on_timeout="resume" (the prelude's
-- expire_pause()).
-- ARGV[1] pause key ("" = whatever key the run is paused under, for the deadline sweeper)
-- Reply: {ACCEPTED, event id, ...} the run is FAILED, RUNNING or SCHEDULED "Resuming"
--      | {REFUSED, reason, ..., ms left or ""} | {NOT_FOUND, ...}
local key = ARGV[1]

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if cur.type ~= 'PAUSED' or (key ~= '' and cur.pause_key ~= key) then
  return reply(REFUSED, 'the run is no longer paused under this key', cur, '')
end
local id, left = expire_pause(cur)
if not id then return reply(REFUSED, 'the pause has not expired', cur, left) end
return accepted(id, cur)
