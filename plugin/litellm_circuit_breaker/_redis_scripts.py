"""The Lua scripts the Redis adapter runs: each is atomic, because Redis runs a script alone.

Every script reads Redis's own clock (``TIME``, in milliseconds), so replicas whose
clocks disagree still agree on windows, versions and expiries. Records come out as
the JSON that :func:`._records.parse_record` reads.

* :data:`TRANSITION_LUA` applies one replica's transition, keeping the rules of
  who wins, and publishes the record it kept;
* :data:`SNAPSHOT_LUA` reads the live records, a page at a time (reconciles and ``status``);
* :data:`CLAIM_LUA` takes or renews probe leases, one owner per endpoint.
"""

from __future__ import annotations

__all__ = ["CLAIM_LUA", "RECORD_LUA", "SNAPSHOT_LUA", "TRANSITION_LUA"]

RECORD_LUA = """
-- Below 1e14 cjson (14 significant digits) keeps every integer exact; Redis's clock in
-- milliseconds stays below it for 3,000 years.
local MAX_MS = 1e14
local YEAR_MS = 365 * 86400000
local function number(v, lo, hi)
  local n = tonumber(v)
  if n and n == math.floor(n) and n >= lo and n < hi then return n end
  return nil
end
-- Each field's range: a time or version in milliseconds, a window ending within two
-- years (-1: held), a count of failures.
-- A version (or change time) is Redis's clock when written: one more than two years
-- ahead of it is damage (a version that cannot grow would stop the record for good).
local function version_of(v, now) return number(v, 0, math.min(MAX_MS, now + 2 * YEAR_MS)) end
local function until_of(v, now)
  local n = number(v, -1, math.min(MAX_MS, now + 2 * YEAR_MS))
  if n == -1 or (n and n >= 0) then return n end
  return nil
end
local function failures_of(v) return number(v, 0, 1e9) end
local NUMBERS = {{3, 'open_until', until_of}, {4, 'failures', failures_of},
                 {7, 'version', version_of}, {8, 'changed', version_of}}
local function bad(id, problem)
  return cjson.encode({bad = true, id = id, problem = problem})
end
local function record(key, id, now)
  local r = redis.pcall('HMGET', key, 'id', 'state', 'open_until', 'failures', 'reason',
                        'replica', 'version', 'changed', 'group', 'owner', 'model', 'host')
  if r.err then return bad(id, r.err) end
  if not r[2] then return false end
  if r[1] ~= id then
    return bad(id, 'field id is not its key name: ' .. string.sub(tostring(r[1]), 1, 40))
  end
  for _, f in ipairs(NUMBERS) do
    if r[f[1]] and not f[3](r[f[1]], now) then
      return bad(id, 'field ' .. f[2] .. ' is out of range: ' .. string.sub(r[f[1]], 1, 40))
    end
  end
  local ok, out = pcall(cjson.encode, {
    id = r[1], state = r[2], open_until = until_of(r[3], now) or 0,
    failures = failures_of(r[4]) or 0, reason = r[5] or '', replica = r[6] or '',
    version = version_of(r[7], now) or 0, changed = version_of(r[8], now) or 0,
    group = r[9] or '',
    owner = r[10] or '', model = r[11] or '', host = r[12] or '', now = now})
  if not ok then return bad(id, 'not encodable: ' .. tostring(out)) end
  return out
end
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""
"""Helpers prefixed to the other scripts: one record as JSON, built the same way by each
(``now`` is Redis's time, so a reader turns ``open_until`` into seconds left), and Redis's
clock in milliseconds.

A record that cannot be read (a key of another type, an ``id`` field that is not its key's
name, a number field that is no integer in its range: a version or time at or past 1e14,
which ``cjson`` would round, or a version more than two years ahead of Redis's clock,
a window ending more than two years ahead, a negative
``open_until`` other than -1, a failure count past a billion; anything ``cjson`` refuses)
comes out as ``{"bad": true, "id": ..., "problem": ...}``
instead of failing the script: one bad record never hides the others."""

TRANSITION_LUA = (
    RECORD_LUA
    + """
local now = redis_now()
local state, window, base, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cur = redis.pcall('HMGET', KEYS[1], 'state', 'open_until', 'version')
if cur.err then
  -- A key of another type where the record belongs holds no record: replaced.
  redis.call('DEL', KEYS[1])
  cur = {false, false, false}
end
-- A field that is no number in its range counts as absent: the write below replaces it.
local cur_until = until_of(cur[2], now) or 0
local version = version_of(cur[3], now) or 0
local cur_open = cur[1] == 'open' and (cur_until < 0 or cur_until > now)
local new_until = 0
if state == 'open' then
  if window < 0 then new_until = -1 else new_until = now + window end
end
local accept
if state == 'open' then
  -- The later window wins; a hold (-1) outlasts any window.
  accept = not (cur_open and (cur_until < 0 or (new_until >= 0 and cur_until >= new_until)))
elseif state == 'half_open' then
  -- A passed probe ends an opening it has seen, never a newer close or half-open.
  accept = (not cur[1] or cur[1] == 'open') and version <= base
else
  -- A close must have seen the opening it ends.
  accept = cur[1] ~= state and (not cur_open or version <= base)
end
local refill = version_of(ARGV[14] or '', now)
if refill and refill <= 0 then refill = nil end
-- A write-back of a record Redis lost never undoes one written since (a close), nor
-- writes again one another replica wrote back first.
if refill and cur[1] and version >= refill then
  accept = false
  -- The record is there but its index entry is not (a replaced index): indexed again.
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then redis.pcall('ZADD', KEYS[2], now + left, ARGV[1]) end
end
if accept then
  if refill and not cur[1] then
    -- A record Redis lost, written back as it was: replicas that saw it see nothing new,
    -- and a close based on it still ends it.
    version = refill
  else
    -- Versions only grow, even across a Redis restart that lost the data.
    version = math.max(version + 1, now)
  end
  local life = ttl
  if new_until > 0 then life = ttl + window end
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', state, 'open_until', new_until,
             'failures', ARGV[4], 'reason', ARGV[5], 'replica', ARGV[6], 'version', version,
             'changed', now, 'group', ARGV[10], 'owner', ARGV[11], 'model', ARGV[12] or '',
             'host', ARGV[13] or '')
  redis.call('PEXPIRE', KEYS[1], life)
  -- An index of another type (written by hand) hides the namespace from every read:
  -- replaced, and the replicas' next reconciles write back into it what they hold.
  local added = redis.pcall('ZADD', KEYS[2], now + life, ARGV[1])
  if type(added) == 'table' and added.err and string.find(added.err, 'WRONGTYPE', 1, true) then
    redis.call('DEL', KEYS[2])
    redis.pcall('ZADD', KEYS[2], now + life, ARGV[1])
  end
  redis.pcall('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local index_ttl = redis.pcall('PTTL', KEYS[2])
  if type(index_ttl) == 'number' and index_ttl < life then redis.pcall('PEXPIRE', KEYS[2], life) end
end
local out = record(KEYS[1], ARGV[1], now)
-- A Redis user without rights on the channel still shares, through the reconciles;
-- the refusal goes back to the writer, which says so once.
local refused = ''
if accept then
  local sent = redis.pcall('PUBLISH', ARGV[9], out)
  if type(sent) == 'table' and sent.err then refused = sent.err end
end
return {accept and 1 or 0, out, refused}
"""
)
"""Apply one local transition to the shared record, atomically.

KEYS: the record, the index. ARGV: id, state, window_ms (-1: held open), failures,
reason, replica, base_version (the newest version this replica's state is based on),
ttl_ms, channel, group, owner (the writer's process token), model and host (``host[:port]``),
for people reading ``status``; neither ever holds a key; optionally a refill version: when
no record exists, the record is written with that version (one Redis lost, written back
by a replica that had it) instead of a new one, and a record newer than that version is
kept whatever it holds (the same version: another replica wrote it back first), and
indexed again (an index replaced since lost its entry).

Guarantees: an opening wins unless a longer one (or a hold) is already in force; a
half-open (a passed probe) or a close is kept only if it saw the version it replaces
(``base_version``), so it never undoes a newer opening; versions only grow, even after
Redis lost its data. A kept record gets a TTL (``ttl_ms``, plus the window while open),
its index entry is re-scored (expired ones dropped; an index of another type is
replaced), and it is published on the
channel. Returns ``{1 if kept else 0, the record now in Redis as JSON, why Redis refused
to publish it ('' if it did not)}``. A record key holding another type, or a record whose
fields are out of range, is replaced as if absent.
"""

SNAPSHOT_LUA = (
    RECORD_LUA
    + """
local now = redis_now()
local page = redis.pcall('ZSCAN', KEYS[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
if page.err then return {'0', '', bad(KEYS[1], page.err)} end
-- The cursor means something only to the server that made it: a failover between
-- pages sends it elsewhere, and the reader starts over when the server changed.
-- A user may not run INFO (`-@dangerous`): then the read cannot tell servers apart.
local info = redis.pcall('INFO', 'server')
local server = type(info) == 'string' and string.match(info, 'run_id:(%x+)') or ''
local out = {page[1], server}
local members = page[2]
for i = 1, #members, 2 do
  local id, score = members[i], tonumber(members[i + 1])
  if score and score >= now then
    local r = record(ARGV[1] .. id, id, now)
    if r then table.insert(out, r) end
  end
end
return out
"""
)
"""Read one page of the live records, at one instant of Redis's clock.

KEYS: the index. ARGV: the record key prefix, a ``ZSCAN`` cursor (``0`` to begin), how
many index entries to look at (a hint, as ``ZSCAN``'s ``COUNT``). Returns the next cursor
(``0``: done), the answering server's ``run_id`` (a cursor from another server means
nothing here), then records as JSON: those the index scores as unexpired and whose hash
still exists, each unreadable one as a bad record (an unreadable index: one bad record
named after it). Paged, so that a namespace of any size never holds Redis, or outlasts a
client's read timeout, in one script: 60,000 records in one call took seconds. As with
``ZSCAN``, a record present from the first page to the last is returned at least once
(perhaps twice); one written meanwhile may or may not be.
"""

CLAIM_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local owner = redis.pcall('GET', key)
  -- A key of another type there is no lease: taken over (SET replaces it), reported as 2.
  local unreadable = type(owner) == 'table' and owner.err ~= nil
  -- Every lease expires: one that never does (written by hand) would stop the probes
  -- of its endpoint for good.
  if owner and not unreadable and redis.call('PTTL', key) < 0 then unreadable = true end
  if unreadable or not owner or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = unreadable and 2 or 1
  else
    out[i] = 0
  end
end
return out
"""
"""Take or renew probe leases: each endpoint has at most one holder at a time.

KEYS: the leases. ARGV: the claimant's token, lease_ms. A free lease, or one the
claimant holds, is (re)set to it for ``lease_ms``; returns one entry per key, 1 where
the claimant now holds it, 0 where another does, 2 where a key of another type or a
lease without expiry stood (one bad key must not fail every claim, nor stop probing for
good: it is replaced by the lease).
"""
