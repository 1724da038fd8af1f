-- KEYS[1] report hash, KEYS[2] audit stream, KEYS[3..2+n] the recipients' inboxes, then their
--   quota hashes (in the same order)
-- ARGV: id, originator, then the recipient ids (in KEYS order)
-- Copies not yet delivered are withdrawn (XDEL); recipients that had it get a recall notice.
local n = #ARGV - 2
local done = redis.call('HGET', KEYS[1], 'recall')
if done then return done end
local function after(a, b)  -- stream id a > b
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end
local positions = {}
for pos in string.gmatch(redis.call('HGET', KEYS[1], 'positions'), '[^,]+') do
  positions[#positions + 1] = pos
end
local withdrawn, notified = {}, {}
for i = 3, 2 + n do
  local pos, partner = positions[i - 2], ARGV[i]
  local delivered = #redis.call('XPENDING', KEYS[i], 'tl', pos, pos, 1) > 0
  if not delivered then
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
      local fields = {}
      for j = 1, #group, 2 do fields[group[j]] = group[j + 1] end
      if fields['name'] == 'tl' then delivered = not after(pos, fields['last-delivered-id']) end
    end
  end
  if delivered then
    redis.call('XADD', KEYS[i], '*', 'report', ARGV[1], 'originator', ARGV[2], 'kind', 'recall')
    notified[#notified + 1] = partner
  else
    release(KEYS[i], KEYS[i + n], pos)
    redis.call('XDEL', KEYS[i], pos)
    withdrawn[#withdrawn + 1] = partner
  end
end
local result = table.concat(withdrawn, ',') .. ';' .. table.concat(notified, ',')
redis.call('HSET', KEYS[1], 'recalled', '1', 'recall', result)
redis.call('XADD', KEYS[2], '*', 'event', 'recalled', 'report', ARGV[1], 'data', result)
return result
