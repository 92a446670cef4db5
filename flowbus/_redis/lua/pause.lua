-- Pause (or suspend) a RUNNING run under a one-shot key, writing the state, its deadline and
-- the input schema together, so a resumer never sees PAUSED without its schema.
-- ARGV[4] pause key  [5] timeout (ms from now, "" none)  [6] reschedule "1"/"0"
-- ARGV[7] state name ("Paused", "Suspended")  [8] input prefix ("" = no input wanted)
-- ARGV[9] input JSON schema  [10] input description
-- ARGV[11] "1" if an empty input is valid (every field has a default)
-- Reply: {1, event id, ..., deadline ms or ""}
--      | {2, "already fired", ..., stored response or "", "1" if a response was stored}
--      | {0, reason, ...} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
if replayed(cur) then
  return reply(1, cur.op_detail, cur, cur.pause_timeout_ms > 0 and cur.pause_timeout_ms or '')
end
local key, prefix = ARGV[4], ARGV[8]
if redis.call('SISMEMBER', FIRED, key) == 1 then
  local response = false
  if prefix ~= '' then response = redis.call('HGET', INPUT, prefix .. '-response') end
  return reply(2, 'this pause already fired', cur, response or '', response and '1' or '0')
end
local opts = {pause_key = key, reschedule = ARGV[6] == '1', input_prefix = prefix}
if ARGV[5] ~= '' then
  opts.pause_timeout_ms = now_ms() + tonumber(ARGV[5])
  opts.deadline_ms = opts.pause_timeout_ms
end
local id, reason = transition(cur, 'PAUSED', ARGV[7], opts)
if not id then return reply(0, reason, cur) end
if prefix ~= '' then
  redis.call('HSET', INPUT, prefix .. '-schema', ARGV[9], prefix .. '-description', ARGV[10])
  redis.call('HSET', RUN, 'input_optional', ARGV[11] or '0')
  redis.call('HDEL', INPUT, prefix .. '-response')
end
return accepted(id, cur, opts.pause_timeout_ms or '')
