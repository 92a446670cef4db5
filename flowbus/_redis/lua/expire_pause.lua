-- Fail a run whose pause deadline passed, only if it is still paused under that key: the
-- same compare-and-set as resume, so a timer and a resume never both win.
-- ARGV[4] pause key ("" = whatever key the run is paused under, for the deadline sweeper)
-- Reply: {1, event id, ...} the run is FAILED | {0, reason, ..., ms left or ""} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
if replayed(cur) then return reply(1, cur.op_detail, cur) end
if cur.type ~= 'PAUSED' or (ARGV[4] ~= '' and cur.pause_key ~= ARGV[4]) then
  return reply(0, 'the run is no longer paused under this key', cur, '')
end
local left = cur.pause_timeout_ms - now_ms()
if cur.pause_timeout_ms == 0 or left > 0 then
  return reply(0, 'the pause has not expired', cur, cur.pause_timeout_ms == 0 and '' or left)
end
local id = transition(cur, 'FAILED', 'Failed', {message = 'The flow was paused and never resumed.'})
return accepted(id, cur)
