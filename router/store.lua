#!lua name=tierd
--
-- store.lua — every ticket state transition of tierd, as Redis 7 functions.
--
-- Each function runs atomically inside Redis, so a router killed at any
-- instant leaves either the whole transition or none of it. The router only
-- decides *what* to do (validation, routing, ordering inputs); these functions
-- are the single place where state changes. docs/data-model.md lists the keys.
--
-- Calling convention: FCALL <name> 0 <prefix> <now_ms> <args...>
-- Every function returns the same shape:
--   { status, reason, seq_last, events, payload }
-- status   "OK" or an ErrorCode name without prefix ("UNKNOWN_TICKET", ...)
-- reason   text for people when status is not OK
-- seq_last the event sequence number of the last event in `events` (the
--          first is seq_last - #events + 1); events are numbered here, inside
--          the transaction, so the snapshot and the event stream agree
-- events   array of events, each one string: its fields in the order of
--          event() below, separated by NUL bytes (every text field comes
--          from a C string, so none holds a NUL)
-- payload  function-specific array
--
-- Numbers are passed and stored as decimal strings (see N) because Redis
-- would print large Lua numbers in exponent form.
--
-- Lua allows a function 200 local variables at once, and this library's
-- top level (with stats.lua) uses 166: keep constants in tables (H, E) or
-- inside a do ... end block (see LAZY_POLICY); FUNCTION LOAD fails past 200.

local P       -- key prefix, e.g. "tier:"
local NOW     -- the router's clock, ms since the epoch
local NOWS    -- the same as the router sent it, a decimal string (no N(NOW) per use)
local EVENTS  -- events produced by this call
local TOUCHED -- queues whose depth changed in this call (or batch): key -> {level, dept}
local DIRTY   -- tickets with hash fields still to write: id -> {field, value, ...}
local TIMING  -- timer changes still to write: member -> due (string) or false
local HIST    -- history entries still to write: id -> {json...}
local CLEARED = {} -- agents whose offer-miss count goes back to 0 (flush_misses)
local BATCH   -- true inside tier_batch: queue events and numbering at its end

-- Enum values shared with tier.proto
local QUEUED, OFFERED, ASSIGNED, RESOLVED, ABANDONED, DEFERRED, DEAD = 1, 2, 3, 4, 5, 6, 7
-- History and event kinds (tier.proto HistoryKind, EventKind): tables, not
-- locals, to leave room under Lua's 200 locals (see the top of the file).
local H = { CREATED = 1, CUSTOMER_MESSAGE = 2, AGENT_RESPONSE = 3, NOTE = 4, OFFERED = 5,
            ASSIGNED = 6, ESCALATED = 7, RELEASED = 8, REQUEUED = 9, RESOLVED = 10,
            ABANDONED = 11, RATED = 12, RULE = 13, DEFERRED = 14, DEAD_LETTERED = 15, SLA = 16 }
local E = { CREATED = 1, QUEUED = 2, OFFERED = 3, ASSIGNED = 4, RESPONDED = 5, ESCALATED = 6,
            RESOLVED = 7, ABANDONED = 8, RELEASED = 9, REQUEUED = 10, AGENT = 11, QUEUE = 12,
            MESSAGE = 13, RATED = 14, DEAD = 15, SLA_WARNING = 16, SLA_BREACH = 17,
            DEFERRED = 18, PROMISE_DUE = 19, RULE = 20 }
local SLA_NOTIFY, SLA_ESCALATE = 0, 1 -- 2 raise priority: the other case
local A_READY, A_AWAY, A_GONE = 1, 2, 4 -- 3 draining: set by the router
local ESC_HIERARCHICAL, ESC_FUNCTIONAL = 1, 2
local LEVEL_MAX = 3
local PRIORITY_MAX = 4

-- The ticket fields most transitions need (the hash also holds pb, subj, ...)
-- SLA fields (set at intake from the policy): ftgt/rtgt first-response and
-- resolution targets and w1..w3 longest waits per level (business-time
-- durations), bh business hours (see business_add), fdue/rdue the due times
-- they give, rstart when the resolution clock started (moved on by pauses),
-- warn (percent), act (action on breach), boost (ms earlier in the order),
-- pbt (boost per priority, "b1,b2,b3,b4"), paused (when the clock stopped, 0
-- if running), sf/sr/sw (stage of each clock: 0 running, 1 warned, 2
-- breached).
-- The policy fields never change after intake and are stored together in
-- one field, pol = "ftgt|rtgt|w1|w2|w3|warn|act|pbt|bh", read only when a
-- clock is computed (most transitions never do).
--
-- core() reads the fields every transition needs (CORE); the others (LAZY:
-- SLA state, promise, customer) are read from Redis the first time one of
-- them is used, and the policy is unpacked the first time a policy field is
-- (see TICKET below): an offer or a resolution never reads them.
local CORE = { 'state', 'level', 'dept', 'agent', 'att', 'prio', 'chan',
               'created', 'queued', 'frt', 'reqs', 'resp', 'k_person' }
local function policy_pack(t)
  return table.concat({ t.ftgt, t.rtgt, t.w1, t.w2, t.w3, t.warn, t.act, t.pbt, t.bh }, '|')
end

local function N(x) return string.format('%.0f', x) end

-- Service-level hooks. stats.lua (loaded after this file, in the same
-- library) fills them in; a transition calls KPI.x(...) when x is set, so
-- the measurements are taken in the same atomic step as the change. Hooks
-- read the ticket from `t` (core fields) and write only fields no
-- transition buffers (k_wait, k_rated), so nothing need be saved first.
local KPI = {}
local function kpi(name, ...)
  local hook = KPI[name]
  if hook then hook(...) end
end

local function tkey(id) return P .. 't:' .. id end
local function hkey(id) return P .. 'h:' .. id end
local function qkey(level, dept) return P .. 'q:' .. level .. ':' .. dept end
local function qtkey(level, dept) return P .. 'qt:' .. level .. ':' .. dept end
local function wkey(agent) return P .. 'w:' .. agent end
local function akey(agent) return P .. 'a:' .. agent end
local TIMERS, AGENTS, SEQ, DEADQ
local KEYS_OF -- the prefix TIMERS ... DEADQ were built with

-- Ticket hash writes are gathered per ticket and written with one HSET
-- (save), before anything reads the hash again and at the end of the call.
local function put(t, ...)
  local fields = DIRTY[t.id]
  if not fields then fields = {}; DIRTY[t.id] = fields end
  local pairs_ = { ... }
  for i = 1, #pairs_ do fields[#fields + 1] = pairs_[i] end
end

-- Timer changes too: one ZADD and one ZREM for all of a call's.
local function timer_set(member, due) TIMING[member] = due end
local function timer_del(member) TIMING[member] = false end

local function save()
  for id, fields in pairs(DIRTY) do
    if #fields > 0 then redis.call('HSET', tkey(id), unpack(fields)) end
  end
  DIRTY = {}
  for id, entries in pairs(HIST) do redis.call('RPUSH', hkey(id), unpack(entries)) end
  HIST = {}
  local add, del = {}, {}
  for member, due in pairs(TIMING) do
    if due then
      add[#add + 1] = due; add[#add + 1] = member
    else
      del[#del + 1] = member
    end
  end
  if #add > 0 then redis.call('ZADD', P .. 'timers', unpack(add)) end
  if #del > 0 then redis.call('ZREM', P .. 'timers', unpack(del)) end
  TIMING = {}
end

local function begin(args)
  P = args[1]
  NOW = tonumber(args[2])
  NOWS = args[2]
  EVENTS = {}
  DIRTY = {}
  TIMING = {}
  HIST = {}
  if not BATCH then TOUCHED = {} end
  if KEYS_OF ~= P then -- the same prefix call after call: build the names once
    KEYS_OF = P
    TIMERS, AGENTS, SEQ, DEADQ = P .. 'timers', P .. 'agents', P .. 'seq', P .. 'dead'
  end
end

-- The metatable of a ticket loaded by core(): the LAZY fields come from
-- Redis on first use (after writing what is pending, so they are current),
-- the policy fields from `pol`. (In a block: the library's top level has
-- room for 200 locals only.)
local TICKET
do
  local LAZY = { 'cust', 'fdue', 'rdue', 'rstart', 'ext', 'pol', 'boost', 'paused',
                 'sf', 'sr', 'sw', 'promised', 'vip' }
  local IS_LAZY = { cust = true, fdue = true, rdue = true, rstart = true, ext = true,
                    pol = true, boost = true, paused = true, sf = true, sr = true, sw = true,
                    promised = true, vip = true }
  local POLICY = { 'ftgt', 'rtgt', 'w1', 'w2', 'w3', 'warn', 'act', 'pbt', 'bh' }
  local IS_POLICY = { ftgt = true, rtgt = true, w1 = true, w2 = true, w3 = true, warn = true,
                      act = true, pbt = true, bh = true }
  TICKET = {
    __index = function(t, k)
      if IS_LAZY[k] then
        if rawget(t, '_lazy') then return nil end
        rawset(t, '_lazy', true)
        save()
        local v = redis.call('HMGET', tkey(rawget(t, 'id')), unpack(LAZY))
        for i, f in ipairs(LAZY) do
          if rawget(t, f) == nil then rawset(t, f, v[i] or '') end
        end
        return rawget(t, k)
      end
      if not IS_POLICY[k] then return nil end
      local pol = t.pol or ''
      local i = 1
      for v in string.gmatch(pol .. '|', '([^|]*)|') do
        if POLICY[i] then rawset(t, POLICY[i], v) end
        i = i + 1
      end
      for _, f in ipairs(POLICY) do
        if rawget(t, f) == nil then rawset(t, f, '') end
      end
      return rawget(t, k)
    end
  }
end

-- Load the core fields of a ticket (or `fields`, a superset), numbers
-- converted; nil if unknown.
local function core(id, fields)
  fields = fields or CORE
  local v = redis.call('HMGET', tkey(id), unpack(fields))
  if not v[1] then return nil end
  local t = setmetatable({ id = id }, TICKET)
  for i, f in ipairs(fields) do t[f] = v[i] or '' end
  t.state = tonumber(t.state); t.level = tonumber(t.level)
  t.att = tonumber(t.att); t.prio = tonumber(t.prio); t.chan = tonumber(t.chan)
  return t
end

-- Event field order; the router reads them by position (store.h). One
-- string per event, not an array: a reply of one element instead of 18 is
-- much less work for Redis and for the router's reply parser.
local NOTHING = {}
local function event(kind, t, o)
  o = o or NOTHING
  t = t or NOTHING
  -- One concatenation (one VM instruction, no table); no operand is nil.
  EVENTS[#EVENTS + 1] =
    kind .. '\0' .. (t.id or '') .. '\0' .. (o.level or t.level or 0) .. '\0' ..
    (o.dept or t.dept or '') .. '\0' .. (o.agent or t.agent or '') .. '\0' ..
    (o.from_level or 0) .. '\0' .. (o.from_dept or '') .. '\0' .. (o.reason or '') .. '\0' ..
    (o.depth or 0) .. '\0' .. (o.oldest or '0') .. '\0' .. (o.state or t.state or 0) .. '\0' ..
    (o.att or t.att or 0) .. '\0' .. (t.chan or 0) .. '\0' .. (t.prio or 0) .. '\0' ..
    (o.csat or 0) .. '\0' .. (o.agent_state or 0) .. '\0' .. (t.created or '0') .. '\0' ..
    (t.queued or '0')
end

-- History entries are gathered per ticket and appended with one RPUSH (save).
local function history_raw(id, json)
  local entries = HIST[id]
  if not entries then entries = {}; HIST[id] = entries end
  entries[#entries + 1] = json
end

local function history(id, kind, actor, fields)
  local e = fields or {}
  e.t = NOWS; e.k = kind; e.a = actor
  history_raw(id, cjson.encode(e))
end

local function num(x) return tonumber(x) or 0 end

---------------------------------------------------------------------------
-- SLA clocks. Each ticket has at most three timers in TIMERS:
-- "s:ID:f" first response, "s:ID:r" resolution, "s:ID:w" wait in the current
-- queue. A timer fires first at the warning share of its target, then at the
-- target; the stage on the ticket (sf/sr/sw) makes each fire exactly once.

-- start and due time of a clock, or nil when it is not running.
-- Business hours ("0111110,480,1080,-180": open days Sunday first, opening
-- and closing minute of local time, and the UTC offset in minutes at
-- intake; "" = 24/7): the time `duration` of business time after `start`.
local DAY_MS, MINUTE_MS = 86400000, 60000

local function business_add(spec, start, duration)
  if not spec or spec == '' or duration <= 0 then return start + duration end
  local days, open_min, close_min, offset = spec:match('^([01]+),(%d+),(%d+),(-?%d+)$')
  if not days then return start + duration end
  local off = tonumber(offset) * MINUTE_MS
  local t, left = start + off, duration
  for _ = 1, 800 do -- two years of days at most
    local day = t - t % DAY_MS
    local weekday = (math.floor(day / DAY_MS) + 4) % 7 -- 1970-01-01 was a Thursday
    local open, close = day + open_min * MINUTE_MS, day + close_min * MINUTE_MS
    if days:sub(weekday + 1, weekday + 1) == '1' and t < close then
      if t < open then t = open end
      if left <= close - t then return t + left - off end
      left = left - (close - t)
    end
    t = day + DAY_MS
  end
  return t - off
end

-- start, due and warning time of a clock, or nil when it is not running.
local function clock(t, kind)
  local start, target
  if kind == 'f' then
    if t.frt ~= '0' and t.frt ~= '' then return nil end
    start, target = num(t.created), num(t.ftgt)
  elseif kind == 'r' then
    if num(t.paused) > 0 then return nil end
    start, target = num(t.rstart), num(t.rtgt)
    if start == 0 then start = num(t.created) end
  else
    if t.state ~= QUEUED then return nil end
    start, target = num(t.queued), num(t['w' .. t.level])
  end
  if target <= 0 then return nil end
  return start, business_add(t.bh, start, target),
         business_add(t.bh, start, math.floor(target * num(t.warn) / 100))
end

-- `clocks` (optional): the three clocks as computed by all_clocks(t).
local function sla_schedule(t, kind, clocks)
  local member = 's:' .. t.id .. ':' .. kind
  local start, due, warn_at
  if clocks then
    local c = clocks[kind]
    if c then start, due, warn_at = c[1], c[2], c[3] end
  else
    start, due, warn_at = clock(t, kind)
  end
  local stage = num(t['s' .. kind])
  if not start or stage >= 2 then
    timer_del(member)
    return
  end
  timer_set(member, N(stage == 0 and warn_at or due))
end

local function sla_clear(t)
  timer_del('s:' .. t.id .. ':f')
  timer_del('s:' .. t.id .. ':r')
  timer_del('s:' .. t.id .. ':w')
end

-- The one place that orders a queue: the earliest of the ticket's SLA
-- deadlines (first response, resolution, longest wait at this level) comes
-- first, less its boost (VIP, priority); real-time channels, having shorter
-- targets, therefore go before e-mail. Without targets: creation time.
-- Each running clock of the ticket: kind -> { start, due, warning time }.
local function all_clocks(t)
  local out = {}
  for _, kind in ipairs({ 'f', 'r', 'w' }) do
    local start, due, warn_at = clock(t, kind)
    if start then out[kind] = { start, due, warn_at } end
  end
  return out
end

local function order(t, clocks)
  clocks = clocks or all_clocks(t)
  local d
  for _, c in pairs(clocks) do
    if not d or c[2] < d then d = c[2] end
  end
  return N((d or num(t.created)) - num(t.boost))
end

-- Returns the clocks it computed, for the caller's further scheduling.
local function enqueue(t)
  t.state = QUEUED
  t.sw = '0'
  put(t, 'sw', 0)
  local clocks = all_clocks(t)
  redis.call('ZADD', qkey(t.level, t.dept), order(t, clocks), t.id)
  redis.call('ZADD', qtkey(t.level, t.dept), t.queued, t.id)
  TOUCHED[t.level .. ':' .. t.dept] = { t.level, t.dept }
  sla_schedule(t, 'w', clocks)
  return clocks
end

local function dequeue(t)
  redis.call('ZREM', qkey(t.level, t.dept), t.id)
  redis.call('ZREM', qtkey(t.level, t.dept), t.id)
  timer_del('s:' .. t.id .. ':w')
  TOUCHED[t.level .. ':' .. t.dept] = { t.level, t.dept }
end

-- One QUEUE event per queue changed (by this call, or in a batch by any).
local function queue_events()
  for _, q in pairs(TOUCHED) do
    local level, dept = q[1], q[2]
    local oldest = redis.call('ZRANGE', qtkey(level, dept), 0, 0, 'WITHSCORES')
    event(E.QUEUE, nil, { level = level, dept = dept,
      depth = redis.call('ZCARD', qkey(level, dept)), oldest = oldest[2] or '0' })
  end
  TOUCHED = {}
end

-- An accepted offer ends an agent's run of missed offers: one HSET per
-- agent per batch, not per ticket (offer_expired writes it first if due).
local function flush_misses()
  for agent in pairs(CLEARED) do redis.call('HSET', akey(agent), 'misses', 0) end
  CLEARED = {}
end

-- Write what is pending and number the call's events (in a batch, the
-- batch numbers them all at its end, with one INCRBY).
local function finish(status, reason, payload)
  save()
  if BATCH then return { status, reason or '', 0, EVENTS, payload or {} } end
  if KPI.flush then KPI.flush() end
  flush_misses()
  queue_events()
  local seq = 0
  if #EVENTS > 0 then
    seq = redis.call('INCRBY', SEQ, #EVENTS)
  else
    seq = tonumber(redis.call('GET', SEQ) or '0')
  end
  return { status, reason or '', seq, EVENTS, payload or {} }
end

local function fail(status, reason)
  DIRTY = {}
  TIMING = {}
  HIST = {}
  return { status, reason, 0, {}, {} }
end

-- Give a held ticket back to its queue: agent lost, offer expired, release.
local function requeue(t, hkind, ekind, actor, reason)
  timer_del('o:' .. t.id .. ':' .. t.att)
  redis.call('SREM', wkey(t.agent), t.id)
  local was = t.agent
  t.state = QUEUED; t.agent = ''; t.queued = NOWS
  put(t, 'state', QUEUED, 'agent', '', 'queued', t.queued, 'updated', NOWS)
  history(t.id, hkind, actor, { r = reason })
  enqueue(t)
  event(ekind, t, { agent = was, reason = reason })
  event(E.QUEUED, t)
end

-- A result must come from the agent holding this very attempt.
local function holder_check(t, agent, att)
  if not t then return 'UNKNOWN_TICKET', 'no such ticket' end
  if t.agent ~= agent or t.att ~= tonumber(att) then
    return 'STALE', 'ticket ' .. t.id .. ' attempt ' .. att .. ' is not held by ' .. agent
  end
  if t.state ~= OFFERED and t.state ~= ASSIGNED then
    return 'STALE', 'ticket ' .. t.id .. ' is no longer open'
  end
  return nil
end

-- A resent result (same agent, attempt and request id) is answered, not
-- redone. `reqs` lists every result applied for the current attempt
-- (",agent:att:reqid,..."), because a worker that lost replies resends all of
-- its pending results in order, not only the last.
local function duplicate(t, agent, att, reqid)
  return t and string.find(t.reqs, ',' .. agent .. ':' .. att .. ':' .. reqid .. ',', 1, true)
         ~= nil
end

-- A ticket as the router shows it: { id, {RECORD fields}, {history...} }.
-- The field order is the router's (ticket.c, enum s_record_field).
local RECORD = { 'pb', 'prio', 'level', 'dept', 'state', 'agent', 'att', 'created',
                 'updated', 'queued', 'frt', 'resolved', 'csat' }

-- The packed content ("pb") is a key of its own, P b:ID, so that the ticket
-- hash keeps only short values and stays a compact listpack in Redis (a
-- 200-byte value would turn the whole hash into a hash table: 3 KB more per
-- ticket). Tickets written before that keep it in the hash, read as before.
local function bkey(id) return P .. 'b:' .. id end

local function ticket_record(id, with_history)
  save()
  local fields = redis.call('HMGET', tkey(id), unpack(RECORD))
  if not fields[1] then fields[1] = redis.call('GET', bkey(id)) end
  return { id, fields, with_history == false and {} or redis.call('LRANGE', hkey(id), 0, -1) }
end

-- What tier_assign reads of a ticket: the core fields and the rest of RECORD,
-- so that the offer's record needs no second read.
-- (Written out: the library's top level cannot call ipairs or unpack.)
local OFFER_READ = { 'state', 'level', 'dept', 'agent', 'att', 'prio', 'chan',
                     'created', 'queued', 'frt', 'reqs', 'resp', 'k_person',
                     'pb', 'updated', 'resolved', 'csat' }

-- The record of a ticket just offered (t read with OFFER_READ): its history
-- is what Redis holds plus what this call has not written yet.
local function offer_record(t)
  local fields = {}
  for i, f in ipairs(RECORD) do fields[i] = t[f] end
  if t.pb == '' then fields[1] = redis.call('GET', bkey(t.id)) end
  local hist = redis.call('LRANGE', hkey(t.id), 0, -1)
  for _, json in ipairs(HIST[t.id] or NOTHING) do hist[#hist + 1] = json end
  return { t.id, fields, hist }
end

---------------------------------------------------------------------------
-- Intake

-- Customer history, for rules: contact times and whether any ticket of the
-- customer was escalated.
local HISTORY_KEEP_MS = 90 * 86400000

local function customer_contact(cust, id)
  if cust == '' then return end
  local key = P .. 'cc:' .. cust
  redis.call('ZADD', key, NOWS, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', N(NOW - HISTORY_KEEP_MS))
  redis.call('PEXPIRE', key, N(HISTORY_KEEP_MS))
end

-- A rule on customer history; fires => its level/department apply.
local function history_rule_fires(cust, contacts, window, escalated)
  if cust == '' then return false end
  if contacts > 0 and
     redis.call('ZCOUNT', P .. 'cc:' .. cust, N(NOW - window), '+inf') < contacts - 1 then
    return false
  end
  if escalated and redis.call('EXISTS', P .. 'ce:' .. cust) == 0 then return false end
  return true
end

local function rule_decision(t, name, action)
  history(t.id, H.RULE, name, { x = action, au = true })
  event(E.RULE, t, { reason = name .. ': ' .. action })
end

-- args: prefix now ext level dept prio chan vip cust subject pb
--       ftgt rtgt w1 w2 w3 warn act boost pbt clear_timer business_hours
--       nhist hist... nhits (rule action)... nrules (name contacts window
--       escalated level dept)...
-- Content rules were applied by the router (their decisions come as hits);
-- rules on customer history are checked here, atomically with the intake.
local function tier_submit(_, a)
  begin(a)
  local ext = a[3]
  if a[21] ~= '' then timer_del(a[21]) end
  if ext ~= '' then
    local existing = redis.call('GET', P .. 'x:' .. ext)
    if existing then return finish('OK', '', { existing, 1 }) end
  end
  local id = tostring(redis.call('INCR', P .. 'nextid'))
  local t = { id = id, level = tonumber(a[4]), dept = a[5], prio = tonumber(a[6]),
              chan = tonumber(a[7]), vip = a[8], cust = a[9], created = NOWS,
              queued = NOWS, state = QUEUED, agent = '', att = 0, frt = '0',
              ftgt = a[12], rtgt = a[13], w1 = a[14], w2 = a[15], w3 = a[16], bh = a[22],
              warn = a[17], act = a[18], boost = a[19], pbt = a[20], paused = '0',
              sf = '0', sr = '0', sw = '0' }
  t.rstart = t.created
  t.fdue = num(t.ftgt) > 0 and N(business_add(t.bh, NOW, num(t.ftgt))) or '0'
  t.rdue = num(t.rtgt) > 0 and N(business_add(t.bh, NOW, num(t.rtgt))) or '0'
  local i = 23
  local nhist = tonumber(a[i]); i = i + 1
  local hist = { unpack(a, i, i + nhist - 1) }; i = i + nhist
  local nhits = tonumber(a[i]); i = i + 1
  local hits = {}
  for _ = 1, nhits do hits[#hits + 1] = { a[i], a[i + 1] }; i = i + 2 end
  local nrules = tonumber(a[i]); i = i + 1
  local counted = false -- some rule counts contacts: record this one
  for _ = 1, nrules do
    local name, contacts, window, escalated, level, dept =
      a[i], tonumber(a[i + 1]), tonumber(a[i + 2]), a[i + 3] == '1', tonumber(a[i + 4]), a[i + 5]
    i = i + 6
    if contacts > 0 then counted = true end
    if history_rule_fires(t.cust, contacts, window, escalated) then
      if level > t.level then t.level = level end
      if dept ~= '' and t.dept == '' then t.dept = dept end
      local what = {}
      if level > 0 then what[#what + 1] = 'level L' .. level end
      if dept ~= '' then what[#what + 1] = 'department ' .. dept end
      hits[#hits + 1] = { name, table.concat(what, ', ') }
    end
  end
  put(t, 'ext', ext, 'level', t.level, 'dept', t.dept, 'prio', a[6],
             'chan', a[7], 'vip', a[8], 'cust', a[9], 'subj', a[10],
             'state', QUEUED, 'agent', '', 'att', 0, 'created', t.created,
             'updated', t.created, 'queued', t.queued, 'frt', 0, 'resp', 0, 'reqs', ',',
             'fdue', t.fdue, 'rdue', t.rdue, 'rstart', t.rstart, 'pol', policy_pack(t),
             'boost', t.boost)
  for _, json in ipairs(hist) do history_raw(id, json) end
  redis.call('SET', bkey(id), a[11])
  if ext ~= '' then redis.call('SET', P .. 'x:' .. ext, id) end
  event(E.CREATED, t)
  for _, hit in ipairs(hits) do rule_decision(t, hit[1], hit[2]) end
  -- Contact times feed only rules on contacts: without one loaded, they
  -- are not recorded (a third of an intake's work in Redis).
  if counted then customer_contact(t.cust, id) end
  local clocks = enqueue(t)
  sla_schedule(t, 'f', clocks)
  sla_schedule(t, 'r', clocks)
  event(E.QUEUED, t)
  kpi('created', t)
  return finish('OK', '', { id, 0 })
end

-- Which rules on customer history would fire (tierctl rules test).
-- args: prefix now cust nrules (name contacts window escalated)...
local function tier_rules_history(_, a)
  begin(a)
  local fired, i = {}, 5
  for _ = 1, tonumber(a[4]) do
    if history_rule_fires(a[3], tonumber(a[i + 1]), tonumber(a[i + 2]), a[i + 3] == '1') then
      fired[#fired + 1] = a[i]
    end
    i = i + 4
  end
  return finish('OK', '', fired)
end

---------------------------------------------------------------------------
-- Dispatch

-- Per-channel limits of an agent ("1:3,3:1" = chat 3, phone 1) and what
-- it holds per channel; nil when it has no such limits.
local CHANNEL_SCAN = 16 -- queue entries looked at past a full channel's

local function channel_limits(agent)
  local spec = redis.call('HGET', akey(agent), 'ccap')
  if not spec or spec == '' then return nil end
  local limits = { cap = {}, held = {} }
  for chan, cap in string.gmatch(spec, '(%d+):(%d+)') do
    limits.cap[tonumber(chan)] = tonumber(cap)
  end
  for _, id in ipairs(redis.call('SMEMBERS', wkey(agent))) do
    local chan = tonumber(redis.call('HGET', tkey(id), 'chan') or '0')
    limits.held[chan] = (limits.held[chan] or 0) + 1
  end
  return limits
end

local function channel_full(limits, chan)
  local cap = limits.cap[chan]
  return cap ~= nil and (limits.held[chan] or 0) >= cap
end

-- The first entry of a queue the agent may take: the head, or with channel
-- limits the first of the next CHANNEL_SCAN whose channel is not full.
local function queue_head(q, limits)
  local n = limits and CHANNEL_SCAN or 1
  local entries = redis.call('ZRANGE', P .. 'q:' .. q, 0, n - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    if not limits or
       not channel_full(limits, tonumber(redis.call('HGET', tkey(entries[i]), 'chan') or '0')) then
      return entries[i], tonumber(entries[i + 1])
    end
  end
  return nil
end

-- Pop the best head among a worker's queues ("L:dept" names); nil if empty.
local function best_head(queues, limits)
  local best, bestscore, bestq
  for _, q in ipairs(queues) do
    local id, score = queue_head(q, limits)
    if id and (not best or score < bestscore) then
      best, bestscore, bestq = id, score, q
    end
  end
  return best, bestq
end

local function dead_letter(t, reason)
  dequeue(t)
  sla_clear(t)
  t.state = DEAD
  put(t, 'state', DEAD, 'agent', '', 'updated', NOWS)
  redis.call('ZADD', DEADQ, NOWS, t.id)
  history(t.id, H.DEAD_LETTERED, 'router', { r = reason })
  event(E.DEAD, t, { reason = reason })
end

local function offer(t, agent, offer_ms)
  t.state = OFFERED; t.agent = agent; t.updated = NOWS
  put(t, 'state', OFFERED, 'agent', agent, 'att', t.att, 'reqs', ',', 'updated', t.updated)
  redis.call('SADD', wkey(agent), t.id)
  timer_set('o:' .. t.id .. ':' .. t.att, N(NOW + offer_ms))
  history(t.id, H.OFFERED, agent, { r = 'attempt ' .. t.att })
  event(E.OFFERED, t)
end

-- args: prefix now agent n offer_ms max_attempts nq queue...
local function tier_assign(_, a)
  begin(a)
  local agent, n, offer_ms, max_att = a[3], tonumber(a[4]), tonumber(a[5]), tonumber(a[6])
  local queues = { unpack(a, 8, 7 + tonumber(a[7])) }
  local limits = channel_limits(agent)
  -- Redis has the last word on capacity: an offer made elsewhere in this
  -- batch (a promise coming due) counts too.
  local cap = tonumber(redis.call('HGET', akey(agent), 'cap') or '0')
  if cap > 0 then n = math.min(n, cap - redis.call('SCARD', wkey(agent))) end
  local offered = {}
  while #offered < n do
    local id, q = best_head(queues, limits)
    if not id then break end
    local t = core(id, OFFER_READ)
    if not t then   -- a queue entry whose ticket is gone: drop it
      redis.call('ZREM', P .. 'q:' .. q, id)
      redis.call('ZREM', P .. 'qt:' .. q, id)
    else
      dequeue(t)
      t.att = t.att + 1
      if t.att > max_att then
        dead_letter(t, 'delivered ' .. max_att .. ' times without a result')
      else
        offer(t, agent, offer_ms)
        offered[#offered + 1] = offer_record(t)
        if limits then limits.held[t.chan] = (limits.held[t.chan] or 0) + 1 end
      end
    end
  end
  if #offered < n then
    -- The router's picture of these queues was too rosy: report them all.
    for _, q in ipairs(queues) do
      TOUCHED[q] = { tonumber(q:match('^(%d+):')), q:match('^%d+:(.*)$') }
    end
  end
  return finish('OK', '', offered)
end

---------------------------------------------------------------------------
-- Worker results: args: prefix now agent id attempt reqid ...

local function result_begin(a)
  begin(a)
  local agent, id, att, reqid = a[3], a[4], a[5], a[6]
  local t = core(id)
  if duplicate(t, agent, att, reqid) then return t, 'DUP' end
  local err, why = holder_check(t, agent, att)
  if err then return nil, err, why end
  t.req = agent .. ':' .. att .. ':' .. reqid
  return t
end

-- Called once a result is known to be valid, before it changes anything else,
-- so that a refused result leaves the ticket untouched.
local function applying(t)
  if t.reqs == '' then t.reqs = ',' end
  t.reqs = t.reqs .. t.req .. ','
  put(t, 'reqs', t.reqs, 'updated', NOWS)
end

local function accept_offer(t)
  if t.state ~= OFFERED then return end
  timer_del('o:' .. t.id .. ':' .. t.att)
  put(t, 'state', ASSIGNED)
  CLEARED[t.agent] = true
  t.state = ASSIGNED
  history(t.id, H.ASSIGNED, t.agent)
  event(E.ASSIGNED, t)
  kpi('assigned', t)
end

local function tier_accept(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state }) end
  if not t then return fail(err, why) end
  applying(t)
  accept_offer(t)
  return finish('OK', '', { t.state })
end

-- extra args: text awaiting_customer. A question to the customer stops the
-- resolution clock until the customer's next message (tier_message).
local function tier_respond(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state }) end
  if not t then return fail(err, why) end
  applying(t)
  accept_offer(t)
  if t.frt == '0' then
    put(t, 'frt', NOWS)
    timer_del('s:' .. t.id .. ':f')
    kpi('first_response', t)
  end
  if a[8] == '1' and num(t.paused) == 0 then
    put(t, 'paused', NOWS)
    timer_del('s:' .. t.id .. ':r')
  end
  redis.call('HINCRBY', tkey(t.id), 'resp', 1)
  kpi('response', t)
  history(t.id, H.AGENT_RESPONSE, t.agent, { x = a[7] })
  event(E.RESPONDED, t)
  return finish('OK', '', { t.state })
end

-- Leave the agent's hands: no more offer timer, not in its held set.
local function unhold(t)
  timer_del('o:' .. t.id .. ':' .. t.att)
  redis.call('SREM', wkey(t.agent), t.id)
end

-- extra args: text followup_L1 followup_L2 followup_L3 (ms; 0: none; else a
-- follow-up task is created that long after the resolution, tier_timers "u:")
local function tier_resolve(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state }) end
  if not t then return fail(err, why) end
  applying(t)
  accept_offer(t)
  unhold(t)
  sla_clear(t)
  local followup = num(a[7 + t.level])
  if followup > 0 and t.ext:sub(1, 9) ~= 'followup:' then timer_set('u:' .. t.id, N(NOW + followup)) end
  t.state = RESOLVED
  put(t, 'state', RESOLVED, 'resolved', NOWS)
  history(t.id, H.RESOLVED, t.agent, { x = a[7] })
  event(E.RESOLVED, t)
  kpi('resolved', t)
  return finish('OK', '', { t.state })
end

-- Where an escalation goes: to_level 0 and no department = the next level.
-- Returns level, department, kind; or nil, code, reason.
local function escalation_target(t, to_level, to_dept)
  if to_level == 0 then
    to_level = t.level
    if to_dept == '' then to_level = t.level + 1 end
  end
  if to_level > LEVEL_MAX then
    return nil, 'UNKNOWN_LEVEL', 'ticket ' .. t.id .. ' is at L' .. t.level ..
           ' and there is no level above it'
  end
  if to_level == t.level and to_dept == t.dept then
    return nil, 'BAD_REQUEST', 'ticket ' .. t.id .. ' is already at L' .. t.level ..
           (t.dept ~= '' and (' ' .. t.dept) or '')
  end
  return to_level, to_dept, (to_level ~= t.level) and ESC_HIERARCHICAL or ESC_FUNCTIONAL
end

-- Move a ticket to another queue, by an agent or automatically (actor is
-- then the rule or "sla"). The caller has taken it out of its old place.
local function escalate(t, to_level, to_dept, kind, actor, reason, notes, automatic)
  local from_level, from_dept, agent = t.level, t.dept, t.agent
  t.level, t.dept, t.agent, t.queued = to_level, to_dept, '', NOWS
  put(t, 'state', QUEUED, 'agent', '', 'level', to_level,
             'dept', to_dept, 'queued', t.queued, 'updated', NOWS)
  redis.call('HINCRBY', tkey(t.id), 'esc', 1)
  if t.cust ~= '' then redis.call('SET', P .. 'ce:' .. t.cust, 1, 'PX', N(HISTORY_KEEP_MS)) end
  history(t.id, H.ESCALATED, actor, { r = reason, fl = from_level, tl = to_level,
          fd = from_dept, td = to_dept, e = kind, au = automatic or nil })
  if notes ~= '' then history(t.id, H.NOTE, actor, { x = notes }) end
  enqueue(t)
  event(E.ESCALATED, t, { agent = agent, from_level = from_level, from_dept = from_dept,
        reason = reason })
  kpi('escalated', t, from_level, from_dept, agent, kind)
  event(E.QUEUED, t)
end

-- extra args: to_level to_dept reason notes
local function tier_escalate(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state, t.level, t.dept }) end
  if not t then return fail(err, why) end
  local level, dept, kind = escalation_target(t, tonumber(a[7]), a[8])
  if not level then return fail(dept, kind) end
  applying(t)
  unhold(t)
  escalate(t, level, dept, kind, t.agent, a[9], a[10], false)
  return finish('OK', '', { t.state, t.level, t.dept })
end

-- extra args: until_ms reason. Keep a promise: the ticket leaves the agent
-- and comes back at until_ms (tier_timers "d:").
local function tier_defer(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state }) end
  if not t then return fail(err, why) end
  applying(t)
  accept_offer(t)
  unhold(t)
  local agent = t.agent
  t.state = DEFERRED
  put(t, 'state', DEFERRED, 'agent', '', 'promised', agent,
             'promise', a[7])
  timer_set('d:' .. t.id, a[7])
  history(t.id, H.DEFERRED, agent, { x = a[7], r = a[8] })
  event(E.DEFERRED, t, { agent = agent, reason = a[8] })
  kpi('deferred', t)
  return finish('OK', '', { t.state })
end

-- extra args: reason
local function tier_release(_, a)
  local t, err, why = result_begin(a)
  if err == 'DUP' then return finish('OK', '', { t.state }) end
  if not t then return fail(err, why) end
  applying(t)
  requeue(t, H.RELEASED, E.RELEASED, t.agent, a[7])
  return finish('OK', '', { t.state })
end

---------------------------------------------------------------------------
-- Customer side: args: prefix now id ...

local function open_ticket(id)
  local t = core(id)
  if not t then return nil, 'UNKNOWN_TICKET', 'no ticket with id ' .. id end
  if t.state == RESOLVED or t.state == ABANDONED or t.state == DEAD then
    return nil, 'INVALID_STATE', 'ticket ' .. id .. ' is closed'
  end
  return t
end

-- extra args: reason. Payload: agent attempt (who must be told), or '' 0.
local function tier_cancel(_, a)
  begin(a)
  local t, err, why = open_ticket(a[3])
  if not t then return fail(err, why) end
  local agent, att = t.agent, t.att
  if t.state == QUEUED then dequeue(t) end
  if agent ~= '' then unhold(t) end
  sla_clear(t)
  timer_del('d:' .. t.id)
  timer_del('p:' .. t.id)
  t.state = ABANDONED
  put(t, 'state', ABANDONED, 'agent', '', 'resolved', NOWS,
             'updated', NOWS)
  history(t.id, H.ABANDONED, 'customer', { r = a[4] })
  event(E.ABANDONED, t, { agent = agent, reason = a[4] })
  kpi('abandoned', t)
  return finish('OK', '', { agent, att })
end

-- extra args: text
local function tier_message(_, a)
  begin(a)
  local t, err, why = open_ticket(a[3])
  if not t then return fail(err, why) end
  put(t, 'updated', NOWS)
  if num(t.paused) > 0 then
    -- The customer answered: the resolution clock runs again, its due time
    -- moved by the time spent waiting on the customer.
    t.rstart = N((num(t.rstart) > 0 and num(t.rstart) or num(t.created)) + NOW - num(t.paused))
    if num(t.rtgt) > 0 then t.rdue = N(business_add(t.bh, num(t.rstart), num(t.rtgt))) end
    t.paused = '0'
    put(t, 'paused', 0, 'rdue', t.rdue, 'rstart', t.rstart)
    sla_schedule(t, 'r')
  end
  history(t.id, H.CUSTOMER_MESSAGE, 'customer', { x = a[4] })
  event(E.MESSAGE, t)
  kpi('customer_message', t)
  return finish('OK', '', {})
end

-- extra args: csat comment
local function tier_rate(_, a)
  begin(a)
  local t = core(a[3])
  if not t then return fail('UNKNOWN_TICKET', 'no ticket with id ' .. a[3]) end
  if t.state ~= RESOLVED then
    return fail('INVALID_STATE', 'ticket ' .. t.id .. ' is not resolved; rate it after')
  end
  put(t, 'csat', a[4], 'updated', NOWS)
  history(t.id, H.RATED, 'customer', { x = a[4], r = a[5] })
  event(E.RATED, t, { csat = tonumber(a[4]) })
  kpi('rated', t, tonumber(a[4]))
  return finish('OK', '', {})
end

-- args: prefix now id
local function tier_get(_, a)
  begin(a)
  if redis.call('EXISTS', tkey(a[3])) == 0 then
    return fail('UNKNOWN_TICKET', 'no ticket with id ' .. a[3])
  end
  return finish('OK', '', ticket_record(a[3]))
end

---------------------------------------------------------------------------
-- Dead letters

-- args: prefix now limit. Payload: ticket records, newest first, no history.
local function tier_dead_letters(_, a)
  begin(a)
  local out = {}
  for _, id in ipairs(redis.call('ZREVRANGE', DEADQ, 0, tonumber(a[3]) - 1)) do
    out[#out + 1] = ticket_record(id, false)
  end
  return finish('OK', '', out)
end

-- args: prefix now id level dept reason. level 0: keep level and department.
local function tier_requeue(_, a)
  begin(a)
  local t = core(a[3])
  if not t then return fail('UNKNOWN_TICKET', 'no ticket with id ' .. a[3]) end
  if t.state ~= DEAD then
    return fail('INVALID_STATE', 'ticket ' .. t.id .. ' is not a dead letter')
  end
  local level = tonumber(a[4])
  if level ~= 0 then t.level, t.dept = level, a[5] end
  redis.call('ZREM', DEADQ, t.id)
  t.state, t.agent, t.att, t.queued = QUEUED, '', 0, NOWS
  put(t, 'state', QUEUED, 'agent', '', 'att', 0, 'level', t.level,
             'dept', t.dept, 'queued', t.queued, 'updated', NOWS)
  history(t.id, H.REQUEUED, 'operator', { r = a[6] })
  enqueue(t)
  event(E.REQUEUED, t, { reason = a[6] })
  event(E.QUEUED, t)
  return finish('OK', '', { t.state })
end

---------------------------------------------------------------------------
-- Agents

-- Forget an agent: everything it holds goes back to the front of its queue.
local function agent_gone(agent, reason)
  local held = redis.call('SMEMBERS', wkey(agent))
  for _, id in ipairs(held) do
    local t = core(id)
    if t and t.agent == agent and (t.state == OFFERED or t.state == ASSIGNED) then
      requeue(t, H.REQUEUED, E.REQUEUED, 'router', reason)
    end
  end
  CLEARED[agent] = nil
  redis.call('DEL', wkey(agent), akey(agent))
  redis.call('ZREM', AGENTS, agent)
  redis.call('ZREM', TIMERS, 'a:' .. agent)
  event(E.AGENT, nil, { agent = agent, agent_state = A_GONE, reason = reason })
  return held
end

-- args: prefix now agent level depts capacity bot lease_ms nheld (id att)...
--       channel_limits ("chan:cap,...", may be empty)
-- Payload: { kept (id att)..., stale (id att)... } as two arrays.
local function tier_register(_, a)
  begin(a)
  local agent = a[3]
  local declared = {}
  for i = 1, tonumber(a[9]) do declared[a[8 + 2 * i]] = a[9 + 2 * i] end
  local kept, stale = {}, {}
  for _, id in ipairs(redis.call('SMEMBERS', wkey(agent))) do
    local t = core(id)
    if t and t.agent == agent and (t.state == OFFERED or t.state == ASSIGNED)
       and declared[id] == tostring(t.att) then
      kept[#kept + 1] = id; kept[#kept + 1] = t.att
      declared[id] = nil
    elseif t and t.agent == agent and (t.state == OFFERED or t.state == ASSIGNED) then
      requeue(t, H.REQUEUED, E.REQUEUED, 'router', 'agent ' .. agent ..
              ' registered again without it')
    else
      redis.call('SREM', wkey(agent), id)
    end
  end
  for id, att in pairs(declared) do stale[#stale + 1] = id; stale[#stale + 1] = att end
  redis.call('HSET', akey(agent), 'level', a[4], 'depts', a[5], 'cap', a[6], 'bot', a[7],
             'state', A_READY, 'seen', NOWS, 'misses', 0,
             'ccap', a[10 + 2 * tonumber(a[9])] or '')
  redis.call('ZADD', AGENTS, NOWS, agent)
  redis.call('ZADD', TIMERS, N(NOW + tonumber(a[8])), 'a:' .. agent)
  event(E.AGENT, nil, { agent = agent, level = tonumber(a[4]), agent_state = A_READY })
  return finish('OK', '', { kept, stale })
end

-- args: prefix now lease_ms agent...   Renews presence and the agent lease.
local function tier_heartbeat(_, a)
  begin(a)
  local due = N(NOW + tonumber(a[3]))
  for i = 4, #a do
    if redis.call('HSET', akey(a[i]), 'seen', NOWS) == 0 then
      redis.call('ZADD', AGENTS, NOWS, a[i])
      redis.call('ZADD', TIMERS, due, 'a:' .. a[i])
    else
      redis.call('DEL', akey(a[i]))   -- the agent was forgotten meanwhile
    end
  end
  return finish('OK', '', {})
end

-- args: prefix now agent state   (READY, AWAY, DRAINING)
local function tier_agent_state(_, a)
  begin(a)
  if redis.call('EXISTS', akey(a[3])) == 0 then
    return fail('NOT_REGISTERED', 'agent ' .. a[3] .. ' is not registered')
  end
  redis.call('HSET', akey(a[3]), 'state', a[4])
  event(E.AGENT, nil, { agent = a[3], agent_state = tonumber(a[4]) })
  return finish('OK', '', {})
end

-- args: prefix now agent reason. Payload: ids it held.
local function tier_agent_lost(_, a)
  begin(a)
  return finish('OK', '', agent_gone(a[3], a[4]))
end

---------------------------------------------------------------------------
-- Timers. TIMERS holds one member per pending deadline, scored by due time:
--   "o:ID:ATT"  offer not accepted in time        "a:AGENT"  agent lease
--   "s:ID:K"    SLA clock K (f, r, w)              "d:ID"     promise due
--   "p:ID"      promise check (was it kept?)       "u:ID"     follow-up due
-- Only due members are read, so idle tickets cost nothing, and each member
-- is removed as it is handled, in the same transaction: a timer fires once,
-- whatever happens to the router.

local SLA_NAMES = { f = 'first response', r = 'resolution', w = 'wait at this level' }

local function priority_boost(t, prio)
  local i = 0
  for b in string.gmatch(t.pbt or '', '[^,]+') do
    i = i + 1
    if i == prio then return num(b) end
  end
  return 0
end

-- On a breach while the ticket still waits in a queue: the policy's action.
local function sla_act(t, reason)
  local action = num(t.act)
  if t.state ~= QUEUED or action == SLA_NOTIFY then return end
  if action == SLA_ESCALATE and t.level < LEVEL_MAX then
    dequeue(t)
    escalate(t, t.level + 1, t.dept, ESC_HIERARCHICAL, 'sla', reason, '', true)
  elseif t.prio < PRIORITY_MAX then
    local old = t.prio
    t.prio = t.prio + 1
    t.boost = N(num(t.boost) - priority_boost(t, old) + priority_boost(t, t.prio))
    put(t, 'prio', t.prio, 'boost', t.boost)
    redis.call('ZADD', qkey(t.level, t.dept), order(t), t.id)
    local names = { 'low', 'normal', 'high', 'urgent' }
    history(t.id, H.SLA, 'sla', { x = 'priority raised to ' .. names[t.prio], r = reason,
            au = true })
  end
end

local function sla_fire(id, kind)
  local t = core(id)
  if not t or t.state == RESOLVED or t.state == ABANDONED or t.state == DEAD then return end
  local start, due = clock(t, kind)
  if not start then return end
  local field = 's' .. kind
  local stage = num(t[field])
  if stage == 0 then
    stage = 1
    t[field] = '1'
    put(t, field, 1)
    local reason = SLA_NAMES[kind] .. ' target ' .. t.warn .. '% used'
    history(id, H.SLA, 'sla', { x = 'warning', r = reason, au = true })
    event(E.SLA_WARNING, t, { reason = reason })
    kpi('sla_warning', t, kind)
  end
  if stage == 1 and NOW >= due then
    t[field] = '2'
    put(t, field, 2)
    local reason = SLA_NAMES[kind] .. ' target missed'
    history(id, H.SLA, 'sla', { x = 'breach', r = reason, au = true })
    event(E.SLA_BREACH, t, { reason = reason })
    kpi('sla_breach', t, kind)
    sla_act(t, reason)
  end
  sla_schedule(t, kind)
end

-- Ready, with room for one more ticket, and for one more of `chan` if it
-- has per-channel limits.
local function agent_available(agent, chan)
  local h = redis.call('HMGET', akey(agent), 'state', 'cap')
  if tonumber(h[1]) ~= A_READY or redis.call('SCARD', wkey(agent)) >= num(h[2]) then
    return false
  end
  local limits = channel_limits(agent)
  return not (limits and channel_full(limits, chan))
end

-- The promised time came: back to the same agent if it can take it now,
-- else to the front of its level's queue. Returns {agent, record} or nil.
local function promise_due(id, offer_ms, grace_ms)
  local t = core(id)
  if not t or t.state ~= DEFERRED then return nil end
  local agent = t.promised
  timer_set('p:' .. id, N(NOW + grace_ms))
  event(E.PROMISE_DUE, t, { agent = agent })
  if agent ~= '' and agent_available(agent, t.chan) then
    t.att = t.att + 1
    offer(t, agent, offer_ms)
    return { agent, ticket_record(id) }
  end
  t.queued = NOWS
  put(t, 'state', QUEUED, 'queued', t.queued, 'updated', NOWS)
  history(id, H.REQUEUED, 'router', { r = 'promise due; ' .. (agent ~= '' and agent or
          'the agent') .. ' is not available' })
  enqueue(t)
  redis.call('ZADD', qkey(t.level, t.dept), 0, id) -- a promise due now goes first
  event(E.QUEUED, t)
  return nil
end

-- A promise is kept if an agent took the ticket within the grace period.
local function promise_check(id)
  local t = core(id)
  if not t or (t.state ~= QUEUED and t.state ~= OFFERED and t.state ~= DEFERRED) then return end
  history(id, H.SLA, 'sla', { x = 'breach', r = 'promise missed', au = true })
  event(E.SLA_BREACH, t, { reason = 'promise missed' })
  kpi('promise_missed', t)
end

local function offer_expired(rest, revokes, away, max_misses)
  local id, att = rest:match('^(.*):(%d+)$')
  local t = id and core(id)
  if not (t and t.state == OFFERED and t.att == tonumber(att)) then return end
  local agent = t.agent
  requeue(t, H.REQUEUED, E.REQUEUED, 'router', 'offer to ' .. agent .. ' timed out')
  revokes[#revokes + 1] = agent; revokes[#revokes + 1] = id; revokes[#revokes + 1] = att
  if CLEARED[agent] then
    CLEARED[agent] = nil
    redis.call('HSET', akey(agent), 'misses', 0)
  end
  local misses = redis.call('HINCRBY', akey(agent), 'misses', 1)
  if max_misses > 0 and misses >= max_misses then
    redis.call('HSET', akey(agent), 'state', A_AWAY)
    event(E.AGENT, nil, { agent = agent, agent_state = A_AWAY,
          reason = misses .. ' offers in a row timed out' })
    away[#away + 1] = agent
  end
end

-- args: prefix now limit max_misses offer_ms grace_ms
-- Payload: { revokes (agent id attempt)..., lost agents, away agents,
--            offers (agent record)..., follow-ups (records) }
local FOLLOWUP_RETRY_MS = 60000

local function tier_timers(_, a)
  begin(a)
  local due = redis.call('ZRANGEBYSCORE', TIMERS, '-inf', a[2], 'LIMIT', 0, tonumber(a[3]))
  local revokes, lost, away, offers, followups = {}, {}, {}, {}, {}
  local max_misses, offer_ms, grace_ms = tonumber(a[4]), tonumber(a[5]), tonumber(a[6])
  for _, m in ipairs(due) do
    -- Handling one timer may move another of the list (an escalation
    -- re-arms the wait clock): act only on what is still due.
    save()
    local score = redis.call('ZSCORE', TIMERS, m)
    local kind, rest = m:sub(1, 1), m:sub(3)
    if not score or tonumber(score) > NOW then
      kind = ''
    else
      redis.call('ZREM', TIMERS, m)
    end
    if kind == 'a' then
      agent_gone(rest, 'agent lease expired')
      lost[#lost + 1] = rest
    elseif kind == 'o' then
      offer_expired(rest, revokes, away, max_misses)
    elseif kind == 's' then
      local id, clock_kind = rest:match('^(.*):(%a)$')
      if id then sla_fire(id, clock_kind) end
    elseif kind == 'd' then
      local o = promise_due(rest, offer_ms, grace_ms)
      if o then offers[#offers + 1] = o[1]; offers[#offers + 1] = o[2] end
    elseif kind == 'p' then
      promise_check(rest)
    elseif kind == 'u' then
      -- The router submits the follow-up (idempotently) and clears this
      -- timer then; until it does, it comes round again.
      if redis.call('EXISTS', tkey(rest)) == 1 then
        timer_set(m, N(NOW + FOLLOWUP_RETRY_MS))
        followups[#followups + 1] = ticket_record(rest)
      end
    end
  end
  return finish('OK', '', { revokes, lost, away, offers, followups })
end

---------------------------------------------------------------------------
-- Reading: queues, agents, snapshot. args: prefix now queue... ("L:dept")

local function queue_info(q)
  local oldest = redis.call('ZRANGE', P .. 'qt:' .. q, 0, 0, 'WITHSCORES')
  return { q, redis.call('ZCARD', P .. 'q:' .. q), oldest[2] or '0' }
end

local function tier_queues(_, a)
  begin(a)
  local out = {}
  for i = 3, #a do out[#out + 1] = queue_info(a[i]) end
  return finish('OK', '', out)
end

local function agents_list()
  local out = {}
  for _, agent in ipairs(redis.call('ZRANGE', AGENTS, 0, -1)) do
    local h = redis.call('HGETALL', akey(agent))
    if #h > 0 then
      out[#out + 1] = { agent, h, redis.call('SMEMBERS', wkey(agent)) }
    end
  end
  return out
end

local function tier_agents(_, a)
  begin(a)
  return finish('OK', '', agents_list())
end

-- Payload: { queues: { {q, {id prio chan queued subj}...} ... }, agents }
local function tier_snapshot(_, a)
  begin(a)
  local queues = {}
  for i = 3, #a do
    local entries = {}
    for _, id in ipairs(redis.call('ZRANGE', P .. 'q:' .. a[i], 0, -1)) do
      entries[#entries + 1] = { id, redis.call('HMGET', tkey(id), 'prio', 'chan',
                                                'queued', 'subj') }
    end
    queues[#queues + 1] = { a[i], entries }
  end
  return finish('OK', '', { queues, agents_list() })
end


-- Every call of one router loop turn, in one FCALL: the functions above run
-- one after the other, each atomically as before (and the whole batch too).
-- args: prefix count (name now argc args...)...   Returns the results in order.
local CALLS = {
  tier_submit = tier_submit,
  tier_assign = tier_assign,
  tier_accept = tier_accept,
  tier_respond = tier_respond,
  tier_resolve = tier_resolve,
  tier_escalate = tier_escalate,
  tier_release = tier_release,
  tier_defer = tier_defer,
  tier_cancel = tier_cancel,
  tier_message = tier_message,
  tier_rate = tier_rate,
  tier_requeue = tier_requeue,
  tier_register = tier_register,
  tier_heartbeat = tier_heartbeat,
  tier_agent_state = tier_agent_state,
  tier_agent_lost = tier_agent_lost,
  tier_timers = tier_timers,
  tier_rules_history = tier_rules_history,
  tier_get = tier_get,
  tier_dead_letters = tier_dead_letters,
  tier_queues = tier_queues,
  tier_agents = tier_agents,
  tier_snapshot = tier_snapshot,
}

local function tier_batch(_, a)
  local prefix, results, i = a[1], {}, 3
  BATCH = true
  TOUCHED = {}
  for c = 1, tonumber(a[2]) do
    local fn, argc = CALLS[a[i]], tonumber(a[i + 2])
    local args = { prefix, a[i + 1] }
    for k = 1, argc do args[k + 2] = a[i + 2 + k] end
    if fn then
      results[c] = fn(nil, args)
    else
      results[c] = { 'INTERNAL', 'no function ' .. tostring(a[i]), 0, {}, {} }
    end
    i = i + 3 + argc
  end
  BATCH = false
  if KPI.flush then KPI.flush() end
  flush_misses()
  -- The queues' new depths go with the last call; then one INCRBY numbers
  -- every event of the batch, in order.
  if #results > 0 then
    EVENTS = results[#results][4]
    queue_events()
  end
  local total = 0
  for _, r in ipairs(results) do total = total + #r[4] end
  local last = total > 0 and redis.call('INCRBY', SEQ, total)
               or tonumber(redis.call('GET', SEQ) or '0')
  local seq = last - total
  for _, r in ipairs(results) do
    seq = seq + #r[4]
    r[3] = seq
  end
  return results
end

-- Called on its own (tools, tests), a function numbers its own events.
local function direct(fn)
  return function(keys, args)
    BATCH = false
    return fn(keys, args)
  end
end

-- After Redis was lost, the router does not know what the lost batches
-- did: some may have offered tickets whose offers it never sent. For one
-- agent: how many tickets it holds in Redis, and the records of those still
-- only offered (the router offers them again; a worker ignores an offer of
-- an attempt it holds). args: prefix now agent. Payload: { held, {records} }
CALLS.tier_held = function(_, a)
  begin(a)
  local agent = a[3]
  local held, records = redis.call('SMEMBERS', wkey(agent)), {}
  for _, id in ipairs(held) do
    local t = core(id, OFFER_READ)
    if t and t.agent == agent and t.state == OFFERED then records[#records + 1] = offer_record(t) end
  end
  return finish('OK', '', { #held, records })
end

redis.register_function('tier_batch', tier_batch)
redis.register_function{ function_name = 'tier_held', callback = direct(CALLS.tier_held),
                         flags = { 'no-writes' } }
redis.register_function('tier_submit', direct(tier_submit))
redis.register_function('tier_assign', direct(tier_assign))
redis.register_function('tier_accept', direct(tier_accept))
redis.register_function('tier_respond', direct(tier_respond))
redis.register_function('tier_resolve', direct(tier_resolve))
redis.register_function('tier_escalate', direct(tier_escalate))
redis.register_function('tier_release', direct(tier_release))
redis.register_function('tier_defer', direct(tier_defer))
redis.register_function{ function_name = 'tier_rules_history', callback = direct(tier_rules_history),
                         flags = { 'no-writes' } }
redis.register_function('tier_cancel', direct(tier_cancel))
redis.register_function('tier_message', direct(tier_message))
redis.register_function('tier_rate', direct(tier_rate))
redis.register_function{ function_name = 'tier_get', callback = direct(tier_get),
                         flags = { 'no-writes' } }
redis.register_function{ function_name = 'tier_dead_letters', callback = direct(tier_dead_letters),
                         flags = { 'no-writes' } }
redis.register_function('tier_requeue', direct(tier_requeue))
redis.register_function('tier_register', direct(tier_register))
redis.register_function('tier_heartbeat', direct(tier_heartbeat))
redis.register_function('tier_agent_state', direct(tier_agent_state))
redis.register_function('tier_agent_lost', direct(tier_agent_lost))
redis.register_function('tier_timers', direct(tier_timers))
redis.register_function{ function_name = 'tier_queues', callback = direct(tier_queues),
                         flags = { 'no-writes' } }
redis.register_function{ function_name = 'tier_agents', callback = direct(tier_agents),
                         flags = { 'no-writes' } }
redis.register_function{ function_name = 'tier_snapshot', callback = direct(tier_snapshot),
                         flags = { 'no-writes' } }
