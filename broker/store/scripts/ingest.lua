-- One or more reports, each all-or-nothing, in one round trip (a batch is many; a post, one).
-- KEYS[1] audit stream, KEYS[2] the request's nonce key; then per report its hash, the
--   originator's quota hash, one inbox per recipient and one quota hash per recipient
-- ARGV[1] nonce ttl in seconds (0: the nonce was checked already), ARGV[2] retention_ms,
--   ARGV[3] report count, ARGV[4..7] the quotas: inbox reports, inbox bytes, originator
--   reports, originator bytes; then per report: id, envelope, digest, originator,
--   accepted_ms, label, suite, grants, audit entry, recipient count, the recipient ids
-- Returns {'replayed'}, or per report four values: outcome, accepted_ms, positions, grants;
--   for a report over a quota: 'over_quota', which ('inbox' or 'originator'), the partner,
--   the seconds after which it may fit.
if ARGV[1] ~= '0' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return {'replayed'} end
end
local HOUR = 3600000
local retention = tonumber(ARGV[2])
local max_ir, max_ib = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_or, max_ob = tonumber(ARGV[6]), tonumber(ARGV[7])
local function num(key, field) return tonumber(redis.call('HGET', key, field) or '0') end
-- Drop the originator's hours whose reports have all expired (at most the window's hours).
local function expire_hours(quota, now_ms)
  local first = redis.call('HGET', quota, 'first_hour')
  if not first then return end
  first = tonumber(first)
  local last = num(quota, 'last_hour')
  local stop = math.min(math.floor((now_ms - retention) / HOUR), last + 1)
  if first >= stop then return end
  local dr, db = 0, 0
  for h = first, stop - 1 do
    local r = redis.call('HGET', quota, 'r:' .. h)
    if r then
      dr = dr + tonumber(r)
      db = db + num(quota, 'b:' .. h)
      redis.call('HDEL', quota, 'r:' .. h, 'b:' .. h)
    end
  end
  redis.call('HINCRBY', quota, 'stored_reports', -dr)
  redis.call('HINCRBY', quota, 'stored_bytes', -db)
  if stop > last then
    redis.call('HDEL', quota, 'first_hour', 'last_hour')
  else
    redis.call('HSET', quota, 'first_hour', stop)
  end
end
local out = {}
local k, a = 3, 8
for _ = 1, tonumber(ARGV[3]) do
  local report, oquota = KEYS[k], KEYS[k + 1]
  local id, envelope, digest, originator = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local accepted_ms, grants, n = ARGV[a + 4], ARGV[a + 7], tonumber(ARGV[a + 9])
  local size = #envelope
  local existing = redis.call('HGET', report, 'digest')
  local over = nil
  if not existing then
    local now_ms = tonumber(accepted_ms)
    expire_hours(oquota, now_ms)
    if num(oquota, 'stored_reports') + 1 > max_or or num(oquota, 'stored_bytes') + size > max_ob
    then
      -- Room comes back when the oldest hour of its reports expires.
      local first = num(oquota, 'first_hour')
      local wait = math.ceil(((first + 1) * HOUR + retention - now_ms) / 1000)
      over = {'over_quota', 'originator', originator, math.max(1, wait)}
    else
      for i = 1, n do
        local quota = KEYS[k + 1 + n + i]
        if num(quota, 'queued_reports') + 1 > max_ir or num(quota, 'queued_bytes') + size > max_ib
        then
          over = {'over_quota', 'inbox', ARGV[a + 9 + i], 60}
          break
        end
      end
    end
  end
  if over then
    for _, v in ipairs(over) do out[#out + 1] = v end
  elseif existing then
    if existing == digest then
      local old = redis.call('HMGET', report, 'accepted_ms', 'positions', 'grants')
      out[#out + 1] = 'duplicate'
      out[#out + 1] = old[1]
      out[#out + 1] = old[2]
      out[#out + 1] = old[3]
    else
      out[#out + 1] = 'conflict'
      out[#out + 1] = ''
      out[#out + 1] = ''
      out[#out + 1] = ''
    end
  else
    local positions = {}
    for i = 1, n do
      local inbox = KEYS[k + 1 + i]
      if redis.call('EXISTS', inbox) == 0 then
        redis.call('XGROUP', 'CREATE', inbox, 'tl', '0', 'MKSTREAM')
      end
      positions[i] = redis.call('XADD', inbox, '*', 'report', id, 'originator', originator,
                                'bytes', size)
      local quota = KEYS[k + 1 + n + i]
      redis.call('HINCRBY', quota, 'queued_reports', 1)
      redis.call('HINCRBY', quota, 'queued_bytes', size)
    end
    local hour = math.floor(tonumber(accepted_ms) / HOUR)
    redis.call('HINCRBY', oquota, 'stored_reports', 1)
    redis.call('HINCRBY', oquota, 'stored_bytes', size)
    redis.call('HINCRBY', oquota, 'r:' .. hour, 1)
    redis.call('HINCRBY', oquota, 'b:' .. hour, size)
    if redis.call('HSETNX', oquota, 'first_hour', hour) == 0 then
      hour = math.max(hour, num(oquota, 'last_hour'))
    end
    redis.call('HSET', oquota, 'last_hour', hour)
    local recipients = {}
    for i = 1, n do recipients[i] = ARGV[a + 9 + i] end
    local joined = table.concat(positions, ',')
    redis.call('HSET', report, 'envelope', envelope, 'digest', digest, 'originator', originator,
               'accepted_ms', accepted_ms, 'label', ARGV[a + 5], 'suite', ARGV[a + 6],
               'grants', grants, 'positions', joined, 'recipients', table.concat(recipients, ','))
    redis.call('PEXPIRE', report, ARGV[2])
    redis.call('XADD', KEYS[1], '*', 'event', 'accepted', 'report', id, 'data', ARGV[a + 8])
    out[#out + 1] = 'created'
    out[#out + 1] = accepted_ms
    out[#out + 1] = joined
    out[#out + 1] = grants
  end
  k = k + 2 + 2 * n
  a = a + 10 + n
end
return out
