-- Pause (or suspend) a RUNNING run under a one-shot key, writing the state, its deadline and
-- the input schema together, so a resumer never sees PAUSED without its schema. Input that
-- came for the key before the pause (resume.lua, early) is first shown to the caller, which
-- judges it with the real input type, then calls again to take it (the pause returns at once,
-- nothing pauses) or to refuse it (it is dropped and the run pauses as usual).
-- ARGV[1] pause key  [2] timeout (ms from now, "" none)  [3] reschedule "1"/"0"
-- ARGV[4] state name ("Paused", "Suspended")  [5] input prefix ("" = no input wanted)
-- ARGV[6] input JSON schema  [7] input description
-- ARGV[8] "1" if an empty input is valid (every field has a default)
-- ARGV[9] the input type's identity (kept with the key, to tell a diverging re-run)
-- ARGV[10] "resume": the deadline resumes the run without input instead of failing it
-- ARGV[11] early input: "" show it, "take" take it, "refuse" drop it  [12] why it was refused
-- ARGV[13] the pausing execution's attempt (fenced; "" unchecked)
-- ARGV[14] "1": the input has validators a JSON schema cannot express (its owner judges it)
-- Reply: {ACCEPTED, event id, ..., deadline ms or ""}
--      | {ALREADY_FIRED, reason, ..., stored response or "", "1" if a response was stored,
--         the input type identity stored with the key or ""}
--      | {EARLY, reason, ..., early input or "", "1" if one was given}
--      | {REFUSED, reason, ...} | {STALE, reason, ...} | {NOT_FOUND, ...}
local key, timeout_ms, reschedule = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local state_name, prefix, schema, description = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local optional, identity, on_timeout = ARGV[8], ARGV[9], ARGV[10]
local early_action, refusal, attempt = ARGV[11], ARGV[12], ARGV[13]
local judged = ARGV[14]

local function fired(cur)
  local response = false
  if prefix ~= '' then response = redis.call('HGET', INPUT, prefix .. '-response') end
  local kind = redis.call('HGET', INPUT, 'type-' .. key) or ''
  return reply(ALREADY_FIRED, 'this pause already fired', cur, response or '',
    response and '1' or '0', kind)
end

-- The pause's early input taken: the key fires now, as if resumed the moment it paused.
local function take(cur, early)
  if cur.type ~= 'RUNNING' then return reply(REFUSED, 'only a RUNNING run can be paused', cur) end
  drop_early(cur, key)
  redis.call('SADD', FIRED, key)
  redis.call('HSET', INPUT, 'type-' .. key, identity)
  if prefix ~= '' then
    redis.call('HDEL', INPUT, prefix .. '-response')
    if string.sub(early, 1, 1) == '1' then
      redis.call('HSET', INPUT, prefix .. '-response', string.sub(early, 2))
    end
  end
  return fired(cur)
end

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then
  return reply(ACCEPTED, cur.op_detail, cur, kept_deadline(cur) or '')
end
local stale = fenced(cur, attempt)
if stale then return reply(STALE, stale, cur) end
if redis.call('SISMEMBER', FIRED, key) == 1 then return fired(cur) end
local opts = pause_until({pause_key = key, reschedule = reschedule, input_prefix = prefix},
  timeout_ms and now_ms() + timeout_ms)
local early = redis.call('HGET', INPUT, 'early-' .. key)
if early then
  if early_action == '' then
    return reply(EARLY, 'input came before the pause', cur, string.sub(early, 2),
      string.sub(early, 1, 1))
  end
  if early_action == 'take' then return take(cur, early) end
  opts.message = refusal
end
local id, reason = transition(cur, 'PAUSED', state_name, opts)
if not id then return reply(REFUSED, reason, cur) end
if early then drop_early(cur, key) end
redis.call('HSET', INPUT, 'type-' .. key, identity)
if on_timeout == 'resume' then redis.call('HSET', RUN, 'pause_on_timeout', 'resume') end
if prefix ~= '' then
  redis.call('HSET', INPUT, prefix .. '-schema', schema, prefix .. '-description', description)
  redis.call('HSET', RUN, 'input_optional', optional, 'input_judged', judged)
  redis.call('HDEL', INPUT, prefix .. '-response')
end
return accepted(id, cur, opts.pause_timeout_ms or '')
