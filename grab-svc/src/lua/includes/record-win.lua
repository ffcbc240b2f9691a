--[[
  recordWin(stats, claims, outbox, item, win): writes a win of the popped item
  "packetId|amount": the user's claim "packetId|amount|requestId|wonAtMs", one outbox entry for
  the relay, and the counters claimed_cents, o:won and claimed.
  win = { campaign, user, request, now, trace }; the outbox entry's fields and their order are
  defined in outbox-entry.ts (OUTBOX_FIELDS), which decodes it.
  Returns: packetId, amount (a string of digits), and the pool's claimed count after this win.
]]
local function recordWin(stats, claims, outbox, item, win)
  local pid, amount = string.match(item, '^([^|]*)|(%d+)$')
  redis.call('HSET', claims, win.user, pid .. '|' .. amount .. '|' .. win.request .. '|' .. win.now)
  redis.call('XADD', outbox, '*', 'c', win.campaign, 'p', pid, 'u', win.user, 'a', amount, 'r', win.request,
    't', win.now, 'x', win.trace)
  redis.call('HINCRBY', stats, 'claimed_cents', amount)
  redis.call('HINCRBY', stats, 'o:won', 1)
  local claimed = redis.call('HINCRBY', stats, 'claimed', 1)
  return pid, amount, claimed
end
