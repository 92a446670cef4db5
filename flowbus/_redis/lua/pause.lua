-- Pause (or suspend) a RUNNING run under a one-shot key, writing the state, its deadline and
-- the input schema together, so a resumer never sees PAUSED without its schema.
-- ARGV[4] pause key  [5] timeout (ms from now, "" none)  [6] reschedule "1"/"0"
-- ARGV[7] state name ("Paused", "Suspended")  [8] input prefix ("" = no input wanted)
-- ARGV[9] input JSON schema  [10] input description
-- ARGV[11] "1" if an empty input is valid (every field has a default)
-- Reply: {ACCEPTED, event id, ..., deadline ms or ""}
--      | {ALREADY_FIRED, reason, ..., stored response or "", "1" if a response was stored}
--      | {REFUSED, reason, ...} | {NOT_FOUND, ...}
local key, timeout_ms, reschedule = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local state_name, prefix, schema, description = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local optional = ARGV[11]

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then
  return reply(ACCEPTED, cur.op_detail, cur, kept_deadline(cur) or '')
end
if redis.call('SISMEMBER', FIRED, key) == 1 then
  local response = false
  if prefix ~= '' then response = redis.call('HGET', INPUT, prefix .. '-response') end
  return reply(ALREADY_FIRED, 'this pause already fired', cur, response or '',
    response and '1' or '0')
end
local opts = pause_until({pause_key = key, reschedule = reschedule, input_prefix = prefix},
  timeout_ms and now_ms() + timeout_ms)
local id, reason = transition(cur, 'PAUSED', state_name, opts)
if not id then return reply(REFUSED, reason, cur) end
if prefix ~= '' then
  redis.call('HSET', INPUT, prefix .. '-schema', schema, prefix .. '-description', description)
  redis.call('HSET', RUN, 'input_optional', optional)
  redis.call('HDEL', INPUT, prefix .. '-response')
end
return accepted(id, cur, opts.pause_timeout_ms or '')
