-- Create a run in SCHEDULED (or PENDING) and publish its first event; optionally enqueue it.
-- ARGV[4] run id  [5] flow name  [6] run name  [7] queue  [8] deployment id ("" none)
-- ARGV[9] parameters (msgpack)  [10] initial kind  [11] enqueue "1"/"0"  [12] parent run id
-- ARGV[13] scheduled start (ms, "" = now: a later start goes to the deadline set instead)
-- ARGV[14] "1": start it at once (PENDING, RUNNING), for a run executed by its creator
-- Reply: {1, event id, ..., created ms} or {0, reason, ...}.
if redis.call('EXISTS', RUN) == 1 then
  local cur = current()
  if replayed(cur) then
    return reply(1, cur.op_detail, cur, tonumber(redis.call('HGET', RUN, 'created_ms')))
  end
  return reply(0, 'a run with this id exists', cur)
end
-- refuse before writing: a refused creation must leave no half-made run behind
if not ALLOWED.NONE[ARGV[10]] then return reply(0, 'a run starts SCHEDULED or PENDING') end
local ts = now_ms()
redis.call('ZADD', RUNS, ts, ARGV[4])
-- the run as it is before its first state (what current() would read), written with that state
local cur = {id = ARGV[4], flow = ARGV[5], type = 'NONE', name = '', run_count = 0,
  pause_key = '', pause_timeout_ms = 0, reschedule = false, deployment = ARGV[8]}
local initial = ARGV[10]
local scheduled = tonumber(ARGV[13])
local opts = {fields = {'id', ARGV[4], 'flow_name', ARGV[5], 'name', ARGV[6], 'queue', ARGV[7],
  'deployment_id', ARGV[8], 'parameters', ARGV[9], 'parent_id', ARGV[12], 'created_ms', ts}}
if scheduled then
  table.insert(opts.fields, 'scheduled_ms')
  table.insert(opts.fields, scheduled)
  if scheduled > ts then opts.deadline_ms = scheduled end
end
local id, reason = transition(cur, initial, initial == 'PENDING' and 'Pending' or 'Scheduled', opts)
if not id then return reply(0, reason, cur) end
if ARGV[11] == '1' and not opts.deadline_ms then enqueue(cur) end
if ARGV[14] == '1' then
  id, reason = start(cur)
  if not id then return reply(0, reason, cur) end
end
return accepted(id, cur, ts)
