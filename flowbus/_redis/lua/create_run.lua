-- Create a run in SCHEDULED (or PENDING) and publish its first event; optionally enqueue it.
-- Its id and queue are in its key (RUN_ID, the tag), not written in its hash.
-- ARGV[1] flow name  [2] run name  [3] deployment id ("" none)  [4] parameters (msgpack)
-- ARGV[5] initial kind  [6] enqueue "1"/"0"  [7] parent run id
-- ARGV[8] scheduled start (ms, "" = now: a later start goes to the deadline set instead)
-- ARGV[9] "1": start it at once (PENDING, RUNNING), for a run executed by its creator
-- ARGV[10] the creator's name (the started run's holder)  [11] its first lease (ms, "" none)
-- Reply: {ACCEPTED, event id, ..., created ms} | {REFUSED, reason, ...}
local flow_name, run_name, deployment_id, parameters = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local initial, enqueue_it, parent_id = ARGV[5], ARGV[6] == '1', ARGV[7]
local scheduled = tonumber(ARGV[8])
local start_now, holder, first_lease = ARGV[9] == '1', ARGV[10], ARGV[11]

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
local cur = {id = RUN_ID, flow = flow_name, type = 'NONE', name = '', run_count = 0,
  count_text = '0', call_id = NO_CALL, op_detail = NO_CALL, pause_key = '', pause_timeout_ms = 0,
  reschedule = false, deployment = deployment_id, holder = '', held = false, message = ''}
-- fields without a value are left out (readers take an absent field as empty): each is added
-- in front of the others with one constructor (a table grown a field at a time is rehashed)
local fields = {'flow_name', flow_name, 'name', run_name, 'parameters', parameters}
if deployment_id ~= '' then fields = {'deployment_id', deployment_id, unpack(fields)} end
if parent_id ~= '' then fields = {'parent_id', parent_id, unpack(fields)} end
-- created_ms: the time of the first state (see transition())
local opts = {fields = fields, last = not start_now, created = true}
if scheduled then
  opts.fields = {'scheduled_ms', ARGV[8], unpack(fields)}
  if scheduled > now_ms() then opts.deadline_ms = scheduled end
end
local id, reason = transition(cur, initial, initial == 'PENDING' and 'Pending' or 'Scheduled', opts)
if not id then return reply(REFUSED, reason, cur) end
local created = cur.ts
call('ZADD', RUNS, created, RUN_ID)
if enqueue_it and not opts.deadline_ms then enqueue(cur) end
if start_now then
  id, reason = start(cur, holder, first_lease, true, true)
  if not id then return reply(REFUSED, reason, cur) end
end
return replied(id, cur, created)
