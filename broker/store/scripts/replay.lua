-- KEYS[1] a partner's dead letters, KEYS[2] its inbox, KEYS[3] audit stream, KEYS[4] its quota
-- ARGV[1] dead letter id, ARGV[2] audit data
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local f = {}
for j = 1, #found[1][2], 2 do f[found[1][2][j]] = found[1][2][j + 1] end
local entry = {'report', f['report'] or '', 'originator', f['originator'] or ''}
if f['kind'] and f['kind'] ~= 'report' then
  entry[#entry + 1] = 'kind'
  entry[#entry + 1] = f['kind']
end
if f['kind'] == 'gap' then
  for _, name in ipairs({'lost', 'before'}) do
    entry[#entry + 1] = name
    entry[#entry + 1] = f[name] or ''
  end
end
if f['bytes'] then  -- queued again: on the inbox quota again (an operator's act, not refused)
  entry[#entry + 1] = 'bytes'
  entry[#entry + 1] = f['bytes']
  redis.call('HINCRBY', KEYS[4], 'queued_reports', 1)
  redis.call('HINCRBY', KEYS[4], 'queued_bytes', tonumber(f['bytes']))
end
local new_id = redis.call('XADD', KEYS[2], '*', unpack(entry))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'event', 'replayed', 'report', f['report'] or '',
           'data', ARGV[2])
return new_id
