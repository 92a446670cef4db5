-- Resume a paused run: one compare-and-set, so of many resumers exactly one wins.
-- Checks: PAUSED, the pause key the caller validated against, not suspending, not expired
-- (by the server's clock). Then stores the input, marks the key fired and moves the run on:
-- RUNNING for an in-process pause, SCHEDULED "Resuming" plus enqueue for a suspended run.
-- ARGV[4] expected pause key ("" = any: a resume without input that read nothing first;
--         it is refused when the pause needs input, so the caller can explain why)
-- ARGV[5] input (msgpack)  [6] "1" if an input is given
-- An in-process pause whose process is gone (its lease ended) has nobody to wake: with a
-- deployment it is resumed as a suspension (a worker re-runs it); without, it ends CRASHED
-- and the resume is refused, saying so.
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...}
--      | {EXPIRED, reason, ...} (the run is FAILED: now, or earlier by its timer)
--      | {SUSPENDING, reason, ...} | {ORPHANED, reason, ...} (CRASHED) | {NOT_FOUND, ...}
local key, input, input_given = ARGV[4], ARGV[5], ARGV[6] == '1'

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if failed_by_expiry(cur) then
  return reply(EXPIRED, 'the pause expired', cur)  -- a late resumer learns why, whoever expired it
end
if cur.type ~= 'PAUSED' then return reply(REFUSED, 'the run is not paused', cur) end
if key ~= '' and cur.pause_key ~= key then
  return reply(REFUSED, 'the run is paused under another key', cur)
end
if cur.name == 'Suspending' then
  return reply(SUSPENDING, 'the run is still suspending; resume it once it is Suspended', cur)
end
if expire_pause(cur) then return reply(EXPIRED, 'the pause expired', cur) end
local orphaned = not cur.reschedule and holder_gone(cur)
if orphaned and cur.deployment == '' then
  end_orphan(cur)
  return reply(ORPHANED, 'the process holding the run (' .. cur.holder .. ') is gone; the run '
    .. 'is CRASHED', cur)
end
local prefix = redis.call('HGET', RUN, 'input_prefix') or ''
if key == '' and prefix ~= '' and redis.call('HGET', RUN, 'input_optional') ~= '1' then
  return reply(REFUSED, 'this pause needs input', cur)
end
if input_given and prefix ~= '' then
  redis.call('HSET', INPUT, prefix .. '-response', input)
end
redis.call('SADD', FIRED, cur.pause_key)
local id
if cur.reschedule or orphaned then
  id = transition(cur, 'SCHEDULED', 'Resuming', {})
  enqueue(cur)
else
  id = transition(cur, 'RUNNING', 'Running', {message = 'Resumed'})
end
return accepted(id, cur)
