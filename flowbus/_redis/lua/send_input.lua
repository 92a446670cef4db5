-- Add a message for a run's receive_input, at most once per idempotency key.
-- ARGV[4] message key  [5] payload (JSON text)  [6] sender  [7] idempotency key ("" none)
-- [8] messages stream maxlen
-- Reply: {1, entry id, ...} | {2, entry id of the earlier send, ...} | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run') end
local idem = ARGV[7]
if idem ~= '' then
  local earlier = redis.call('HGET', INPUT, 'sent:' .. idem)
  if earlier then return reply(2, earlier, cur) end
end
local id = redis.call('XADD', MESSAGES, 'MAXLEN', '~', ARGV[8], '*', 'key', ARGV[4],
  'payload', ARGV[5], 'sender', ARGV[6])
if idem ~= '' then redis.call('HSET', INPUT, 'sent:' .. idem, id) end
if FINAL[cur.type] then  -- a finished run's keys expire; so do late messages
  redis.call('EXPIRE', MESSAGES, RETENTION)
  redis.call('EXPIRE', INPUT, RETENTION)
end
return reply(1, id, cur)
