package store

import "github.com/redis/go-redis/v9"

// The Lua scripts every change runs as. A script runs whole or not at
// all, with nothing else in between: it checks, changes the data, bumps
// the version, appends the audit entry and publishes the change, so no
// reader ever sees half a change. Every check comes before the first
// write, because Redis does not roll back the writes of a script that
// fails half way.
//
// All scripts take the same keys, all under one hash tag so that they
// live in one Cluster slot:
//
//	KEYS[1] {p}:overrides  hash   override ID -> JSON
//	KEYS[2] {p}:drains     hash   registry    -> JSON
//	KEYS[3] {p}:version    hash   epoch, n, id (the audit entry of the last write)
//	KEYS[4] {p}:audit      stream one entry per write
//
// Numbers travel as decimal strings (string.format('%d')): Lua's own
// tostring writes large numbers in exponent form, and an epoch is a
// time in milliseconds.

// writeScript is every write: create, put, delete, drain, undrain and
// replace.
//
//	ARGV[1] op: create, put, delete, drain, undrain, replace
//	ARGV[2] channel to publish on
//	ARGV[3] who, for the audit trail
//	ARGV[4], ARGV[5], ARGV[6] the epoch, n and write ID this store saw last
//	ARGV[7] the audit stream's length (approximate, MAXLEN ~)
//	ARGV[8], ARGV[9] the key (override ID, registry) and its JSON;
//	        for replace, ID and JSON pairs from ARGV[8] on
//
// It answers {'ok', epoch, n, write id, lost} or {'conflict'},
// {'notfound'}, {'gone'}. 'gone': Redis holds no version but this store
// saw one: it was flushed, or is a new instance, and every override
// would silently go; only replace (a restore, or accepting the empty
// set) may write then. lost = '1' when Redis was behind what this store
// saw (a failover that lost writes): the write then starts a new epoch,
// so that every reader reloads rather than take the next version for
// the one it saw.
var writeScript = redis.NewScript(`
local op, channel, who = ARGV[1], ARGV[2], ARGV[3]
local seenE, seenN, seenID = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ver = redis.call('HMGET', KEYS[3], 'epoch', 'n', 'id')
local E, N, ID = tonumber(ver[1]) or 0, tonumber(ver[2]) or 0, ver[3] or ''
local empty = not ver[1]
if empty and (seenE > 0 or seenN > 0) and op ~= 'replace' then
  return {'gone'}
end
local lost = (not empty) and (E < seenE or (E == seenE and (N < seenN or
  (N == seenN and seenID ~= '' and ID ~= seenID))))

local key = ARGV[8] or ''
local hash, before, after, kind, aop = nil, false, false, op, op
if op == 'create' or op == 'put' then
  hash = KEYS[1]
  before = redis.call('HGET', hash, key)
  if before and op == 'create' then return {'conflict'} end
  after, kind = ARGV[9], 'override'
  if before then aop = 'replace' else aop = 'create' end
elseif op == 'delete' then
  hash = KEYS[1]
  before = redis.call('HGET', hash, key)
  if not before then return {'notfound'} end
elseif op == 'drain' then
  hash = KEYS[2]
  before = redis.call('HGET', hash, key)
  after = ARGV[9]
elseif op == 'undrain' then
  hash = KEYS[2]
  before = redis.call('HGET', hash, key)
  if not before then return {'notfound'} end
elseif op == 'replace' then
  key, aop = '', 'replace-all'
else
  return redis.error_reply('reghost: unknown write ' .. tostring(op))
end

local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if op == 'replace' or lost then
  -- A new epoch is later than every one before, here or seen: the
  -- server's clock keeps it ahead of an epoch lost with a flushed Redis.
  E, N = math.max(E + 1, seenE + 1, ms), 0
end
N = N + (op == 'replace' and 0 or 1)

if op == 'replace' then
  before = '{"overrides":' .. redis.call('HLEN', KEYS[1]) .. '}'
  redis.call('DEL', KEYS[1])
  local i = 8
  while i <= #ARGV do
    local j = math.min(i + 999, #ARGV)
    redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
    i = j + 1
  end
  after = '{"overrides":' .. string.format('%d', (#ARGV - 7) / 2) .. '}'
elseif after then
  redis.call('HSET', hash, key, after)
else
  redis.call('HDEL', hash, key)
end

local es, ns = string.format('%d', E), string.format('%d', N)
local at = t[1] .. string.format('%06d', tonumber(t[2]))
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',
  'at', at, 'who', who, 'op', aop, 'key', key, 'epoch', es, 'n', ns,
  'before', before or '', 'after', after or '')
redis.call('HSET', KEYS[3], 'epoch', es, 'n', ns, 'id', id)
local value = 'null'
if after and op ~= 'replace' then value = after end
redis.call('PUBLISH', channel, '{"epoch":' .. es .. ',"n":' .. ns .. ',"id":' .. cjson.encode(id) ..
  ',"kind":"' .. kind .. '","key":' .. cjson.encode(key) .. ',"value":' .. value .. '}')
local wasLost = '0'
if lost then wasLost = '1' end
return {'ok', es, ns, id, wasLost}
`)

// healScript starts a new epoch, changing no data, when Redis went back
// behind what this store saw (a failover lost writes that some replicas
// had been told of): every reader then reloads what Redis holds, rather
// than some keep a write that is gone and skip the different write that
// will take its version number. It acts only if the version is still the
// one the caller read, so that of many replicas noticing at once one
// bumps the epoch, and never on an empty Redis: that takes an operator.
//
//	ARGV[1] channel, ARGV[2] who, ARGV[3..5] the epoch, n, id read,
//	ARGV[6] the audit length, ARGV[7] the epoch seen, ARGV[8] the
//	version seen (for the audit entry)
//
// It answers {'ok', epoch, n, id} or {'moved'}.
var healScript = redis.NewScript(`
local ver = redis.call('HMGET', KEYS[3], 'epoch', 'n', 'id')
if not ver[1] or ver[1] ~= ARGV[3] or (ver[2] or '') ~= ARGV[4] or (ver[3] or '') ~= ARGV[5] then
  return {'moved'}
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local es = string.format('%d', math.max(tonumber(ver[1]) + 1, tonumber(ARGV[7]) + 1, ms))
local at = t[1] .. string.format('%06d', tonumber(t[2]))
local n = redis.call('HLEN', KEYS[1])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
  'at', at, 'who', ARGV[2], 'op', 'replace-all', 'key', '', 'epoch', es, 'n', '0',
  'before', '{"lost_after":"' .. ARGV[3] .. '.' .. ARGV[4] .. '","seen":"' .. ARGV[8] .. '"}',
  'after', '{"overrides":' .. n .. '}')
redis.call('HSET', KEYS[3], 'epoch', es, 'n', '0', 'id', id)
redis.call('PUBLISH', ARGV[1], '{"epoch":' .. es .. ',"n":0,"id":' .. cjson.encode(id) ..
  ',"kind":"replace","key":"","value":null}')
return {'ok', es, '0', id}
`)
