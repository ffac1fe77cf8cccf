#!lua name=tierd
--
-- stats.lua — service-level aggregates in Redis: the only Redis functions
-- tierd has. Every ticket transition is decided and recorded by the router
-- itself (router/lifecycle.c, docs/data-model.md); what is left here works on
-- aggregates, never on tickets: adding a batch's counts (tier_kpi), rolling
-- minutes up into hours and days (tier_rollup), and reading a report
-- (tier_report, read-only).
--
-- Aggregates, never tickets: a report over a day or a month reads a bounded
-- number of hashes, whatever the volume. One hash per time bucket,
-- resolution and dimension (docs/metrics.md has the whole layout):
--
--   {P}k:{res}:{start}:{dim}   res   m (minute), h (hour), d (day)
--                              start bucket start, ms since the epoch (UTC)
--                              dim   chan, level, dept, agent
--   field "{value}|{counter}"  e.g. "1|created" (channel 1 = chat),
--                              "2|frt_sum" (level L2), "|resolved" (the
--                              general queue), "ana|one_touch" (agent ana)
--
-- Every event is counted in the minute it happens (a resolution in the
-- minute it was resolved), under the ticket's channel, level, department and
-- agent at that moment (router/kpi.c gathers them per batch). There is no
-- "all" dimension: every ticket has a channel, so the totals are the sum of
-- the channel fields.
--
-- Minutes roll up into hours and days once they are over: the router's cron
-- calls tier_rollup every 10 s, which adds the fields of finished minutes
-- listed in {P}k:pending to their hour and day buckets ({P}k:done is the last
-- minute rolled up). Writing each count once instead of three times keeps a
-- batch cheap (the router writes minute buckets with plain HINCRBYs); a late
-- count (a clock that went back) for a minute already rolled up comes through
-- tier_kpi, which writes it to all three at once.
--
-- Calling convention: FCALL <name> 0 <prefix> <now_ms> <args...>. Numbers
-- are passed and stored as decimal strings (see N): Redis would print large
-- Lua numbers in exponent form.

local P   -- key prefix, e.g. "tier:"
local NOW -- the router's clock, ms since the epoch

local function N(x) return string.format('%.0f', x) end

local function begin(args)
  P = args[1]
  NOW = tonumber(args[2])
end

local MINUTE, HOUR, DAY = 60000, 3600000, 86400000
local DAY_S = 86400
local MINUTE_KEEP_S = 2 * DAY_S  -- minute buckets live this long after they end
local HOUR_KEEP_S = 90 * DAY_S   -- hour buckets too; day buckets are kept
local ROLLUPS = {                -- { name, bucket length ms, kept s (nil = always) }
  { 'h', HOUR, HOUR_KEEP_S },
  { 'd', DAY, nil },
}
local DIMS = { 'chan', 'level', 'dept', 'agent' }

-- Resolution-time histogram: field rh<i> counts resolutions that took at
-- most RES_EDGES[i] ms (and more than the edge before); rh<#RES_EDGES + 1>
-- counts the longer ones. tier_report returns the edges with the counts, so
-- the router estimates p50/p90 without a copy of this table.
local RES_EDGES = { 1000, 5000, 10000, 30000, 60000, 120000, 300000, 600000,
                    900000, 1800000, 3600000, 7200000, 14400000, 28800000,
                    43200000, 86400000, 172800000, 259200000, 604800000,
                    1209600000, 2592000000 }

local function res_bucket(ms)
  for i, edge in ipairs(RES_EDGES) do
    if ms <= edge then return i end
  end
  return #RES_EDGES + 1
end

local function bucket_key(name, start, dim)
  return P .. 'k:' .. name .. ':' .. N(start) .. ':' .. dim
end

-- Add a HGETALL array to a hash (a minute into its hour or day).
local function add_flat(key, fields)
  local fresh = false
  for i = 1, #fields, 2 do
    local n = tonumber(fields[i + 1])
    if redis.call('HINCRBY', key, fields[i], n) == n then fresh = true end
  end
  return fresh
end

