-- Resume a paused run: one compare-and-set, so of many resumers exactly one wins.
-- Checks: PAUSED, the pause key the caller validated against, not suspending, not expired
-- (by the server's clock; an expired pause times out here, see expire_pause()). Then stores the
-- input, marks the key fired and moves the run on: RUNNING for an in-process pause,
-- SCHEDULED "Resuming" plus enqueue for a suspended run.
-- With ``early``, input for a pause the run has not reached yet is stored under the key
-- instead (once per key); the pause takes it when it comes (pause.lua).
-- ARGV[1] expected pause key ("" = any: a resume that read nothing first; without input and
--         unchecked, it is refused when the pause needs input, so the caller can explain why)
-- ARGV[2] input (msgpack)  [3] "1" if an input is given
-- ARGV[4] "1": early resume (the key is required)
-- ARGV[5] proposal id ("" none): the input's owner and its resumer may both apply one judged
--         proposal (the owner, or the resumer when no verdict came in time): applied once,
--         the second is told it was accepted
-- ARGV[6] SHA-1 of the schema text the caller checked the input against ("" none: the caller
--         read the pause and names its key); the pause's own schema must have it, and a judged
--         pause a proposal, else the reply is SCHEMA, with what a check needs (nothing written)
-- ARGV[7] the input as JSON text ("" none), carried by the resume's control entry
-- An in-process pause whose process is gone (its lease ended) has nobody to wake: with a
-- deployment it is resumed as a suspension (a worker re-runs it); without, it ends CRASHED
-- and the resume is refused, saying so.
-- Reply: {ACCEPTED, event id (early: "early"), ...} | {REFUSED, reason, ...}
--      | {EXPIRED, reason, ...} (the run is FAILED: now, or earlier by its timer)
--      | {SUSPENDING, reason, ...} | {ORPHANED, reason, ...} (CRASHED) | {NOT_FOUND, ...}
--      | {IS_PAUSED, reason, ...} (early: the run is paused under the key; resume it normally)
--      | {SCHEMA, reason, ..., pause key, input prefix, schema, "1" if judged}
local key, input, input_given, early = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'
local proposal, checked, carried = ARGV[5], ARGV[6], ARGV[7]

-- Store input for the pause under ``key`` that the run has not reached.
local function store_early(cur)
  if FINAL[cur.type] then return reply(REFUSED, 'the run is ' .. cur.type, cur) end
  if cur.type == 'PAUSED' and cur.pause_key == key then
    return reply(IS_PAUSED, 'the run is paused under this key', cur)
  end
  if redis.call('SISMEMBER', FIRED, key) == 1 then
    return reply(REFUSED, 'the pause under this key already fired', cur)
  end
  if redis.call('HSETNX', INPUT, 'early-' .. key, input_given and ('1' .. input) or '0') == 0 then
    return reply(REFUSED, 'input for this key was already delivered early', cur)
  end
  local list = early_list(cur)
  list[#list + 1] = key
  set_early_list(cur, list)
  return accepted('early', cur)
end

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur) end
if early then return store_early(cur) end
if proposal ~= '' and redis.call('HGET', RUN, 'resumed_by') == proposal then
  return reply(ACCEPTED, 'this proposal resumed the run', cur)
end
if failed_by_expiry(cur) then
  return reply(EXPIRED, 'the pause expired', cur)  -- a late resumer learns why, whoever expired it
end
if cur.type ~= 'PAUSED' then return reply(REFUSED, 'the run is not paused', cur) end
if key ~= '' and cur.pause_key ~= key then
  return reply(REFUSED, 'the run is paused under another key', cur)
end
if cur.name == 'Suspending' then
  return reply(SUSPENDING, 'the run is still suspending; resume it once it is Suspended', cur)
end
local prefix = redis.call('HGET', RUN, 'input_prefix') or ''
if checked ~= '' then
  local schema = prefix ~= '' and redis.call('HGET', INPUT, prefix .. '-schema') or ''
  local judged = redis.call('HGET', RUN, 'input_judged') or ''
  if (judged == '1' and proposal == '') or redis.sha1hex(schema) ~= checked then
    return reply(SCHEMA, 'the input was not checked against this pause', cur, cur.pause_key,
      prefix, schema, judged)
  end
end
if expire_pause(cur) then return reply(EXPIRED, 'the pause expired', cur) end
local orphaned = not cur.reschedule and holder_gone(cur)
if orphaned and deployment_of(cur) == '' then
  end_orphan(cur)
  return reply(ORPHANED, 'the process holding the run (' .. cur.holder .. ') is gone; the run '
    .. 'is CRASHED', cur)
end
if key == '' and checked == '' and prefix ~= ''
  and redis.call('HGET', RUN, 'input_optional') ~= '1' then
  return reply(REFUSED, 'this pause needs input', cur)
end
if input_given and prefix ~= '' then
  redis.call('HSET', INPUT, prefix .. '-response', input)
end
local requeue = cur.reschedule or orphaned
local opts = {last = true}  -- the call id is written with the state
if carried ~= '' and prefix ~= '' then opts.input = carried end
if proposal ~= '' then opts.proposal, opts.fields = proposal, {'resumed_by', proposal} end
return replied(leave_pause(cur, requeue and '' or 'Resumed', requeue, opts), cur)
