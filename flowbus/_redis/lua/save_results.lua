-- Write task results of a run, unless the execution writing them was superseded (fenced): a
-- stale execution's results never mix with the newer one's.
-- ARGV[1] the writing execution's attempt ("" unchecked)
-- ARGV[2…] task-result field ("task:<task-run key>"), result, … (before the call id, the
--          last ARGV)
-- Reply: {ACCEPTED, "", ...} | {STALE, reason, ...} | {NOT_FOUND, ...}
local attempt = ARGV[1]
local FIRST_TASK_RESULT, LAST_TASK_RESULT = 2, #ARGV - 1

local cur = current()
if not cur then return reply(NOT_FOUND, 'no such run') end
local stale = fenced(cur, attempt)
if stale then return reply(STALE, stale, cur) end
if LAST_TASK_RESULT >= FIRST_TASK_RESULT then
  redis.call('HSET', RUN, unpack(ARGV, FIRST_TASK_RESULT, LAST_TASK_RESULT))
end
return reply(ACCEPTED, '', cur)
