-- Add an input (a send_input message or a create_flow_run_input) to a run: a stream entry
-- (key, payload, sender), at most once per idempotency key. A named input ([6] "1") also
-- gets the index field 'at:<key>' → entry id, at most once per key (messages are not
-- indexed: their keys are unique, and the capped stream bounds their memory).
-- ARGV[1] input key  [2] payload (JSON text)  [3] sender  [4] idempotency key ("" none)
-- ARGV[5] messages stream maxlen  [6] indexed "1"/"0"
-- Reply: {ACCEPTED, entry id, ...} | {ALREADY_FIRED, entry id of the earlier send, ...}
--      | {REFUSED, 'exists', ...} (the key is taken) | {NOT_FOUND, ...}
local key, payload, sender, idem, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local indexed = ARGV[6] == '1'

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
if idem ~= '' then
  local earlier = redis.call('HGET', INPUT, 'sent:' .. idem)
  if earlier then return reply(ALREADY_FIRED, earlier, cur) end
end
if indexed and redis.call('HEXISTS', INPUT, 'at:' .. key) == 1 then
  return reply(REFUSED, 'exists', cur)
end
local id = redis.call('XADD', MESSAGES, 'MAXLEN', '~', maxlen, '*', 'key', key,
  'payload', payload, 'sender', sender)
if indexed then redis.call('HSET', INPUT, 'at:' .. key, id) end
if idem ~= '' then redis.call('HSET', INPUT, 'sent:' .. idem, id) end
if FINAL[cur.type] then  -- a finished run's keys expire; so do late messages
  redis.call('EXPIRE', MESSAGES, RETENTION)
  redis.call('EXPIRE', INPUT, RETENTION)
end
return reply(ACCEPTED, id, cur)
