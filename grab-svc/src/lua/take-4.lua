--[[
  Sub-pools: takes a packet from this (non-home) pool for a user whose home pool is dry and who
  holds the reservation there (grab-6.lua answered FAILOVER), and records the win in this pool.
  The claim was checked on the home pool; only the request holding the reservation gets here.

  Input:
    KEYS[1] meta     this pool's hash: start, expires (ms), batches, interval (ms), closed
    KEYS[2] stats    this pool's hash: cursor, claimed, claimed_cents, o:won
    KEYS[3] claims   this pool's hash: user -> "packetId|amount|requestId|wonAtMs"
    KEYS[4] outbox   this pool's stream: one entry per win, read by the relay

    ARGV[1] user id
    ARGV[2] request id
    ARGV[3] prefix of this pool's batch lists
    ARGV[4] campaign id, copied into the outbox entry
    ARGV[5] trace id (the edge's x-request-id), copied into the outbox entry as "x"; may be ""

  Output: { code, packetId, amountCents, 0 }
    code  1 WON      this request's packet (also when it already took one here: a re-driven failover)
          3 DRY      nothing released is left in this pool (not counted: the home pool counts)
          5 ENDED    closed or expired (not counted)
         -1          no such pool
]]
local cfg = redis.call('HMGET', KEYS[1], 'start', 'expires', 'batches', 'interval', 'closed')
if not cfg[1] then
  return { -1, '', '0', 0 }
end
local user = ARGV[1]
local prior = redis.call('HGET', KEYS[3], user)
if prior then
  local pid, amount = string.match(prior, '^([^|]*)|([^|]*)|')
  return { 1, pid, amount, 0 }
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = tonumber(cfg[1])
if cfg[5] == '1' or now >= tonumber(cfg[2]) then
  return { 5, '', '0', 0 }
end

local batches = tonumber(cfg[3])
local interval = tonumber(cfg[4])
local released = batches
if interval > 0 then
  released = math.min(batches, math.floor((now - start) / interval) + 1)
end
local cursor = tonumber(redis.call('HGET', KEYS[2], 'cursor') or '0')
local item
while cursor < released do
  item = redis.call('LPOP', ARGV[3] .. cursor)
  if item then
    break
  end
  cursor = cursor + 1
  redis.call('HSET', KEYS[2], 'cursor', cursor)
end
if not item then
  return { 3, '', '0', 0 }
end

local pid, amount = string.match(item, '^([^|]*)|(%d+)$')
redis.call('HSET', KEYS[3], user, pid .. '|' .. amount .. '|' .. ARGV[2] .. '|' .. now)
redis.call('XADD', KEYS[4], '*', 'c', ARGV[4], 'p', pid, 'u', user, 'a', amount, 'r', ARGV[2], 't', now,
  'x', ARGV[5] or '')
redis.call('HINCRBY', KEYS[2], 'claimed_cents', amount)
redis.call('HINCRBY', KEYS[2], 'o:won', 1)
redis.call('HINCRBY', KEYS[2], 'claimed', 1)
return { 1, pid, amount, 0 }
