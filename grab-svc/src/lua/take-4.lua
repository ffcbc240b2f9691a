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
--- @include "includes/pop-released"
--- @include "includes/record-win"

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

local item = popReleased(KEYS[2], ARGV[3], now, start, tonumber(cfg[3]), tonumber(cfg[4]))
if not item then
  return { 3, '', '0', 0 }
end

local pid, amount = recordWin(KEYS[2], KEYS[3], KEYS[4], item,
  { campaign = ARGV[4], user = user, request = ARGV[2], now = now, trace = ARGV[5] or '' })
return { 1, pid, amount, 0 }
