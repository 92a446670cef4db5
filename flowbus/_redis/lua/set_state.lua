-- Propose a state (not PAUSED: pause.lua owns that) under the shared rules. CANCELLING a run
-- that is paused, suspended or waiting to start, or whose holder is gone, makes it CANCELLED
-- at once.
-- ARGV[1] kind  [2] name  [3] message  [4] retry "1"/"0"  [5] result (msgpack) of COMPLETED,
--         traceback (text) of FAILED ("" none)
-- ARGV[6] expected current kind ("" any): a compare-and-set guard
-- ARGV[7] enqueue "1"/"0": hand the run to the queue's workers after the move
-- ARGV[8] consumer group, [9] queue entry id: acknowledge the delivery in the same step
--          ("" none; a worker's final transition), every 16th trimming what is acknowledged
--          (see acknowledge())
-- ARGV[10] the calling execution's attempt ("" for callers that are no execution): fenced
-- ARGV[11…] task-result field ("task:<task-run key>"), result, … : task results written in
--          the same step (before the call id, the last ARGV)
-- Reply: {ACCEPTED, event id, ...} | {REFUSED, reason, ...} | {STALE, reason, ...}
--      | {NOT_FOUND, ...}
local to_type, to_name, message, retry = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local result, expected, enqueue_it = ARGV[5], ARGV[6], ARGV[7] == '1'
local group, entry_id, attempt = ARGV[8], ARGV[9], ARGV[10]
local FIRST_TASK_RESULT, LAST_TASK_RESULT = 11, #ARGV - 1

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local stale = fenced(cur, attempt)
if stale then return reply(STALE, stale, cur) end
if to_type == 'PAUSED' then return reply(REFUSED, 'pause a run through pause_flow_run', cur) end
if expected ~= '' and cur.type ~= expected then
  return reply(REFUSED, 'expected ' .. expected .. ', found ' .. cur.type, cur)
end
local idle = cur.type == 'PAUSED' or cur.type == 'SCHEDULED' or cur.type == 'PENDING'
local held = cur.type == 'RUNNING' or cur.type == 'CANCELLING'
if to_type == 'CANCELLING' and (idle or (held and holder_gone(cur))) then
  -- no code of the run is executing: there is nothing to wait for, it is cancelled at once
  -- (a process blocked in an in-process pause is woken by the control stream)
  to_type, to_name = 'CANCELLED', 'Cancelled'
end
local opts = {message = message, retry = retry, last = true}
-- the task results are run-hash fields, written with the state
if result ~= '' then
  opts.fields = {to_type == 'FAILED' and 'traceback' or 'result', result,
    unpack(ARGV, FIRST_TASK_RESULT, LAST_TASK_RESULT)}
elseif LAST_TASK_RESULT >= FIRST_TASK_RESULT then
  opts.fields = {unpack(ARGV, FIRST_TASK_RESULT, LAST_TASK_RESULT)}
end
local id, reason = transition(cur, to_type, to_name, opts)
if not id then return reply(REFUSED, reason, cur) end
if enqueue_it then enqueue(cur) end
if group ~= '' then acknowledge(group, entry_id) end
return replied(id, cur)
