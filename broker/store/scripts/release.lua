local function release(inbox, quota, id)
  local found = redis.call('XRANGE', inbox, id, id)
  if #found == 0 then return end
  local f = found[1][2]
  for j = 1, #f, 2 do
    if f[j] == 'bytes' then
      redis.call('HINCRBY', quota, 'queued_reports', -1)
      redis.call('HINCRBY', quota, 'queued_bytes', -tonumber(f[j + 1]))
    end
  end
end
