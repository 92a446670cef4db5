-- A sweeper ends a run whose holder is gone (its lease ended): a run no queue delivery tracks
-- (a plain script's) would otherwise stay RUNNING, PAUSED or CANCELLING forever. An
-- in-process pause of a deployed run becomes a suspension (a resume re-enqueues it for a
-- worker); any other run ends CRASHED (CANCELLED if it was cancelling). Final runs and runs
-- not held any more leave the set of held runs.
-- No arguments of its own.
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...} | {NOT_FOUND, ...}
local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if not cur.held or FINAL[cur.type] then
  redis.call('SREM', HELD, cur.id)
  return reply(REFUSED, 'the run is not held', cur)
end
if not holder_gone(cur) then return reply(REFUSED, 'its holder is alive', cur) end
redis.call('SREM', HELD, cur.id)
redis.call('HSET', RUN, 'held', '0')
cur.held = false
local id, reason
if cur.type == 'PAUSED' and not cur.reschedule and deployment_of(cur) ~= '' then
  local deadline = cur.pause_timeout_ms > 0 and cur.pause_timeout_ms or nil
  id, reason = transition(cur, 'PAUSED', 'Suspended', {pause_key = cur.pause_key,
    message = 'Its process is gone; the pause became a suspension', reschedule = true,
    input_prefix = redis.call('HGET', RUN, 'input_prefix') or '', pause_timeout_ms = deadline,
    deadline_ms = deadline})
else
  id, reason = end_orphan(cur)
end
if not id then return reply(REFUSED, reason, cur) end
return accepted(id, cur)
