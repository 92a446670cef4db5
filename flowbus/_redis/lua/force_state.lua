-- Move a run to any state, skipping the transition rules (Prefect's set_flow_run_state with
-- force=True): an operator's repair. A PAUSED state takes its pause fields (and its deadline);
-- a deployed run forced to SCHEDULED is handed to its queue's workers.
-- ARGV[1] kind  [2] name  [3] message  [4] pause key  [5] pause deadline (ms, "" none)
-- ARGV[6] reschedule "1"/"0"
-- Reply: {ACCEPTED, event id, ...} | {NOT_FOUND, ...}
local to_type, to_name, message = ARGV[1], ARGV[2], ARGV[3]
local pause_key, pause_deadline_ms, reschedule = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local opts = {message = message, force = true}
if to_type == 'PAUSED' then
  opts.pause_key, opts.reschedule, opts.input_prefix = pause_key, reschedule, ''
  pause_until(opts, pause_deadline_ms)
end
local deployed = deployment_of(cur) ~= ''
local id = transition(cur, to_type, to_name, opts)
if to_type == 'SCHEDULED' and deployed then enqueue(cur) end
return accepted(id, cur)
