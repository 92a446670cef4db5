-- Propose a state (not PAUSED: pause.lua owns that) under the shared rules. CANCELLING a run
-- that is paused, suspended or waiting to start makes it CANCELLED at once.
-- ARGV[4] kind  [5] name  [6] message  [7] retry "1"/"0"  [8] result (msgpack, "" none)
-- ARGV[9] expected current kind ("" any): a compare-and-set guard
-- ARGV[10] enqueue "1"/"0": hand the run to the queue's workers after the move
-- ARGV[11] consumer group, [12] queue entry id: acknowledge the delivery in the same step
--          ("" none; a worker's final transition)
-- ARGV[13…] task-run key, result, … : task results written in the same step (before the
--          call id, the last ARGV)
-- Reply: {1, event id, ...} | {0, reason, ...} | {-1, ...}.
local cur = current()
if not cur then return reply(-1, 'no such run') end
if replayed(cur) then return reply(1, cur.op_detail, cur) end
if ARGV[4] == 'PAUSED' then return reply(0, 'pause a run through pause_flow_run', cur) end
if ARGV[9] ~= '' and cur.type ~= ARGV[9] then
  return reply(0, 'expected ' .. ARGV[9] .. ', found ' .. cur.type, cur)
end
local to_type, to_name = ARGV[4], ARGV[5]
local idle = cur.type == 'PAUSED' or cur.type == 'SCHEDULED' or cur.type == 'PENDING'
if to_type == 'CANCELLING' and idle then
  -- no code of the run is executing: there is nothing to wait for, it is cancelled at once
  -- (a process blocked in an in-process pause is woken by the control stream)
  to_type, to_name = 'CANCELLED', 'Cancelled'
end
local opts = {message = ARGV[6], retry = ARGV[7] == '1'}
if ARGV[8] ~= '' then opts.fields = {'result', ARGV[8]} end
local id, reason = transition(cur, to_type, to_name, opts)
if not id then return reply(0, reason, cur) end
if #ARGV > 13 then redis.call('HSET', RESULTS, unpack(ARGV, 13, #ARGV - 1)) end
if ARGV[10] == '1' then enqueue(cur) end
if ARGV[11] ~= '' then redis.call('XACK', QUEUE, ARGV[11], ARGV[12]) end
return accepted(id, cur)
