-- A worker takes a run off its queue: start it if it is SCHEDULED or PENDING, and return what
-- it needs of the run either way, so the worker needs no read before (or after) this one
-- step. The hash is read once, before the start: a start replies with the time of the state
-- it wrote (the reply's state is that state, with an empty message) and the values of
-- CLAIM_FIELDS (the run's flow, deployment, name, parent, parameters, creation and scheduled
-- times; nil for a field the run has not), not the whole hash.
-- ARGV[1] the worker's name (the run's holder)  [2] its first lease (ms, "" none)
-- [3] the flow the caller runs ("" any): a run of another flow is left as it was (the queue
-- entry's flow field is only a hint: the run's own flow decides)
-- Reply: {ACCEPTED, RUNNING event id, ..., time of the start, CLAIM_FIELDS values…} (started)
--      | {ACCEPTED, RUNNING event id, ..., "", hash fields and values…} (this call, resent)
--      | {REFUSED, reason, ..., "", hash fields and values…} (left as it was) | {NOT_FOUND, ...}
local holder, first_lease, flow = ARGV[1], ARGV[2], ARGV[3]

local fields = call('HGETALL', RUN)
local cur, values = current_of(fields)
if not cur then return reply(NOT_FOUND, 'no such run in this queue') end
if replayed(cur) then return reply(ACCEPTED, cur.op_detail, cur, '', unpack(fields)) end
local id, reason = nil, 'the run is ' .. cur.type
if flow ~= '' and flow ~= cur.flow then
  reason = 'the run is of flow ' .. tostring(cur.flow)
elseif cur.type == 'SCHEDULED' or cur.type == 'PENDING' then
  id, reason = start(cur, holder, first_lease, false, true)
end
if not id then return reply(REFUSED, reason, cur, '', unpack(fields)) end
return replied(id, cur, cur.ts, unpack(values, #STATE_FIELDS + 1, #STATE_FIELDS + #CLAIM_FIELDS))
