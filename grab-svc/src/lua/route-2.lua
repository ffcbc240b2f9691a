--[[
  Sub-pools: settles a user's reservation on the home pool after a failover (see grab-6.lua).

  Input:
    KEYS[1] route    home pool's hash: user -> "?|requestId|atMs" or "<pool>|packetId|amount|requestId"
    KEYS[2] stats    home pool's stats hash (o:<outcome> counters)

    ARGV[1] user id
    ARGV[2] request id holding the reservation
    ARGV[3] outcome: "won", "sold_out" or "ended"
    ARGV[4] pool the packet came from (won only)
    ARGV[5] packet id (won only)
    ARGV[6] amount in cents (won only)

  Output: 1 settled; 0 the reservation is not this request's (nothing written)
]]
local r = redis.call('HGET', KEYS[1], ARGV[1])
if not r or r:sub(1, #ARGV[2] + 3) ~= '?|' .. ARGV[2] .. '|' then
  return 0
end
if ARGV[3] == 'won' then
  -- the win itself was counted by the pool it came from
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6] .. '|' .. ARGV[2])
  return 1
end
-- Nothing taken: the user may try again later (a batch still to come) and is counted once here.
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'o:' .. ARGV[3], 1)
return 1
