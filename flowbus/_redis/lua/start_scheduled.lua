-- The deadline sweeper's second step, for a run that is not paused: hand a SCHEDULED run whose
-- start time has come to the queue's workers; drop the deadline entry of a run in any other
-- state (it is stale). Checked and done in one step, so a run that moves meanwhile keeps its
-- new deadline. Only the call that takes a run's deadline entry enqueues it, so two sweepers
-- that both read the entry enqueue the run once.
-- No arguments of its own.
-- Reply: {ACCEPTED, "enqueued" | "dropped", ...} | {REFUSED, reason, ..., ms left or ""}
--      | {NOT_FOUND, ...}
local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if cur.type == 'PAUSED' then return reply(REFUSED, 'the run is paused', cur, '') end
if cur.type ~= 'SCHEDULED' then
  redis.call('ZREM', DEADLINES, cur.id)
  return accepted('dropped', cur)
end
local left = (tonumber(redis.call('HGET', RUN, 'scheduled_ms') or '') or 0) - now_ms()
if left > 0 then return reply(REFUSED, 'the start time has not come', cur, left) end
-- the deadline entry is what this hands over: a run without one was enqueued already (by
-- another sweeper, or by the resume that left its pause for SCHEDULED "Resuming")
if redis.call('ZREM', DEADLINES, cur.id) == 0 then
  return reply(REFUSED, 'the run has no deadline to start it by', cur, '')
end
enqueue(cur)
return accepted('enqueued', cur)
