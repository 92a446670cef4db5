-- Shared head of every run script: the transition rules live here once. The scripts are the
-- functions of one library (see scripts.py), loaded once: this head runs then, and each call
-- starts with begin(), which takes the call's keys and arguments.
--
-- Every run script receives the same two KEYS: [1] the run hash, [2] its queue's tag (all of
-- the queue's keys start with it: one slot); begin() names the keys it touches from them (a
-- key passed costs the server more than one named here), with the names flowbus/_redis/keys.py
-- gives them (name_keys(), which scripts.py writes at the library's head):
--   HISTORY run history (list)   FIRED fired pause keys   INPUT run input hash
--   MESSAGES run's input messages stream (send_input)
--   QEVENTS queue events stream  DEADLINES queue deadlines   QUEUE queue stream
--   RUNS queue's runs by time    CONTROL queue control stream (what holders of runs act on)
--   HOLDERS queue holders hash (process name → end of its lease, ms)
--   HELD queue's set of runs held by processes that are not workers
-- and its own ARGV, whose last is the call's id (see replayed()). The settings every call
-- shares (HISTORY_MAXLEN, QUEUE_MAXLEN, RETENTION: see settings_head() in scripts.py) are
-- written into the library, not passed: each argument of a call costs the server more than
-- the few lines of its script that read it.
--
-- Replies share one shape: {status, detail, state_type, state_name, run_count, ...}
--   status ACCEPTED (detail = event id), REFUSED (detail = reason), NOT_FOUND (no such run),
--   ALREADY_FIRED (the pause key fired), EXPIRED (the pause expired), SUSPENDING (the run is
--   suspending), ORPHANED (the process holding the run is gone: the script ended it), EARLY
--   (input for the pause key came before the pause), IS_PAUSED (an early resume found the run
--   paused under its key: resume it normally), STALE (the calling execution was superseded
--   by a newer one: nothing was written), SCHEMA (a resume's input was checked against a schema
--   that is not its pause's: nothing was written); flowbus/_redis/replies.py reads them
--   (Status) and each script's extra values.

-- The caller's id of this call: the same call sent again (its reply was lost with a dropped
-- connection, and the client resent it) finds it on the run and is answered as the first time.
local OP
-- The server's time of this call (ms, and as text: read once, see now_ms()).
local NOW_MS, NOW_TEXT
-- The steps of the run's history not yet written (a transient step waits for the next one):
-- the first UNRECORDED_N of UNRECORDED, a table kept between calls, six values a step (see
-- take_step()).
local UNRECORDED, UNRECORDED_N = {}, 0
-- Approximate cap of the control stream (entries); a burst beyond it makes its watchers'
-- waiters re-read their runs (see waiters.py).
local CONTROL_MAXLEN = 10000

-- The globals the scripts use most, as upvalues: a library reads a global through its
-- environment's metatable (~160 instructions a read), an upvalue for nothing. None can be
-- read while the library loads, so read_globals() reads them on the first call
-- (runtime_globals() is defined before the locals that shadow their names).
local function runtime_globals()
  return redis.call, unpack, tonumber, ipairs, string.format, string.find, string.sub, pcall,
    string.match
end
local call, unpack, tonumber, ipairs, format, find, sub, pcall, match

-- The globals above, read into their upvalues on the first call of any function.
local function read_globals()
  if not call then
    call, unpack, tonumber, ipairs, format, find, sub, pcall, match = runtime_globals()
  end
end

-- Numbers of the texts small_number() converted (run counts: a few texts, converted
-- by every call; tonumber() goes through strtod).
local SMALL_NUMBERS, SMALL_NUMBERS_KEPT = {}, 0

-- tonumber(text) of a text of a small set (nil: not a number), kept (1,000 texts at most).
local function small_number(text)
  local n = SMALL_NUMBERS[text]
  if n == nil and text then
    n = tonumber(text)
    if SMALL_NUMBERS_KEPT < 1000 and n then
      SMALL_NUMBERS[text], SMALL_NUMBERS_KEPT = n, SMALL_NUMBERS_KEPT + 1
    end
  end
  return n
end

-- The first step of every call: its keys and arguments, a fresh clock and history.
local function begin(keys, argv)
  read_globals()
  name_keys(keys[1], keys[2])
  OP = argv[#argv]
  NOW_MS, NOW_TEXT, UNRECORDED_N = nil, nil, 0
end

-- The reply statuses (the first value of every reply; Status in replies.py).
local ACCEPTED, REFUSED, NOT_FOUND = 1, 0, -1
local ALREADY_FIRED, EXPIRED, SUSPENDING, ORPHANED, EARLY, IS_PAUSED = 2, 3, 4, 5, 6, 7
local STALE, SCHEMA = 8, 9

local FINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}

-- Which kinds each kind may move to (final kinds: only an explicit retry, see check()).
local ALLOWED = {
  NONE = {SCHEDULED = true, PENDING = true},  -- a run being created
  SCHEDULED = {SCHEDULED = true, PENDING = true, RUNNING = true, CANCELLING = true,
               CANCELLED = true, FAILED = true, CRASHED = true},
  PENDING = {SCHEDULED = true, RUNNING = true, CANCELLING = true, CANCELLED = true,
             FAILED = true, CRASHED = true},
  RUNNING = {SCHEDULED = true, PAUSED = true, COMPLETED = true, FAILED = true, CRASHED = true,
             CANCELLING = true, CANCELLED = true},
  PAUSED = {SCHEDULED = true, RUNNING = true, PAUSED = true, COMPLETED = true, CANCELLED = true,
            FAILED = true, CRASHED = true},
  CANCELLING = {CANCELLED = true, COMPLETED = true, FAILED = true, CRASHED = true},
}

-- A whole number as text. Numbers handed to redis.call, concatenated or encoded are otherwise
-- formatted as floating point (snprintf "%.17g"), a large share of a short script's time.
local function int_text(n)
  return format('%d', n)
end

-- The server's time (ms, as text), read once per script: every step of one script happens at
-- one instant. A move that no earlier step asked the time of records its event's time (the
-- entry id, which the server makes from its clock: see transition()), reading no TIME; what
-- judges a lease or a deadline reads TIME here. TIME gives seconds
-- and microseconds (as text, without leading zeros): the milliseconds are the seconds
-- followed by the microseconds' first three of six digits.
local function now_text()
  if not NOW_TEXT then
    local t = call('TIME')
    NOW_TEXT = t[1] .. sub('00000' .. t[2], -6, -4)
  end
  return NOW_TEXT
