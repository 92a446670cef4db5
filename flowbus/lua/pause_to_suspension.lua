-- Turn an in-process pause into a suspension because the process holding it is leaving (worker
-- shutdown) or gone (its worker died): PAUSED "Paused" → PAUSED "Suspended", reschedule on,
-- keeping the pause key, deadline and input prefix. A later resume then re-enqueues the run
-- (resume.lua) and any worker re-runs it; the fired key makes the pause return the input.
-- check() allows PAUSED → PAUSED only for Suspending → Suspended, so this one move writes
-- the fields and the event that transition() would write, and nothing else changes.
-- ARGV[4] expected pause key ("" = any)  [5] message
-- Reply: {1, event id, ...} | {0, reason, ...} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
if cur.type ~= 'PAUSED' or cur.reschedule or cur.name == 'Suspending' then
  return reply(0, 'the run is not paused in-process', cur)
end
if ARGV[4] ~= '' and cur.pause_key ~= ARGV[4] then
  return reply(0, 'the run is paused under another key', cur)
end
local ts = now_ms()
redis.call('HSET', RUN, 'state_name', 'Suspended', 'state_message', ARGV[5], 'state_ts', ts,
  'pause_reschedule', '1')
local event = {'run_id', cur.id, 'flow', cur.flow, 'type', 'PAUSED', 'name', 'Suspended',
  'message', ARGV[5], 'from_type', cur.type, 'from_name', cur.name, 'ts', ts,
  'run_count', cur.run_count, 'pause_key', cur.pause_key}
local id = redis.call('XADD', EVENTS, 'MAXLEN', '~', RUN_MAXLEN, '*', unpack(event))
redis.call('XADD', QEVENTS, 'MAXLEN', '~', QUEUE_MAXLEN, '*', unpack(event))
cur.name, cur.reschedule = 'Suspended', true
return reply(1, id, cur)
