--[[
snapshot_lww.lua -- stores a balance snapshot in a Redis hash unless the hash already holds
a snapshot of the same or a newer version: last write wins, by version.

The version is the position of the change in its shard's log (a Kafka offset or a WAL
position), never a wall-clock time. Two writers (an old leader and a new one, or a retry
that arrives late) agree on the order of log positions, while their clocks may not. The
version of one key must therefore only grow, which the log guarantees.

Load it once with SCRIPT LOAD and call it with EVALSHA; on a NOSCRIPT error (Redis restarted
or flushed its scripts) load it again and repeat the call.

  KEYS[1]    the snapshot hash, e.g. "balanced:balance:{42}:USDT"
  ARGV[1]    the version: a decimal integer of at most 19 digits, without leading zeros
  ARGV[2..]  field, value pairs to store with it (e.g. "available", "12.5", "frozen", "0");
             the field "version" is reserved for the version itself

Returns 1 when the snapshot was written, 0 when the stored version is the same or newer (an
older or repeated write changes nothing). A malformed call is an error and changes nothing.

Versions are compared digit by digit, not with tonumber(): Lua numbers are doubles, which
cannot tell apart integers above 2^53, so two different log positions could compare equal.
The seed version of this script compared wall-clock timestamps with tonumber() and tested
`#current == 0`, which is never true for an HMGET reply; both are fixed here.
]]

local function is_version(text)
  return type(text) == 'string' and #text >= 1 and #text <= 19
    and string.find(text, '^[0-9]+$') ~= nil
    and (text == '0' or string.byte(text, 1) ~= 48)
end

-- a > b for canonical decimal strings: the longer one is larger, else the first digit that
-- differs decides. Byte comparison keeps the result independent of the server's locale.
local function is_newer(a, b)
  if #a ~= #b then
    return #a > #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return false
end

if #KEYS ~= 1 then
  return redis.error_reply('ERR snapshot_lww: expected exactly one key')
end
local version = ARGV[1]
if not is_version(version) then
  return redis.error_reply('ERR snapshot_lww: version must be a decimal integer of at most 19 digits without leading zeros')
end
if #ARGV < 3 or #ARGV % 2 ~= 1 then
  return redis.error_reply('ERR snapshot_lww: expected a version and field/value pairs')
end
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'version' then
    return redis.error_reply('ERR snapshot_lww: the field "version" is reserved')
  end
end

local current = redis.call('HGET', KEYS[1], 'version')
if current then
  if not is_version(current) then
    return redis.error_reply('ERR snapshot_lww: the stored version of ' .. KEYS[1] .. ' is malformed')
  end
  if not is_newer(version, current) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'version', version, unpack(ARGV, 2))
return 1
