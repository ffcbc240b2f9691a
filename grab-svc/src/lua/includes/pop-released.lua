--[[
  popReleased(stats, batchPrefix, now, start, batches, interval): pops the next packet of a
  batch that is open by now (batch i opens at start + i * interval; every batch at once when
  interval is 0). stats.cursor is the first batch not known to be empty, so a dry campaign
  does not LPOP its empty lists again on every call.
  Returns: the item "packetId|amount" (nil when nothing released is left), and how many
  batches are released.
]]
local function popReleased(stats, batchPrefix, now, start, batches, interval)
  local released = batches
  if interval > 0 then
    released = math.min(batches, math.floor((now - start) / interval) + 1)
  end
  local cursor = tonumber(redis.call('HGET', stats, 'cursor') or '0')
  while cursor < released do
    local item = redis.call('LPOP', batchPrefix .. cursor)
    if item then
      return item, released
    end
    cursor = cursor + 1
    redis.call('HSET', stats, 'cursor', cursor)
  end
  return nil, released
end