end

-- now_text() as a number.
local function now_ms()
  if not NOW_MS then NOW_MS = tonumber(now_text()) end
  return NOW_MS
end

-- Empty tables of no fields or opts, shared (never written to): a table costs to make.
local NONE = {}

-- A pause's deadline (ms, nil for none) is both its timeout and its entry in the deadline set
-- that the sweepers act on: transition()'s opts get the two together.
local function pause_until(opts, deadline_ms)
  opts.pause_timeout_ms, opts.deadline_ms = deadline_ms, deadline_ms
  return opts
end

-- The run's state is one run-hash field, ``state``: "<kind> <time ms> <run count> <call id>
-- <detail> <name's length in bytes> <name><message>", where "<call id> <detail>" is the last
-- call applied to the run (see replayed(); NO_CALL for both before any) (one field written
-- and read where there were six: each field an HSET writes costs the server a listpack
-- search, an insertion and an argument in the AOF). pack_state() makes it, unpack_state()
-- reads it.
local NO_CALL = '-'
local NAME_HEADS, NAME_HEADS_KEPT = {}, 0

-- "<length> <name>" of a state name, kept (a run's states take a few names) for the last
-- 1,000 names at most.
local function name_head(name)
  local made = NAME_HEADS[name]
  if not made then
    if NAME_HEADS_KEPT == 1000 then NAME_HEADS, NAME_HEADS_KEPT = {}, 0 end
    made = format('%d ', #name) .. name
    NAME_HEADS[name], NAME_HEADS_KEPT = made, NAME_HEADS_KEPT + 1
  end
  return made
end

local function pack_state(type, ts, count, call_id, detail, name, message)
  return type .. ' ' .. ts .. ' ' .. count .. ' ' .. call_id .. ' ' .. detail .. ' '
    .. name_head(name) .. message
end

-- The kind, time (text), run count (text), last call's id and detail, name and message of a
-- ``state`` value; a value that is not one is taken whole as the kind (a kind no rule knows:
-- every step refuses it; its time is nil). A call id never starts with a digit (see
-- scripts.py), so a state an earlier version wrote, "<kind> <time> <run count> <n>
-- <name><message>", reads as one that names no call.
local function unpack_state(state)
  local type, ts, count, call_id, detail, length, at =
    match(state, '^(%u+) (%d+) (%d+) ([^%s%d]%S*) (%S+) (%d+) ()')
  if not type then
    type, ts, count, length, at = match(state, '^(%u+) (%d+) (%d+) (%d+) ()')
    if not type then return state, nil, '0', NO_CALL, NO_CALL, '', '' end
    call_id, detail = NO_CALL, NO_CALL
  end
  local name_end = at + small_number(length) - 1
  return type, ts, count, call_id, detail, sub(state, at, name_end), sub(state, name_end + 1)
end

-- The run-hash fields of a run's state, in the order run_state() takes them: what every step
-- needs (its id is its hash's name's end: RUN_ID), then its pause's (PAUSE_FIELDS of them,
-- present only while the run is PAUSED: current() reads them then); its flow and deployment
-- are read when a step needs them (see flow_of()). After them, the places of the fields
-- current_of() takes from a whole hash: those a claim returns (see claim_run.lua).
local STATE_FIELDS = {'state', 'holder', 'held', 'early_keys', 'attempt', 'pause_key',
  'pause_timeout_ms', 'pause_reschedule'}
local PAUSE_FIELDS = 3
local CLAIM_FIELDS = {'flow_name', 'deployment_id', 'name', 'parent_id', 'parameters',
  'created_ms', 'scheduled_ms'}
local FIELD_PLACE = {}
for i = 1, #STATE_FIELDS do FIELD_PLACE[STATE_FIELDS[i]] = i end
for i = 1, #CLAIM_FIELDS do FIELD_PLACE[CLAIM_FIELDS[i]] = #STATE_FIELDS + i end

-- The run's state from its STATE_FIELDS values (a value of no field is nil or false);
-- ``call_id`` and ``op_detail`` are the id and reply detail of the last call applied (see
-- replayed()), ``ts`` the time of the state (text).
local function run_state(state, holder, held, early_keys, attempt, pause_key, pause_timeout_ms,
                         reschedule)
  local type, ts, count, call_id, detail, name, message = unpack_state(state)
  return {id = RUN_ID, type = type, name = name, run_count = small_number(count),
          count_text = count, ts = ts, call_id = call_id, op_detail = detail,
          pause_key = pause_key or '',
          pause_timeout_ms = pause_timeout_ms and tonumber(pause_timeout_ms) or 0,
          reschedule = reschedule == '1', holder = holder or '',
          held = held == '1', early_keys = early_keys or '', attempt = attempt or '',
          message = message}
end

-- The run's current state, or nil when the run does not exist. A field looked up that the
-- hash lacks costs a scan of the whole hash (a listpack), so the pause's fields are read only
-- for a paused run.
local LIVE_FIELDS = #STATE_FIELDS - PAUSE_FIELDS
local function current()
  local f = call('HMGET', RUN, unpack(STATE_FIELDS, 1, LIVE_FIELDS))
  if not f[1] then return nil end
  if sub(f[1], 1, 7) ~= 'PAUSED ' then return run_state(unpack(f)) end
  local p = call('HMGET', RUN, unpack(STATE_FIELDS, LIVE_FIELDS + 1))
  return run_state(f[1], f[2], f[3], f[4], f[5], p[1], p[2], p[3])
end

-- The run's flow name, and its deployment id ("" none), read once when a step needs them.
local function flow_of(cur)
  if cur.flow == nil then cur.flow = call('HGET', RUN, 'flow_name') or '' end
  return cur.flow
end

local function deployment_of(cur)
  if cur.deployment == nil then cur.deployment = call('HGET', RUN, 'deployment_id') or '' end
  return cur.deployment
end

-- The run's current state from its whole hash (``flat``, HGETALL's reply: a caller that wants
-- the hash reads it once), nil when there is no such run (or its hash holds no state); and
-- the values of CLAIM_FIELDS in their places in ``f``, the second result (false: no such
-- field). A SCHEDULED run created without a start time (no ``scheduled_ms``) is known to
-- hold no deadline (``no_deadline``).
local function current_of(flat)
  if #flat == 0 then return nil end
  -- sized once (a table grown a field at a time is rehashed as it grows)
  local f = {false, false, false, false, false, false, false, false, false, false, false,
    false, false, false, false}
  for i = 1, #flat, 2 do
    local place = FIELD_PLACE[flat[i]]
    if place then f[place] = flat[i + 1] end
  end
  if not f[1] then return nil end  -- a hash without a state is no run
  local cur = run_state(unpack(f, 1, #STATE_FIELDS))
  local n = #STATE_FIELDS
  cur.flow, cur.deployment = f[n + 1] or '', f[n + 2] or ''
  cur.no_deadline = not f[n + 7]
  return cur, f
end

-- The fencing check of a call made by an execution of the run: ``attempt`` is the token its
-- start wrote (the run count it started), "" for callers that are no execution (a user, a
-- sweeper). nil when the call may go on, else the reason it is refused: a newer execution
-- holds the run (this one's lease lapsed and the run was taken over), so this one changes
-- nothing and stops.
local function fenced(cur, attempt)
  if attempt == '' or cur.attempt == '' or attempt == cur.attempt then return nil end
  return 'a newer execution (attempt ' .. cur.attempt .. ') holds the run; attempt ' .. attempt
    .. ' is stale'
end

-- Whether the process holding the run let its lease end (no entry: it left, or was swept).
-- A run that names no holder is not judged.
local function holder_gone(cur)
  if cur.holder == '' then return false end
  local ends = tonumber(call('HGET', HOLDERS, cur.holder) or '')
  return not ends or ends < now_ms()
end

-- The deadline of the run's pause (nil for none), for a move that keeps it.
local function kept_deadline(cur)
  return cur.pause_timeout_ms > 0 and cur.pause_timeout_ms or nil
end

local function reply(status, detail, cur, ...)
  if not cur then return {status, detail, '', '', 0, ...} end
  return {status, detail, cur.type, cur.name, cur.run_count, ...}
end

-- The reply of a call that was applied: the run remembers the call (its state is written
-- again, naming it), so that a resent copy (see OP) is answered as this one was, instead of
-- being refused by the state it made. A state that is not one of ours (no time: see
-- unpack_state()) is left as it is.
local function accepted(detail, cur, ...)
  cur.call_id, cur.op_detail = OP, detail
  if cur.ts then
    call('HSET', RUN, 'state',
      pack_state(cur.type, cur.ts, cur.count_text, OP, detail, cur.name, cur.message))
  end
  return reply(ACCEPTED, detail, cur, ...)
end

-- The reply of a call whose last transition (opts.last) already remembered it.
local function replied(detail, cur, ...)
  return reply(ACCEPTED, detail, cur, ...)
end

-- Whether this call was already applied to the run (and nothing was applied since); then
-- cur.op_detail is its reply's detail.
local function replayed(cur)
  return cur ~= nil and cur.call_id == OP
end

-- nil when cur → to is allowed, else the reason it is refused.
local function check(cur, to_type, to_name, retry)
  if FINAL[cur.type] then
    if retry and (to_type == 'SCHEDULED' or to_type == 'PENDING' or to_type == 'RUNNING') then
      return nil
    end
    return 'the run is ' .. cur.type .. '; only an explicit retry may leave a final state'
  end
  local allowed = ALLOWED[cur.type]
  if not allowed then return 'the run holds a state flowbus cannot read' end
  if to_type == 'PAUSED' and cur.type ~= 'RUNNING' then
    -- the PAUSED → PAUSED moves end in Suspended: a run asked to suspend has checkpointed,
    -- or an in-process pause is handed over because its process leaves
    local to_suspended = cur.type == 'PAUSED' and to_name == 'Suspended'
    if not (to_suspended and (cur.name == 'Suspending' or not cur.reschedule)) then
      return 'only a RUNNING run can be paused'
    end
  end
  if not allowed[to_type] then
    return 'cannot move from ' .. cur.type .. ' to ' .. to_type
  end
  return nil
end

-- A finished run's keys expire after the retention; those only a pause or an input makes
-- (most runs have none of them), if there are any.
local function expire_run_keys()
  name_run_keys()
  call('EXPIRE', RUN, RETENTION)
  call('EXPIRE', HISTORY, RETENTION)
  if call('EXISTS', FIRED, INPUT, MESSAGES) > 0 then
    for _, key in ipairs({FIRED, INPUT, MESSAGES}) do call('EXPIRE', key, RETENTION) end
  end
end

-- A JSON string of any text (cjson only for text that needs escaping: it is the slower way).
local function json_text(s)
  if find(s, '[%c"\\]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

-- json_text() of state names, kept (a run's states take a few names; a lookup costs a
-- twentieth of the making), for the last 1,000 names at most.
local JSON_NAMES, JSON_NAMES_KEPT = {}, 0
local function json_name(name)
  local made = JSON_NAMES[name]
  if not made then
    if JSON_NAMES_KEPT == 1000 then JSON_NAMES, JSON_NAMES_KEPT = {}, 0 end
    made = json_text(name)
    JSON_NAMES[name], JSON_NAMES_KEPT = made, JSON_NAMES_KEPT + 1
  end
  return made
end

-- Append the steps taken to the run's history (a capped list), each a JSON object of its
-- event's fields without the run's own (run_id) and without empty ones, with the name of the
-- state it left and its time; ``id`` is the queue events entry that published them, where a
-- follower continues from. Each entry is made here, one string (see take_step()).
local function record(id, ts)
  local length
  local u = UNRECORDED
  if UNRECORDED_N == 1 then  -- most calls take one step
    length = call('RPUSH', HISTORY, '{"id":"' .. id .. '","type":"' .. u[1] .. '","name":'
      .. u[2] .. ',"from_type":"' .. u[3] .. '","from_name":' .. u[4] .. ',"ts":' .. ts
      .. ',"run_count":' .. u[5] .. u[6] .. '}')
  else
    local steps = {}
    for i = 1, UNRECORDED_N do
      local k = 6 * (i - 1)
      steps[i] = '{"id":"' .. id .. '","type":"' .. u[k + 1] .. '","name":' .. u[k + 2]
        .. ',"from_type":"' .. u[k + 3] .. '","from_name":' .. u[k + 4] .. ',"ts":' .. ts
        .. ',"run_count":' .. u[k + 5] .. u[k + 6] .. '}'
    end
    length = call('RPUSH', HISTORY, unpack(steps))
  end
  if length > HISTORY_MAXLEN then call('LTRIM', HISTORY, -HISTORY_MAXLEN, -1) end
  UNRECORDED_N = 0
end

-- Keep a step for the run's history (see record()): its kind, name (JSON), the kind and name
-- (JSON) it left, its run count, and its optional fields as JSON members ("" none; ``more``
-- are the event's further fields and values, text).
local function take_step(to_type, to_name, cur, count, message, pause_key, deadline, more)
  local rest = ''
  if message ~= '' or pause_key ~= '' or deadline ~= '' or #more > 0 then
    if message ~= '' then rest = rest .. ',"message":' .. json_text(message) end
    if pause_key ~= '' then rest = rest .. ',"pause_key":' .. json_text(pause_key) end
    if deadline ~= '' then rest = rest .. ',"deadline":' .. deadline end
    for i = 1, #more, 2 do rest = rest .. ',"' .. more[i] .. '":' .. json_text(more[i + 1]) end
  end
  local k, u = 6 * UNRECORDED_N, UNRECORDED
  u[k + 1], u[k + 2], u[k + 3] = to_type, json_name(to_name), cur.type
  u[k + 4], u[k + 5], u[k + 6] = json_name(cur.name), count, rest
  UNRECORDED_N = UNRECORDED_N + 1
end

-- The time (ms, text) of a stream entry id the server made.
local function time_of(id)
  return sub(id, 1, find(id, '-', 1, true) - 1)
end

-- Cap a stream of the queue the library adds entries to (the events, the control stream):
-- every 16th entry it adds to it (counted in QUEUE_KEPT, kept between calls) trims it, whole
-- nodes down to ``maxlen`` (XTRIM MAXLEN ~). An XADD with MAXLEN ~ costs three arguments
-- more, to convert, check and replicate (rewritten to the exact length); trimmed every 16th
-- entry, a stream stays within its cap, a node and 16 entries.
local function keep_capped(stream, maxlen)
  local added = QUEUE_KEPT.added
  local n = (added[stream] or 0) + 1
  if n == 16 then
    call('XTRIM', stream, 'MAXLEN', '~', maxlen)
    n = 0
  end
  added[stream] = n
end

-- Move the run to a new state: apply the rules, write the state, publish one event to the
-- queue's events stream and record it in the run's history. opts: message, retry, force,
-- pause_key, pause_timeout_ms, reschedule, input_prefix, deadline_ms; fields (more run-hash
-- fields and values to write with the state, task results among them); transient (a step
-- the same script moves on from at once: recorded in the history with the next step, but
-- neither published nor written to the hash); last (the call's last write: the call id is
-- written with the state, and the script replies with replied() instead of accepted());
-- input (a resume's input, JSON text: carried by the control entry only, so the paused
-- process reads nothing); created (a run's first state: its time is written as created_ms
-- too). Returns the event id ("" for a transient step), or nil and the reason; cur.ts is the
-- time of the move.
local function transition(cur, to_type, to_name, opts)
  if not opts.force then  -- force: an operator's repair skips the rules (Prefect's force=True)
    local reason = check(cur, to_type, to_name, opts.retry)
    if reason then return nil, reason end
  end
  local run_count, count = cur.run_count, cur.count_text
  if to_type == 'RUNNING' and cur.type ~= 'PAUSED' then
    run_count = run_count + 1
    count = int_text(run_count)
  end
  local message = opts.message or ''
  local deadline = opts.deadline_ms and int_text(opts.deadline_ms) or ''
  -- the event names the pause it enters or leaves, so a waiter can trust it without a read
  local pause_key = cur.type == 'PAUSED' and cur.pause_key or ''
  if to_type == 'PAUSED' then pause_key = opts.pause_key end
  local more = NONE
  if opts.proposal or (FINAL[to_type] and cur.early_keys ~= '') then
    more = {}
    if opts.proposal then
      -- the judged input this resume applied: its resumer learns from this event that it won
      more[1], more[2] = 'proposal', opts.proposal
    end
    if FINAL[to_type] and cur.early_keys ~= '' then
      -- input delivered for pauses the run never reached: said once, in its final event
      more[#more + 1], more[#more + 2] = 'early_unclaimed', cur.early_keys
    end
  end
  take_step(to_type, to_name, cur, count, message, pause_key, deadline, more)
  if opts.deadline_ms then
    call('ZADD', DEADLINES, deadline, cur.id)
  elseif cur.type == 'PAUSED' or (cur.type == 'SCHEDULED' and not cur.no_deadline) then
    call('ZREM', DEADLINES, cur.id)  -- only these kinds can hold a deadline
  end
  if opts.transient then
    cur.type, cur.name, cur.run_count, cur.count_text = to_type, to_name, run_count, count
    return ''
  end
  -- the run's flow and the name of the state left are in its hash and history, and fields
  -- that are empty are left out (each field costs every reader of the stream); the
  -- event is made a table only when it has more fields or goes to the control stream too
  -- (a table costs to make: the common move passes its fields as they are)
  local action = ''
  if cur.type == 'RUNNING' then
    -- a run taken over from a worker taken for dead ('fence'): its old execution, if it
    -- still runs, stops at its next task boundary
    action = ((to_type == 'CANCELLING' or to_type == 'CANCELLED') and 'cancel')
      or (to_name == 'Suspending' and 'suspend') or (to_name == 'Rescheduled' and 'fence') or ''
  end
  -- the control stream carries only what a process holding a run must act on: a request to
  -- a running run, the end of a pause (wakes its waiter), a new deadline (wakes sweepers)
  local control = action ~= '' or cur.type == 'PAUSED' or opts.deadline_ms
  local event, id
  if control or message ~= '' or pause_key ~= '' or deadline ~= '' or more ~= NONE then
    event = {'run_id', cur.id, 'type', to_type, 'name', to_name, 'from_type', cur.type,
      'run_count', count}
    if message ~= '' then event[#event + 1], event[#event + 2] = 'message', message end
    if pause_key ~= '' then event[#event + 1], event[#event + 2] = 'pause_key', pause_key end
    if deadline ~= '' then event[#event + 1], event[#event + 2] = 'deadline', deadline end
    for i = 1, #more do event[#event + 1] = more[i] end
    id = call('XADD', QEVENTS, '*', unpack(event))
  else
    id = call('XADD', QEVENTS, '*', 'run_id', cur.id, 'type', to_type, 'name', to_name,
      'from_type', cur.type, 'run_count', count)
  end
  keep_capped(QEVENTS, QUEUE_MAXLEN)
  -- the move's time: the script's, if a step asked for it; else its event's (only for its
  -- record: what judges a lease or a deadline reads the clock)
  local ts = NOW_TEXT or time_of(id)
  -- the state as one field, naming the call with the call's last write (an earlier write
  -- keeps the call it named: see replayed())
  local fields = opts.fields or NONE
  if opts.created then fields = {'created_ms', ts, unpack(fields)} end
  if opts.last then cur.call_id, cur.op_detail = OP, id end
  call('HSET', RUN, 'state',
    pack_state(to_type, ts, count, cur.call_id, cur.op_detail, to_name, message), unpack(fields))
  cur.message = message
  if to_type == 'PAUSED' then
    call('HSET', RUN, 'pause_key', pause_key,
      'pause_timeout_ms', opts.pause_timeout_ms or '', 'pause_reschedule',
      opts.reschedule and '1' or '0', 'input_prefix', opts.input_prefix or '')
  elseif cur.type == 'PAUSED' then
    call('HDEL', RUN, 'pause_key', 'pause_timeout_ms', 'pause_reschedule', 'input_prefix',
      'input_optional', 'pause_on_timeout', 'input_judged')
  end
  record(id, ts)
  -- after the history is written, so that it expires with the run
  if FINAL[to_type] then
    expire_run_keys()
    if cur.held then
      call('SREM', HELD, cur.id)
      call('HSET', RUN, 'held', '0')
      cur.held = false
    end
  elseif FINAL[cur.type] then
    name_run_keys()
    for _, key in ipairs({RUN, HISTORY, FIRED, INPUT, MESSAGES}) do
      call('PERSIST', key)
    end
    call('DEL', FIRED)  -- a retried run asks for its input again
  end
  if control then
    if action ~= '' then event[#event + 1], event[#event + 2] = 'action', action end
    if opts.input then event[#event + 1], event[#event + 2] = 'input', opts.input end
    call('XADD', CONTROL, '*', unpack(event))
    keep_capped(CONTROL, CONTROL_MAXLEN)
  end
  cur.type, cur.name, cur.run_count, cur.count_text = to_type, to_name, run_count, count
  cur.ts = ts
  return id
end

-- The stream id right after ``id`` (nil for an id flowbus never makes).
local function next_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms or #seq > 15 then return nil end
  return ms .. '-' .. int_text(tonumber(seq) + 1)
end

-- The id of the last entry the queue stream's consumer group delivered.
local function last_delivered(group)
  for _, info in ipairs(call('XINFO', 'GROUPS', QUEUE)) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields.name == group then return fields['last-delivered-id'] end
  end
  return nil
end

-- The acknowledgements that run_calls() sends together once its calls ran (one XACK for
-- them all costs less than one each): consumer group → the entry ids its calls acknowledged;
-- nil outside run_calls().
local ACKS = nil

-- Count ``n`` acknowledgements of the queue; every 16th (counted in QUEUE_KEPT, as
-- keep_capped() counts) drops what nothing reads again: the entries older than the group's
-- first pending one, or, none pending, every entry it delivered (a group delivers in order),
-- whole stream nodes at a time (``~``: O(1) while no node is done). The stream keeps a tail
-- of less than a node and 16 acknowledged entries; looking at the pending list and trimming
-- at every acknowledgement cost a fifth of a final transition, and an XDEL of each entry more
-- (the server walks the deleted entries before it in its node to find the stream's new first
-- entry).
local function acknowledged(group, n)
  local added = QUEUE_KEPT.added
  n = (added[QUEUE] or 0) + n
  if n < 16 then
    added[QUEUE] = n
    return
  end
  added[QUEUE] = 0
  local first = call('XPENDING', QUEUE, group, '-', '+', 1)[1]
  local older_than = first and first[1]
  if not older_than then
    local last = last_delivered(group)
    older_than = last and next_id(last)
  end
  if older_than then call('XTRIM', QUEUE, 'MINID', '~', older_than) end
end

-- Acknowledge a delivery of the queue stream (within run_calls(), with the others after its
-- calls: see ACKS).
local function acknowledge(group, entry_id)
  if ACKS then
    local ids = ACKS[group]
    if not ids then
      ids = {}
      ACKS[group] = ids
    end
    ids[#ids + 1] = entry_id
    return
  end
  call('XACK', QUEUE, group, entry_id)
  acknowledged(group, 1)
end

-- Hand a run to the workers of its queue.
local function enqueue(cur)
  call('XADD', QUEUE, '*', 'run_id', cur.id, 'run_count', cur.count_text,
    'flow', flow_of(cur))
end

-- A pause ends with a resume: mark its key fired, then RUNNING for an in-process pause, or
-- SCHEDULED "Resuming" plus enqueue when ``requeue`` (a suspended run, or an in-process pause
-- whose process is gone). ``opts``: more of transition()'s options, or nil (a resume's:
-- its judged proposal, its input for the waiter of an in-process pause, last). Returns the
-- event id.
local function leave_pause(cur, message, requeue, opts)
  name_run_keys()
  call('SADD', FIRED, cur.pause_key)
  opts = opts or {}
  opts.message = message
  if requeue then
    opts.input = nil  -- no process waits in the pause: a worker re-runs the flow
    local id = transition(cur, 'SCHEDULED', 'Resuming', opts)
    enqueue(cur)
    return id
  end
  return transition(cur, 'RUNNING', 'Running', opts)
end

-- The pause keys with input waiting for them (early_keys: a JSON list in the run hash).
local function early_list(cur)
  if cur.early_keys == '' then return {} end
  return cjson.decode(cur.early_keys)
end

local function set_early_list(cur, list)
  if #list == 0 then
    call('HDEL', RUN, 'early_keys')
    cur.early_keys = ''
  else
    cur.early_keys = cjson.encode(list)
    call('HSET', RUN, 'early_keys', cur.early_keys)
  end
end

-- Forget the early input for ``key`` (taken by its pause, or refused by it).
local function drop_early(cur, key)
  name_run_keys()
  call('HDEL', INPUT, 'early-' .. key)
  local kept = {}
  for _, k in ipairs(early_list(cur)) do
    if k ~= key then kept[#kept + 1] = k end
  end
  set_early_list(cur, kept)
end

-- Start executing a run: SCHEDULED → PENDING → RUNNING (one step: the PENDING is recorded, the
-- RUNNING published) or PENDING → RUNNING, as a new execution (its fencing token, ``attempt``,
-- is the run count it starts) held by the process named ``holder``; ``lease_ms`` ("" none)
-- writes that process's first lease (its heartbeat keeps it from then on); ``held`` indexes a
-- run that no queue delivery tracks (a plain script's), for the sweepers; ``last``: the
-- RUNNING is the call's last write (see transition()). Returns the RUNNING event id, or nil
-- and the reason.
local TRANSIENT = {transient = true}  -- the opts of a start's PENDING step (shared, as NONE)
local function start(cur, holder, lease_ms, held, last)
  if cur.type == 'SCHEDULED' then
    local id, reason = transition(cur, 'PENDING', 'Pending', TRANSIENT)
    if not id then return nil, reason end
  end
  if cur.type ~= 'PENDING' then return nil, 'only a SCHEDULED or PENDING run can start' end
  cur.holder, cur.attempt = holder, int_text(cur.run_count + 1)
  local fields = {'holder', holder, 'attempt', cur.attempt}
  if held then
    call('SADD', HELD, cur.id)
    fields[5], fields[6], cur.held = 'held', '1', true
  end
  local id, reason = transition(cur, 'RUNNING', 'Running', {fields = fields, last = last})
  if lease_ms ~= '' and id then
    call('HSET', HOLDERS, holder, int_text(now_ms() + tonumber(lease_ms)))
  end
  return id, reason
end

-- End a run whose holder is gone: CANCELLED if it was cancelling, CRASHED otherwise.
local function end_orphan(cur)
  if cur.type == 'CANCELLING' then
    return transition(cur, 'CANCELLED', 'Cancelled', {message = 'Cancelled: its process is gone'})
  end
  return transition(cur, 'CRASHED', 'Crashed', {message = 'Its process (' .. cur.holder ..
    ') stopped heartbeating while holding it'})
end

-- The message of the FAILED state an expired pause leaves (Prefect's): how a late resumer learns
-- why the run failed (flowbus/_redis/records.py reads it too, as NEVER_RESUMED).
local NEVER_RESUMED = 'The flow was paused and never resumed.'

-- Whether the run failed because its pause expired.
local function failed_by_expiry(cur)
  return cur.type == 'FAILED' and cur.message == NEVER_RESUMED
end

-- Time out a paused run whose deadline has passed by the server's clock: FAILED, or resumed
-- without input when its pause asked for that (on_timeout="resume"). The one place a deadline
-- acts, for the paused process, the sweepers and a late resume alike. Returns the event id; or
-- nil while the deadline has not come, and the ms left ("" for a pause without a deadline).
local function expire_pause(cur)
  if cur.pause_timeout_ms == 0 then return nil, '' end
  local left = cur.pause_timeout_ms - now_ms()
  if left > 0 then return nil, left end
  if call('HGET', RUN, 'pause_on_timeout') == 'resume' then
    -- an in-process pause whose process is gone is re-run by a worker, like a suspension
    local requeue = cur.reschedule or (holder_gone(cur) and deployment_of(cur) ~= '')
    return leave_pause(cur, 'Resumed at the deadline', requeue)
  end
  return transition(cur, 'FAILED', 'Failed', {message = NEVER_RESUMED})
end

-- The scripts by name, each a function(KEYS, ARGV) (the library fills it in after this head).
local SCRIPTS = {}

-- Each of several calls of the scripts in turn (see run_calls()), its reply into ``replies``.
local function run_each(KEYS, ARGV, replies)
  local n = #KEYS - 1
  local tag, at = KEYS[n + 1], 1
  for i = 1, n do
    local script, last = SCRIPTS[ARGV[at]], at + 1 + tonumber(ARGV[at + 1])
    local ok, reply = pcall(script, {KEYS[i], tag}, {unpack(ARGV, at + 2, last)})
    if not ok then
      reply = {err = type(reply) == 'table' and reply.err or tostring(reply)}
    end
    replies[i] = reply
    at = last + 1
  end
end

-- Several calls of the scripts, on runs of one queue, in one FCALL (each command costs the
-- server its own lookup, call and MULTI/EXEC in the AOF: see flowbus/_redis/merged_calls.py).
-- KEYS: each call's run hash, then the queue's tag; ARGV: for each call its script's name,
-- its argument count and its arguments. Replies with each call's reply, in order: a call
-- that raised an error has it as its reply (what it wrote before stays, as for a call of its
-- own), and the calls after it run. Their acknowledgements of queue deliveries are sent last,
-- together.
local function run_calls(KEYS, ARGV)
  read_globals()
  local replies = {}
  ACKS = {}
  local ran, failure = pcall(run_each, KEYS, ARGV, replies)
  local acks = ACKS
  ACKS = nil
  for group, ids in pairs(acks) do
    call('XACK', QUEUE, group, unpack(ids))
    acknowledged(group, #ids)
  end
  if not ran then error(failure) end
  return replies
end
