-- A worker takes a run off its queue: start it if it is SCHEDULED or PENDING, and return the
-- run hash either way, so the worker needs no read before (or after) this one step.
-- No arguments of its own.
-- Reply: {1, RUNNING event id, ..., hash fields and values…} (started)
--      | {0, reason, ..., hash fields and values…} (left as it was) | {-1, ...}
local cur = current()
if not cur then return reply(-1, 'no such run in this queue') end
if replayed(cur) then return reply(1, cur.op_detail, cur, unpack(redis.call('HGETALL', RUN))) end
local id, reason = nil, 'the run is ' .. cur.type
if cur.type == 'SCHEDULED' or cur.type == 'PENDING' then id, reason = start(cur) end
local fields = redis.call('HGETALL', RUN)
if not id then return reply(0, reason, cur, unpack(fields)) end
return accepted(id, cur, unpack(fields))