-- Expire a bucket keep_s after it ends; nil: never.
local function keep(key, bucket_end, keep_s)
  if keep_s then redis.call('EXPIREAT', key, N(bucket_end / 1000 + keep_s)) end
end

local function done_key() return P .. 'k:done' end
local function pending_key() return P .. 'k:pending' end

-- Add a minute's fields (or, for a late event, its counts) to the hour and
-- day buckets it falls in.
local function roll_into(minute, dim, add, ...)
  for _, r in ipairs(ROLLUPS) do
    local start = minute - minute % r[2]
    local key = bucket_key(r[1], start, dim)
    if add(key, ...) then keep(key, start + r[2], r[3]) end
  end
end

local function roll_minute(minute)
  for _, dim in ipairs(DIMS) do
    roll_into(minute, dim, add_flat, redis.call('HGETALL', bucket_key('m', minute, dim)))
  end
end

-- Roll up at most `limit` finished minutes; returns the last minute rolled
-- up (-1: none ever): an event for that minute or an earlier one is late.
-- Empty minutes cost nothing: only minutes with data are pending, and with
-- nothing to roll up nothing is written.
local function rollup(limit)
  local last = NOW - NOW % MINUTE - MINUTE
  local done = tonumber(redis.call('GET', done_key()) or '-1')
  if done >= last then return done end
  local due = redis.call('ZRANGEBYSCORE', pending_key(), '-inf', N(last), 'LIMIT', 0, limit)
  if #due == 0 then return done end
  for _, minute in ipairs(due) do
    roll_minute(tonumber(minute))
    redis.call('ZREM', pending_key(), minute)
  end
  -- Every pending minute up to `last` is rolled up, unless the limit stopped us.
  if #due == limit then last = tonumber(due[#due]) end
  redis.call('SET', done_key(), N(last))
  return last
end

-- Add gathered fields (field -> increment) to a hash; true when one was new.
local function add_fields(key, fields)
  local fresh = false
  for field, n in pairs(fields) do
    if redis.call('HINCRBY', key, field, n) == n then fresh = true end
  end
  return fresh
end

-- args: prefix now n (minute dim field increment)...
-- A batch's counts (router/kpi.c), already added up per (minute, dimension,
-- field): each minute bucket is written once; a late minute (one already
-- rolled up) straight into its hour and day too.
local function tier_kpi(_, a)
  begin(a)
  local rolled = rollup(1)
  local groups = {}
  local i = 4
  for _ = 1, tonumber(a[3]) do
    local slot = a[i] .. '|' .. a[i + 1]
    local g = groups[slot]
    if not g then
      g = { minute = tonumber(a[i]), dim = a[i + 1], fields = {} }
      groups[slot] = g
    end
    g.fields[a[i + 2]] = (g.fields[a[i + 2]] or 0) + tonumber(a[i + 3])
    i = i + 4
  end
  local pending = {}
  for _, g in pairs(groups) do
    local key = bucket_key('m', g.minute, g.dim)
    if add_fields(key, g.fields) then
      keep(key, g.minute + MINUTE, MINUTE_KEEP_S)
      pending[g.minute] = true
    end
    if g.minute <= rolled then
      roll_into(g.minute, g.dim, add_fields, g.fields)
      pending[g.minute] = nil
    end
  end
  for minute in pairs(pending) do redis.call('ZADD', pending_key(), N(minute), N(minute)) end
  return 0
end

---------------------------------------------------------------------------
-- Reports

-- Widen [since, until) to whole minutes, and to whole hours or days where
-- the finer buckets have expired: the range reported is the range read.
local function widen(since, till)
  since, till = since - since % MINUTE, till + (MINUTE - till % MINUTE) % MINUTE
  for _, r in ipairs({ { MINUTE_KEEP_S, HOUR }, { HOUR_KEEP_S, DAY } }) do
    local expired, coarser = NOW - r[1] * 1000, r[2]
    if since < expired then since = since - since % coarser end
    if till < expired then till = till + (coarser - till % coarser) % coarser end
  end
  return since, till
