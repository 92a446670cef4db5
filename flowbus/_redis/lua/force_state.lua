-- Move a run to any state, skipping the transition rules (Prefect's set_flow_run_state with
-- force=True): an operator's repair. A PAUSED state takes its pause fields (and its deadline);
-- a deployed run forced to SCHEDULED is handed to its queue's workers.
-- ARGV[4] kind  [5] name  [6] message  [7] pause key  [8] pause deadline (ms, "" none)
-- ARGV[9] reschedule "1"/"0"
-- Reply: {ACCEPTED, event id, ...} | {NOT_FOUND, ...}
local to_type, to_name, message = ARGV[4], ARGV[5], ARGV[6]
local pause_key, pause_deadline_ms, reschedule = ARGV[7], tonumber(ARGV[8]), ARGV[9] == '1'

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
