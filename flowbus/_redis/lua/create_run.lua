-- Create a run in SCHEDULED (or PENDING) and publish its first event; optionally enqueue it.
-- ARGV[1] run id  [2] flow name  [3] run name  [4] queue  [5] deployment id ("" none)
-- ARGV[6] parameters (msgpack)  [7] initial kind  [8] enqueue "1"/"0"  [9] parent run id
-- ARGV[10] scheduled start (ms, "" = now: a later start goes to the deadline set instead)
-- ARGV[11] "1": start it at once (PENDING, RUNNING), for a run executed by its creator
-- ARGV[12] the creator's name (the started run's holder)  [13] its first lease (ms, "" none)
-- Reply: {ACCEPTED, event id, ..., created ms} | {REFUSED, reason, ...}
local run_id, flow_name, run_name, queue = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local deployment_id, parameters, initial = ARGV[5], ARGV[6], ARGV[7]
local enqueue_it, parent_id, scheduled = ARGV[8] == '1', ARGV[9], tonumber(ARGV[10])
local start_now, holder, first_lease = ARGV[11] == '1', ARGV[12], ARGV[13]

if call('EXISTS', RUN) == 1 then
  local cur = current()
  if replayed(cur) then
    return reply(ACCEPTED, cur.op_detail, cur, tonumber(call('HGET', RUN, 'created_ms')))
  end
  return reply(REFUSED, 'a run with this id exists', cur)
end
-- refuse before writing: a refused creation must leave no half-made run behind
if not ALLOWED.NONE[initial] then return reply(REFUSED, 'a run starts SCHEDULED or PENDING') end
-- the run as it is before its first state (what current() would read), written with that state
local cur = {id = run_id, flow = flow_name, type = 'NONE', name = '', run_count = 0,
  count_text = '0', pause_key = '', pause_timeout_ms = 0, reschedule = false,
  deployment = deployment_id, holder = '', held = false, message = ''}
-- fields without a value are left out (readers take an absent field as empty): each is added
-- in front of the others with one constructor (a table grown a field at a time is rehashed)
local fields = {'id', run_id, 'flow_name', flow_name, 'name', run_name, 'queue', queue,
  'parameters', parameters}
if deployment_id ~= '' then fields = {'deployment_id', deployment_id, unpack(fields)} end
if parent_id ~= '' then fields = {'parent_id', parent_id, unpack(fields)} end
-- created_ms: the time of the first state (see transition())
local opts = {fields = fields, last = not start_now, created = true}
if scheduled then
  opts.fields = {'scheduled_ms', ARGV[10], unpack(fields)}
  if scheduled > now_ms() then opts.deadline_ms = scheduled end
end
local id, reason = transition(cur, initial, initial == 'PENDING' and 'Pending' or 'Scheduled', opts)
if not id then return reply(REFUSED, reason, cur) end
local created = cur.ts
call('ZADD', RUNS, created, run_id)
if enqueue_it and not opts.deadline_ms then enqueue(cur) end
if start_now then
  id, reason = start(cur, holder, first_lease, true, true)
  if not id then return reply(REFUSED, reason, cur) end
end
return replied(id, cur, created)
