--[[
  Takes `hits` tokens from every bucket of one rate limit decision, all or nothing: the whole
  decision in one call, whatever the number of descriptors (n = #KEYS, given at call time).
  A bucket holds at most `capacity` tokens and refills capacity tokens evenly over `period`;
  an absent bucket is full. Time is Redis TIME, so every gateway replica shares one clock.
  A bucket is one string "<tokens> <ms>", read for all buckets with one MGET and written with
  one SET ... PX each (2 + n commands a decision; a hash per bucket took 2 + 3n).

  Input:
    KEYS[i]         bucket i: "<tokens, may be fractional> <ms of the last update>"
    ARGV[1]         hits (>= 1)
    ARGV[3i-1]      capacity of bucket i (requests_per_unit, >= 1)
    ARGV[3i]        period of bucket i in ms (the unit)
    ARGV[3i+1]      "1" when bucket i is in shadow mode (reported, never enforced)

  Output: { over, s1, r1, w1, s2, r2, w2, ... }
    over  1 when some bucket not in shadow mode lacks the tokens: nothing is taken from any
          bucket; 0 when the request passes: every bucket that had the tokens gives them
    si    1 when bucket i lacked the tokens for this request (in shadow mode too), else 0
    ri    tokens left in bucket i after the call (whole tokens)
    wi    ms until bucket i holds `hits` tokens again (0 when it has them now)
]]
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local hits = tonumber(ARGV[1])
local n = #KEYS
local stored = redis.call('MGET', unpack(KEYS))

local tokens = {}
local over = 0
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  local t = cap
  local v = stored[i]
  if v then
    local sp = string.find(v, ' ', 1, true)
    local bt = sp and tonumber(string.sub(v, 1, sp - 1))
    local ts = sp and tonumber(string.sub(v, sp + 1))
    if bt and ts then
      t = bt
      if now > ts then
        t = math.min(cap, t + (now - ts) * cap / period)
      end
    end
  end
  tokens[i] = t
  if t < hits and ARGV[3 * i + 1] ~= '1' then
    over = 1
  end
end

local out = { over }
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  local t = tokens[i]
  local short = 0
  if t < hits then
    short = 1
  end
  if over == 0 then
    if t >= hits then
      t = t - hits
    end
    -- A bucket untouched for one period is full again: the key can go.
    redis.call('SET', KEYS[i], tostring(t) .. ' ' .. now, 'PX', period)
  end
  local wait = 0
  if t < hits then
    if hits > cap then
      wait = period
    else
      wait = math.ceil((hits - t) * period / cap)
    end
  end
  out[3 * i - 1] = short
  out[3 * i] = math.floor(t)
  out[3 * i + 1] = wait
end
return out
