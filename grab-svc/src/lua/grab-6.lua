--[[
  Grabs one red packet for one user, atomically: the whole decision in one call.

  Every key is the campaign's (hash tag {<campaign>}, one Redis Cluster slot), so the same
  script runs on a single Redis and on Redis Cluster. Eligibility lives in global keys on other
  slots (rp:blocked, rp:risk); grab-svc keeps an in-memory copy of them, fed by account-svc's
  pub/sub channel rp:eligibility, and passes this user's entry in as ARGV[6] and ARGV[7]. The
  script still decides and counts FORBIDDEN itself, after the checks that come first (a prior
  win, ended, not started), exactly as when it read the keys.

  Sub-pools (ARGV[8] = "1"): a hot campaign's packets are spread over S pools, each a slot of its
  own; this script then runs on the user's home pool, which is the one place a user's claim is
  checked. A win from another pool is recorded here as a route ("<pool>|packetId|amount|requestId")
  and a failover in progress as a reservation ("?|requestId|atMs"). When the home pool is dry the
  script reserves the user and answers FAILOVER instead of SOLD_OUT; grab-svc then takes a packet
  from the other pools (take-4.lua) and settles the reservation (route-2.lua).

  Input:
    KEYS[1] meta     hash: start, expires (ms), batches, interval (ms), count,
                     closed ("1"), req_pre ("1"), max_risk, admit_ppm,
                     pcount (packets in this pool; sub-pools only, else count is used)
    KEYS[2] stats    hash: cursor (first batch not known empty), claimed,
                     claimed_cents, o:<outcome> counters
    KEYS[3] claims   hash: user -> "packetId|amount|requestId|wonAtMs"
    KEYS[4] outbox   stream: one entry per win, read by the relay
    KEYS[5] state    string read by gateway: "sold_out" or "ended"
    KEYS[6] route    hash (sub-pools only): user -> reservation or route to another pool's win

    ARGV[1] user id
    ARGV[2] request id (never empty; the caller makes one up when the client sent none)
    ARGV[3] prefix of the batch lists; batch i is ARGV[3] .. i, items "packetId|amount"
    ARGV[4] campaign id, copied into each outbox entry
    ARGV[5] when the user's account was opened (ms), or "" when unknown
    ARGV[6] "1" if the user is blocked, else "0"
    ARGV[7] the user's risk score ("0" when none)
    ARGV[8] "1" when the campaign has sub-pools and this is the user's home pool, else ""
    ARGV[9] trace id (the edge's x-request-id), copied into the outbox entry as "x"; may be ""

  Output: { code, packetId, amountCents, nextBatchAtMs }
    code  1 WON             this call won packetId (or is a retry of the call that did)
          2 ALREADY_GRABBED the user's earlier packet, repeated
          3 SOLD_OUT        nothing left now; nextBatchAtMs > 0 if a batch is still to come
          4 NOT_STARTED     nextBatchAtMs = the start
          5 ENDED           closed or expired
          6 FORBIDDEN       blocked, not pre-opened, too risky or not admitted
          7 FAILOVER        (sub-pools) home pool dry: the user is now reserved for this request
          8 PENDING         (sub-pools) a request of this user is failing over; ask again
                            (packetId = the request id holding it, nextBatchAtMs = since when)
         -1                 no such campaign (nothing is written)
]]
--- @include "includes/pop-released"
--- @include "includes/record-win"

local cfg = redis.call('HMGET', KEYS[1], 'start', 'expires', 'batches', 'interval', 'count',
  'closed', 'req_pre', 'max_risk', 'admit_ppm', 'pcount')
if not cfg[1] then
  return { -1, '', '0', 0 }
end

local user = ARGV[1]
local pooled = ARGV[8] == '1'
-- Packets in this pool (a sub-pool holds part of the campaign).
local count = tonumber(cfg[10] or cfg[5])

-- A user who already holds a packet gets it again, whatever happened since.
local prior = redis.call('HGET', KEYS[3], user)
if prior then
  local pid, amount, req = string.match(prior, '^([^|]*)|([^|]*)|([^|]*)|')
  redis.call('HINCRBY', KEYS[2], 'o:already', 1)
  if req == ARGV[2] then
    return { 1, pid, amount, 0 }
  end
  return { 2, pid, amount, 0 }
end
if pooled then
  local route = redis.call('HGET', KEYS[6], user)
  if route then
    local head, a, b, c = string.match(route, '^([^|]*)|([^|]*)|([^|]*)|?([^|]*)')
    if head == '?' then
      -- Even for the holder's own request id: a second failover running beside the first could
      -- take from a pool the first found dry before a batch opened there, a second win.
      return { 8, a, '0', tonumber(b) }
    end
    redis.call('HINCRBY', KEYS[2], 'o:already', 1)
    if c == ARGV[2] then
      return { 1, a, b, 0 }
    end
    return { 2, a, b, 0 }
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = tonumber(cfg[1])

if cfg[6] == '1' or now >= tonumber(cfg[2]) then
  redis.call('HINCRBY', KEYS[2], 'o:ended', 1)
  redis.call('SET', KEYS[5], 'ended')
  return { 5, '', '0', 0 }
end
if now < start then
  redis.call('HINCRBY', KEYS[2], 'o:not_started', 1)
  return { 4, '', '0', start }
end

local function forbidden()
  redis.call('HINCRBY', KEYS[2], 'o:forbidden', 1)
  return { 6, '', '0', 0 }
end
if ARGV[6] == '1' then
  return forbidden()
end
if cfg[7] == '1' then
  local opened = tonumber(ARGV[5])
  if not opened or opened >= start then
    return forbidden()
  end
end
if cfg[8] and cfg[8] ~= '' then
  local score = tonumber(ARGV[7]) or 0
  if score > tonumber(cfg[8]) then
    return forbidden()
  end
end
if cfg[9] and cfg[9] ~= '' then
  -- Deterministic per campaign and user, so a retry gets the same answer.
  local h = tonumber(string.sub(redis.sha1hex(KEYS[1] .. '|' .. user), 1, 8), 16) % 1000000
  if h >= tonumber(cfg[9]) then
    return forbidden()
  end
end

local batches = tonumber(cfg[3])
local interval = tonumber(cfg[4])
local item, released = popReleased(KEYS[2], ARGV[3], now, start, batches, interval)

if not item and pooled then
  redis.call('HSET', KEYS[6], user, '?|' .. ARGV[2] .. '|' .. now)
  return { 7, '', '0', 0 }
end
if not item then
  redis.call('HINCRBY', KEYS[2], 'o:sold_out', 1)
  if released < batches then
    return { 3, '', '0', start + released * interval }
  end
  redis.call('SET', KEYS[5], 'sold_out')
  return { 3, '', '0', 0 }
end

local pid, amount, claimed = recordWin(KEYS[2], KEYS[3], KEYS[4], item,
  { campaign = ARGV[4], user = user, request = ARGV[2], now = now, trace = ARGV[9] or '' })
if claimed >= count and not pooled then
  redis.call('SET', KEYS[5], 'sold_out')
end
return { 1, pid, amount, 0 }
