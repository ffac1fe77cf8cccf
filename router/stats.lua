--
-- stats.lua — service-level measurements, in the same Redis function library
-- as store.lua (appended to it at build time), so that every KPI is recorded
-- in the same atomic step as the state change it measures.
--
-- It fills in the KPI hooks store.lua calls (KPI.created, KPI.assigned,
-- KPI.first_response, KPI.response, KPI.customer_message, KPI.escalated,
-- KPI.resolved, KPI.abandoned, KPI.rated) and registers tier_report.
--
-- Aggregates, never tickets: a report over a day or a month reads a bounded
-- number of hashes, whatever the volume, and several routers sharing one
-- Redis add to the same counters. One hash per time bucket, resolution and
-- dimension (docs/metrics.md has the whole layout):
--
--   {P}k:{res}:{start}:{dim}   res   m (minute), h (hour), d (day)
--                              start bucket start, ms since the epoch (UTC)
--                              dim   chan, level, dept, agent
--   field "{value}|{counter}"  e.g. "1|created" (channel 1 = chat),
--                              "2|frt_sum" (level L2), "|resolved" (the
--                              general queue), "ana|one_touch" (agent ana)
--
-- Every event is counted in the bucket of the moment it happens (a
-- resolution in the minute it was resolved), at each resolution, under the
-- ticket's channel, level, department and agent at that moment. There is no
-- "all" dimension: every ticket has a channel, so the totals are the sum of
-- the channel fields.
--
-- Besides the aggregates, three fields in the ticket hash carry what a later
-- measurement needs: k_person (a person, not a bot, was assigned it once),
-- k_wait (since when the customer waits for an answer; absent = since
-- creation, 0 = answered) and k_rated (its first rating was counted).

local MINUTE, HOUR, DAY = 60000, 3600000, 86400000
local DAY_S = 86400
local MINUTE_KEEP_S = 2 * DAY_S  -- minute buckets live this long after they end
local HOUR_KEEP_S = 90 * DAY_S   -- hour buckets too; day buckets are kept
local RESOLUTIONS = {            -- { name, bucket length ms, kept s (nil = always) }
  { 'm', MINUTE, MINUTE_KEEP_S },
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

-- Add counts (counter -> increment) to the buckets of NOW, under the
-- ticket's channel, level, department and agent, or the level, department
-- and agent given in `at` (an escalation counts where it left from).
local function tally(t, counts, at)
  at = at or {}
  local values = { chan = tostring(t.chan), level = tostring(at.level or t.level),
                   dept = at.dept or t.dept, agent = at.agent or t.agent }
  for _, r in ipairs(RESOLUTIONS) do
    local name, length, keep = r[1], r[2], r[3]
    local start = NOW - NOW % length
    local base = P .. 'k:' .. name .. ':' .. N(start) .. ':'
    for _, dim in ipairs(DIMS) do
      local value = values[dim]
      if dim ~= 'agent' or value ~= '' then
        local key = base .. dim
        local created_field = false
        for counter, n in pairs(counts) do
          if n ~= 0 and redis.call('HINCRBY', key, value .. '|' .. counter, n) == n then
            created_field = true
          end
        end
        -- A new key always starts with a new field: it gets its expiry here,
        -- and an old key is only touched again when a counter first appears.
        if created_field and keep then
          redis.call('EXPIREAT', key, N((start + length) / 1000 + keep))
        end
      end
    end
  end
end

local function is_bot(agent)
  return agent ~= '' and redis.call('HGET', akey(agent), 'bot') == '1'
end

KPI.created = function(t)
  tally(t, { created = 1 })
end

-- An assignment is a ticket handled at a level: the base of the escalation
-- rate. Whether a person ever held the ticket decides self-service later.
KPI.assigned = function(t)
  if not is_bot(t.agent) then redis.call('HSET', tkey(t.id), 'k_person', 1) end
  tally(t, { handled = 1 })
end

-- t.fdue: when the first response is due (ms since the epoch, set at
-- intake from the SLA policy); 0 = no target, and it counts in neither.
KPI.first_response = function(t)
  local counts = { responded = 1, frt_sum = NOW - tonumber(t.created) }
  local due = tonumber(t.fdue) or 0
  if due > 0 then
    if NOW <= due then counts.sla_met = 1 else counts.sla_missed = 1 end
  end
  tally(t, counts)
end

-- A response time is how long the customer had been waiting: since the
-- ticket was created, or since their first message after the last answer.
-- A second response in a row answers nobody and is not timed.
KPI.response = function(t)
  local since = redis.call('HGET', tkey(t.id), 'k_wait')
  since = since and tonumber(since) or tonumber(t.created)
  if since > 0 then tally(t, { resp_n = 1, resp_sum = NOW - since }) end
  redis.call('HSET', tkey(t.id), 'k_wait', 0)
end

KPI.customer_message = function(t)
  if redis.call('HGET', tkey(t.id), 'k_wait') == '0' then
    redis.call('HSET', tkey(t.id), 'k_wait', N(NOW))
  end
end

KPI.escalated = function(t, from_level, from_dept, agent, kind)
  local counts = { escalated = 1 }
  counts[kind == ESC_HIERARCHICAL and 'esc_h' or 'esc_f'] = 1
  tally(t, counts, { level = from_level, dept = from_dept, agent = agent })
end

-- One-touch: exactly one agent response before the resolution.
-- Self-service: resolved by a bot, and no person was ever assigned it.
KPI.resolved = function(t)
  local took = NOW - tonumber(t.created)
  local counts = { resolved = 1, res_sum = took }
  counts['rh' .. res_bucket(took)] = 1
  local f = redis.call('HMGET', tkey(t.id), 'resp', 'k_person')
  if f[1] == '1' then counts.one_touch = 1 end
  if not f[2] and is_bot(t.agent) then counts.self_service = 1 end
  tally(t, counts)
end

KPI.abandoned = function(t)
  tally(t, { abandoned = 1 })
end

-- Only a ticket's first rating counts: a resent or changed rating would
-- otherwise count twice, in buckets that may be gone by then.
KPI.rated = function(t, csat)
  if redis.call('HSETNX', tkey(t.id), 'k_rated', 1) == 0 then return end
  tally(t, { ratings = 1, rating_sum = csat, ratings_4_5 = csat >= 4 and 1 or 0 })
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

-- The buckets covering [since, until): the largest that fit whole, so a
-- month is about 30 days, 46 hours and 118 minutes. Days are left out when
-- rows are by hour of day (unless the hours have expired).
local function plan(since, till, days)
  local out = {}
  local at = since
  local hours_gone = NOW - HOUR_KEEP_S * 1000
  while at < till do
    local name, length = 'm', MINUTE
    if at % DAY == 0 and at + DAY <= till and (days or at + DAY <= hours_gone) then
      name, length = 'd', DAY
    elseif at % HOUR == 0 and at + HOUR <= till then
      name, length = 'h', HOUR
    end
    out[#out + 1] = { name, at, length }
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
  for _, b in ipairs(plan(since, till, not by_time)) do
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
  return finish('OK', '', { N(since), N(till), by, edges, rows_out(channels),
                            rows_out(rows) })
end

redis.register_function{ function_name = 'tier_report', callback = tier_report,
                         flags = { 'no-writes' } }