end

-- Where the hours and days stop being complete: the first minute still
-- pending (every minute before it is rolled up, or had no data), else the
-- current minute.
local function rolled_until()
  local first = redis.call('ZRANGE', pending_key(), 0, 0)[1]
  local now_minute = NOW - NOW % MINUTE
  return first and math.min(tonumber(first), now_minute) or now_minute
end

-- The buckets covering [since, until): the largest that fit whole, so a
-- month is about 30 days, 46 hours and 118 minutes. An hour or a day is
-- read only when it ends by `rolled` (rolled_until). Days are left out when
-- rows are by hour of day, unless their hours have expired.
local function plan(since, till, days, rolled)
  local out = {}
  local at = since
  local hours_gone = NOW - HOUR_KEEP_S * 1000
  local function fits(length)
    return at % length == 0 and at + length <= till and at + length <= rolled
  end
  while at < till do
    local name, length = 'm', MINUTE
    if fits(DAY) and (days or at + DAY <= hours_gone) then
      name, length = 'd', DAY
    elseif fits(HOUR) then
      name, length = 'h', HOUR
    end
    out[#out + 1] = { name, at }
    at = at + length
  end
  return out
end

-- Add a bucket hash's fields to rows[value][counter]; `group` replaces the
-- value (the hour a bucket falls in, for rows by time).
local function accumulate(rows, hash, group)
  for i = 1, #hash, 2 do
    local value, counter = hash[i]:match('^(.*)|([%w_]+)$')
    if value then
      value = group or value
      local row = rows[value]
      if not row then row = {}; rows[value] = row end
      row[counter] = (row[counter] or 0) + tonumber(hash[i + 1])
    end
  end
end

local function rows_out(rows)
  local out = {}
  for value, counters in pairs(rows) do
    local flat = {}
    for counter, n in pairs(counters) do
      flat[#flat + 1] = counter; flat[#flat + 1] = N(n)
    end
    out[#out + 1] = { value, flat }
  end
  return out
end

local REPORT_DIMS = { channel = 'chan', level = 'level', department = 'dept', agent = 'agent' }

-- args: prefix now since_ms until_ms by
-- by: "" (total only), channel, level, department, agent, hour, day.
-- Payload: { since, until, by, edges, channel rows, rows } where a row is
-- { value, { counter, n, ... } }; since/until are the range actually read;
-- edges are the resolution histogram's (ms). Channel rows are always there
-- (the total and its grade come from them); rows are by `by`: a channel
-- number, level number, department, agent, or for hour and day the start
-- (ms) of the UTC hour, which the router turns into local time.
local function tier_report(_, a)
  begin(a)
  local by = a[5]
  local by_time = by == 'hour' or by == 'day'
  local dim = REPORT_DIMS[by]
  local since, till = widen(tonumber(a[3]), tonumber(a[4]))
  local channels, rows = {}, {}
  for _, b in ipairs(plan(since, till, not by_time, rolled_until())) do
    local base = P .. 'k:' .. b[1] .. ':' .. N(b[2]) .. ':'
    local hash = redis.call('HGETALL', base .. 'chan')
    accumulate(channels, hash)
    if by_time then
      accumulate(rows, hash, N(b[2] - b[2] % HOUR))
    elseif dim and dim ~= 'chan' then
      accumulate(rows, redis.call('HGETALL', base .. dim))
    end
  end
  local edges = {}
  for i, edge in ipairs(RES_EDGES) do edges[i] = N(edge) end
  return { N(since), N(till), by, edges, rows_out(channels), rows_out(rows) }
end

-- args: prefix now limit. Rolls up at most `limit` finished minutes (the
-- router's cron, every 10 s). Returns the last minute rolled up.
local function tier_rollup(_, a)
  begin(a)
  return N(rollup(tonumber(a[3])))
end

redis.register_function('tier_kpi', tier_kpi)
redis.register_function('tier_rollup', tier_rollup)
redis.register_function{ function_name = 'tier_report', callback = tier_report,
                         flags = { 'no-writes' } }
