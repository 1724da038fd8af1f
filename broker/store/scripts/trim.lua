-- KEYS[1] a partner's inbox, KEYS[2] audit stream, KEYS[3] its quota hash;
-- ARGV[1] cutoff id, ARGV[2] partner id
-- Retention never drops an unacknowledged entry silently: what is lost becomes a gap notice.
-- Then the inbox quota is recounted from what is queued: entries pending and never delivered.
local function entry_bytes(fields)
  for j = 1, #fields, 2 do
    if fields[j] == 'bytes' then return tonumber(fields[j + 1]) end
  end
  return nil
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local last = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for j = 1, #group, 2 do fields[group[j]] = group[j + 1] end
  if fields['name'] == 'tl' then last = fields['last-delivered-id'] end
end
local lost = #redis.call('XRANGE', KEYS[1], '(' .. last, '(' .. ARGV[1])
for _, pending in ipairs(redis.call('XPENDING', KEYS[1], 'tl', '-', '(' .. ARGV[1], 1000000)) do
  redis.call('XACK', KEYS[1], 'tl', pending[1])
  lost = lost + 1
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
if lost > 0 then
  redis.call('XADD', KEYS[1], '*', 'kind', 'gap', 'lost', lost, 'before', ARGV[1])
  redis.call('XADD', KEYS[2], '*', 'event', 'gap', 'report', '',
             'data', '{"partner":"' .. ARGV[2] .. '","lost":' .. lost .. '}')
end
local queued, queued_bytes = 0, 0
local function count(entries)
  for _, e in ipairs(entries) do
    local b = entry_bytes(e[2])
    if b then
      queued = queued + 1
      queued_bytes = queued_bytes + b
    end
  end
end
count(redis.call('XRANGE', KEYS[1], '(' .. last, '+'))
for _, pending in ipairs(redis.call('XPENDING', KEYS[1], 'tl', '-', '+', 1000000)) do
  count(redis.call('XRANGE', KEYS[1], pending[1], pending[1]))
end
redis.call('HSET', KEYS[3], 'queued_reports', queued, 'queued_bytes', queued_bytes)
return {trimmed, lost}
