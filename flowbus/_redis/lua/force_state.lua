-- Move a run to any state, skipping the transition rules (Prefect's set_flow_run_state with
-- force=True): an operator's repair. A PAUSED state takes its pause fields (and its deadline);
-- a deployed run forced to SCHEDULED is handed to its queue's workers.
-- ARGV[4] kind  [5] name  [6] message  [7] pause key  [8] pause deadline (ms, "" none)
-- ARGV[9] reschedule "1"/"0"
-- Reply: {ACCEPTED, event id, ...} | {NOT_FOUND, ...}
local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
local to_type = ARGV[4]
local opts = {message = ARGV[6], force = true}
if to_type == 'PAUSED' then
  opts.pause_key, opts.reschedule, opts.input_prefix = ARGV[7], ARGV[9] == '1', ''
  if ARGV[8] ~= '' then
    opts.pause_timeout_ms = tonumber(ARGV[8])
    opts.deadline_ms = opts.pause_timeout_ms
  end
end
local deployed = cur.deployment ~= ''
local id = transition(cur, to_type, ARGV[5], opts)
if to_type == 'SCHEDULED' and deployed then enqueue(cur) end
return accepted(id, cur)
