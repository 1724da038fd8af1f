"""Everything the broker keeps in Redis (DESIGN §7), and nothing else touches Redis keys.

Layout (the ``{…}`` parts are hash tags, so the layout can move to Redis Cluster):

    tl:report:{id}     hash: the envelope bytes, their digest, routing facts, the receipt inputs
    tl:inbox:{P}       stream per recipient: one entry per report for P; consumer group "tl"
    tl:dead:{P}        stream: entries delivered more than max_deliveries times
    tl:audit           stream: accepted reports and deliveries withheld at delivery time
    tl:audit:report:{id}  list: the ids of the audit entries about report id, oldest first
    tl:audit:indexed   the last audit entry the per-report lists cover
    tl:nonce:{P}:{n}   request nonces seen within the replay window
    tl:quota:{P}       hash: P's storage quotas (below)
    tl:log             list: the transparency log's leaves, the governance documents' bytes
    tl:log:index       hash: SHA-256 of a document → its index in tl:log (appended once)

An accepted report is written all-or-nothing by one Lua script: envelope, inbox entries,
idempotency record (the digest in the report hash) and audit entry, before the 201 goes out.

Storage quotas (DESIGN §11: one partner cannot take the store from the others) are counted in
``tl:quota:{P}`` by the same scripts that change what they count, so a count is never half
updated and a refused report writes nothing:

- as a recipient, ``queued_reports`` and ``queued_bytes``: P's inbox entries not yet
  acknowledged (each entry carries its envelope's size, ``bytes``). The ingest script adds;
  an ack, a withheld or dead-lettered entry, a copy withdrawn by a recall take away; a replayed
  dead letter adds again; the hourly retention run recounts them exactly from the stream
  (pending entries plus those never delivered), so no drift outlives an hour.
- as an originator, ``stored_reports`` and ``stored_bytes``: P's reports accepted within the
  retention window, which the store keeps that long whether acknowledged or not (a recall keeps
  the envelope too). Kept per hour of acceptance (``r:<hour>``, ``b:<hour>``, from
  ``first_hour`` to ``last_hour``); an hour is dropped once every report in it has expired, so
  the count is never below what is stored and at most an hour's posts above it.

Past a quota the report is refused whole (429 with Retry-After): nothing is written but the
request's nonce.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from tearline.broker.pipeline import Pipeline

GROUP: Final = b"tl"

_INGEST_LUA: Final = """
-- One or more reports, each all-or-nothing, in one round trip (a batch is many; a post, one).
-- KEYS[1] audit stream, KEYS[2] the request's nonce key; then per report its hash, the
--   originator's quota hash, one inbox per recipient and one quota hash per recipient
-- ARGV[1] nonce ttl in seconds (0: the nonce was checked already), ARGV[2] retention_ms,
--   ARGV[3] report count, ARGV[4..7] the quotas: inbox reports, inbox bytes, originator
--   reports, originator bytes; then per report: id, envelope, digest, originator,
--   accepted_ms, label, suite, grants, audit entry, recipient count, the recipient ids
-- Returns {'replayed'}, or per report four values: outcome, accepted_ms, positions, grants;
--   for a report over a quota: 'over_quota', which ('inbox' or 'originator'), the partner,
--   the seconds after which it may fit.
if ARGV[1] ~= '0' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return {'replayed'} end
end
local HOUR = 3600000
local retention = tonumber(ARGV[2])
local max_ir, max_ib = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_or, max_ob = tonumber(ARGV[6]), tonumber(ARGV[7])
local function num(key, field) return tonumber(redis.call('HGET', key, field) or '0') end
-- Drop the originator's hours whose reports have all expired (at most the window's hours).
local function expire_hours(quota, now_ms)
  local first = redis.call('HGET', quota, 'first_hour')
  if not first then return end
  first = tonumber(first)
  local last = num(quota, 'last_hour')
  local stop = math.min(math.floor((now_ms - retention) / HOUR), last + 1)
  if first >= stop then return end
  local dr, db = 0, 0
  for h = first, stop - 1 do
    local r = redis.call('HGET', quota, 'r:' .. h)
    if r then
      dr = dr + tonumber(r)
      db = db + num(quota, 'b:' .. h)
      redis.call('HDEL', quota, 'r:' .. h, 'b:' .. h)
    end
  end
  redis.call('HINCRBY', quota, 'stored_reports', -dr)
  redis.call('HINCRBY', quota, 'stored_bytes', -db)
  if stop > last then
    redis.call('HDEL', quota, 'first_hour', 'last_hour')
  else
    redis.call('HSET', quota, 'first_hour', stop)
  end
end
local out = {}
local k, a = 3, 8
for _ = 1, tonumber(ARGV[3]) do
  local report, oquota = KEYS[k], KEYS[k + 1]
  local id, envelope, digest, originator = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local accepted_ms, grants, n = ARGV[a + 4], ARGV[a + 7], tonumber(ARGV[a + 9])
  local size = #envelope
  local existing = redis.call('HGET', report, 'digest')
  local over = nil
  if not existing then
    local now_ms = tonumber(accepted_ms)
    expire_hours(oquota, now_ms)
    if num(oquota, 'stored_reports') + 1 > max_or or num(oquota, 'stored_bytes') + size > max_ob
    then
      -- Room comes back when the oldest hour of its reports expires.
      local first = num(oquota, 'first_hour')
      local wait = math.ceil(((first + 1) * HOUR + retention - now_ms) / 1000)
      over = {'over_quota', 'originator', originator, math.max(1, wait)}
    else
      for i = 1, n do
        local quota = KEYS[k + 1 + n + i]
        if num(quota, 'queued_reports') + 1 > max_ir or num(quota, 'queued_bytes') + size > max_ib
        then
          over = {'over_quota', 'inbox', ARGV[a + 9 + i], 60}
          break
        end
      end
    end
  end
  if over then
    for _, v in ipairs(over) do out[#out + 1] = v end
  elseif existing then
    if existing == digest then
      local old = redis.call('HMGET', report, 'accepted_ms', 'positions', 'grants')
      out[#out + 1] = 'duplicate'
      out[#out + 1] = old[1]
      out[#out + 1] = old[2]
      out[#out + 1] = old[3]
    else
      out[#out + 1] = 'conflict'
      out[#out + 1] = ''
      out[#out + 1] = ''
      out[#out + 1] = ''
    end
  else
    local positions = {}
    for i = 1, n do
      local inbox = KEYS[k + 1 + i]
      if redis.call('EXISTS', inbox) == 0 then
        redis.call('XGROUP', 'CREATE', inbox, 'tl', '0', 'MKSTREAM')
      end
      positions[i] = redis.call('XADD', inbox, '*', 'report', id, 'originator', originator,
                                'bytes', size)
      local quota = KEYS[k + 1 + n + i]
      redis.call('HINCRBY', quota, 'queued_reports', 1)
      redis.call('HINCRBY', quota, 'queued_bytes', size)
    end
    local hour = math.floor(tonumber(accepted_ms) / HOUR)
    redis.call('HINCRBY', oquota, 'stored_reports', 1)
    redis.call('HINCRBY', oquota, 'stored_bytes', size)
    redis.call('HINCRBY', oquota, 'r:' .. hour, 1)
    redis.call('HINCRBY', oquota, 'b:' .. hour, size)
    if redis.call('HSETNX', oquota, 'first_hour', hour) == 0 then
      hour = math.max(hour, num(oquota, 'last_hour'))
    end
    redis.call('HSET', oquota, 'last_hour', hour)
    local recipients = {}
    for i = 1, n do recipients[i] = ARGV[a + 9 + i] end
    local joined = table.concat(positions, ',')
    redis.call('HSET', report, 'envelope', envelope, 'digest', digest, 'originator', originator,
               'accepted_ms', accepted_ms, 'label', ARGV[a + 5], 'suite', ARGV[a + 6],
               'grants', grants, 'positions', joined, 'recipients', table.concat(recipients, ','))
    redis.call('PEXPIRE', report, ARGV[2])
    redis.call('XADD', KEYS[1], '*', 'event', 'accepted', 'report', id, 'data', ARGV[a + 8])
    out[#out + 1] = 'created'
    out[#out + 1] = accepted_ms
    out[#out + 1] = joined
    out[#out + 1] = grants
  end
  k = k + 2 + 2 * n
  a = a + 10 + n
end
return out
"""


# Lua, put before a script that takes an entry out of an inbox's queue: the entry's envelope no
# longer counts against the recipient's quota. Entries without ``bytes`` (written before quotas
# were counted) were never added, so are never taken away.
_RELEASE_FN: Final = """
local function release(inbox, quota, id)
  local found = redis.call('XRANGE', inbox, id, id)
  if #found == 0 then return end
  local f = found[1][2]
  for j = 1, #f, 2 do
    if f[j] == 'bytes' then
      redis.call('HINCRBY', quota, 'queued_reports', -1)
      redis.call('HINCRBY', quota, 'queued_bytes', -tonumber(f[j + 1]))
    end
  end
end
"""

_RECALL_LUA: Final = (
    _RELEASE_FN
    + """
-- KEYS[1] report hash, KEYS[2] audit stream, KEYS[3..2+n] the recipients' inboxes, then their
--   quota hashes (in the same order)
-- ARGV: id, originator, then the recipient ids (in KEYS order)
-- Copies not yet delivered are withdrawn (XDEL); recipients that had it get a recall notice.
local n = #ARGV - 2
local done = redis.call('HGET', KEYS[1], 'recall')
if done then return done end
local function after(a, b)  -- stream id a > b
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end
local positions = {}
for pos in string.gmatch(redis.call('HGET', KEYS[1], 'positions'), '[^,]+') do
  positions[#positions + 1] = pos
end
local withdrawn, notified = {}, {}
for i = 3, 2 + n do
  local pos, partner = positions[i - 2], ARGV[i]
  local delivered = #redis.call('XPENDING', KEYS[i], 'tl', pos, pos, 1) > 0
  if not delivered then
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
      local fields = {}
      for j = 1, #group, 2 do fields[group[j]] = group[j + 1] end
      if fields['name'] == 'tl' then delivered = not after(pos, fields['last-delivered-id']) end
    end
  end
  if delivered then
    redis.call('XADD', KEYS[i], '*', 'report', ARGV[1], 'originator', ARGV[2], 'kind', 'recall')
    notified[#notified + 1] = partner
  else
    release(KEYS[i], KEYS[i + n], pos)
    redis.call('XDEL', KEYS[i], pos)
    withdrawn[#withdrawn + 1] = partner
  end
end
local result = table.concat(withdrawn, ',') .. ';' .. table.concat(notified, ',')
redis.call('HSET', KEYS[1], 'recalled', '1', 'recall', result)
redis.call('XADD', KEYS[2], '*', 'event', 'recalled', 'report', ARGV[1], 'data', result)
return result
"""
)


_ACK_LUA: Final = """
-- KEYS[1] the partner's inbox, KEYS[2] audit stream, KEYS[3] its quota hash;
-- ARGV[1] partner id, ARGV[2..] entry ids
-- Acknowledging a report is the partner saying it has it: that goes in the audit trail.
local acked = 0
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if redis.call('XACK', KEYS[1], 'tl', ARGV[i]) == 1 then
    acked = acked + 1
    local fields = {}
    if #entry == 1 then
      for j = 1, #entry[1][2], 2 do fields[entry[1][2][j]] = entry[1][2][j + 1] end
    end
    if fields['bytes'] then  -- no longer queued: off the partner's inbox quota
      redis.call('HINCRBY', KEYS[3], 'queued_reports', -1)
      redis.call('HINCRBY', KEYS[3], 'queued_bytes', -tonumber(fields['bytes']))
    end
    if fields['report'] and not fields['kind'] then
      redis.call('XADD', KEYS[2], '*', 'event', 'received', 'report', fields['report'],
                 'data', '{"partner":"' .. ARGV[1] .. '"}')
    end
  end
end
return acked
"""


_TRIM_LUA: Final = """
-- KEYS[1] a partner's inbox, KEYS[2] audit stream, KEYS[3] its quota hash;
-- ARGV[1] cutoff id, ARGV[2] partner id
-- Retention never drops an unacknowledged entry silently: what is lost becomes a gap notice.
-- Then the inbox quota is recounted from what is queued: entries pending and never delivered.
local function entry_bytes(fields)
  for j = 1, #fields, 2 do
    if fields[j] == 'bytes' then return tonumber(fields[j + 1]) end
  end
  return nil
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local last = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for j = 1, #group, 2 do fields[group[j]] = group[j + 1] end
  if fields['name'] == 'tl' then last = fields['last-delivered-id'] end
end
local lost = #redis.call('XRANGE', KEYS[1], '(' .. last, '(' .. ARGV[1])
for _, pending in ipairs(redis.call('XPENDING', KEYS[1], 'tl', '-', '(' .. ARGV[1], 1000000)) do
  redis.call('XACK', KEYS[1], 'tl', pending[1])
  lost = lost + 1
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
if lost > 0 then
  redis.call('XADD', KEYS[1], '*', 'kind', 'gap', 'lost', lost, 'before', ARGV[1])
  redis.call('XADD', KEYS[2], '*', 'event', 'gap', 'report', '',
             'data', '{"partner":"' .. ARGV[2] .. '","lost":' .. lost .. '}')
end
local queued, queued_bytes = 0, 0
local function count(entries)
  for _, e in ipairs(entries) do
    local b = entry_bytes(e[2])
    if b then
      queued = queued + 1
      queued_bytes = queued_bytes + b
    end
  end
end
count(redis.call('XRANGE', KEYS[1], '(' .. last, '+'))
for _, pending in ipairs(redis.call('XPENDING', KEYS[1], 'tl', '-', '+', 1000000)) do
  count(redis.call('XRANGE', KEYS[1], pending[1], pending[1]))
end
redis.call('HSET', KEYS[3], 'queued_reports', queued, 'queued_bytes', queued_bytes)
return {trimmed, lost}
"""


_DEAD_LETTER_LUA: Final = (
    _RELEASE_FN
    + """
-- KEYS[1] a partner's dead letters, KEYS[2] its inbox, KEYS[3] audit stream, KEYS[4] its quota
-- ARGV: entry id, partner, reason, report id, then the dead letter's field/value pairs
if redis.call('XACK', KEYS[2], 'tl', ARGV[1]) == 0 then return false end
release(KEYS[2], KEYS[4], ARGV[1])  -- set aside: no longer queued
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local dead_id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local data = cjson.encode({partner = ARGV[2], entry = ARGV[1], reason = ARGV[3],
                           dead_letter = dead_id})
redis.call('XADD', KEYS[3], '*', 'event', 'dead_lettered', 'report', ARGV[4], 'data', data)
return dead_id
"""
)


_REPLAY_LUA: Final = """
-- KEYS[1] a partner's dead letters, KEYS[2] its inbox, KEYS[3] audit stream, KEYS[4] its quota
-- ARGV[1] dead letter id, ARGV[2] audit data
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local f = {}
for j = 1, #found[1][2], 2 do f[found[1][2][j]] = found[1][2][j + 1] end
local entry = {'report', f['report'] or '', 'originator', f['originator'] or ''}
if f['kind'] and f['kind'] ~= 'report' then
  entry[#entry + 1] = 'kind'
  entry[#entry + 1] = f['kind']
end
if f['kind'] == 'gap' then
  for _, name in ipairs({'lost', 'before'}) do
    entry[#entry + 1] = name
    entry[#entry + 1] = f[name] or ''
  end
end
if f['bytes'] then  -- queued again: on the inbox quota again (an operator's act, not refused)
  entry[#entry + 1] = 'bytes'
  entry[#entry + 1] = f['bytes']
  redis.call('HINCRBY', KEYS[4], 'queued_reports', 1)
  redis.call('HINCRBY', KEYS[4], 'queued_bytes', tonumber(f['bytes']))
end
local new_id = redis.call('XADD', KEYS[2], '*', unpack(entry))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'event', 'replayed', 'report', f['report'] or '',
           'data', ARGV[2])
return new_id
"""


_WITHHOLD_LUA: Final = (
    _RELEASE_FN
    + """
-- KEYS[1] a partner's inbox, KEYS[2] audit stream, KEYS[3] its quota; ARGV entry id, report id,
-- audit data. The entry will never be deliverable under the policy that refused it.
if redis.call('XACK', KEYS[1], 'tl', ARGV[1]) == 1 then release(KEYS[1], KEYS[3], ARGV[1]) end
redis.call('XADD', KEYS[2], '*', 'event', 'withheld', 'report', ARGV[2], 'data', ARGV[3])
"""
)


@dataclass(frozen=True, slots=True)
class Quotas:
    """The storage quotas the ingest script enforces (broker.settings; see the module doc)."""

    inbox_reports: int = 10_000
    inbox_bytes: int = 256 * 1024 * 1024
    originator_reports: int = 100_000
    originator_bytes: int = 512 * 1024 * 1024


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def report_key(report_id: str) -> str:
    return f"tl:report:{{{report_id}}}"


def inbox_key(partner: str) -> str:
    return f"tl:inbox:{{{partner}}}"


def dead_key(partner: str) -> str:
    return f"tl:dead:{{{partner}}}"


def quota_key(partner: str) -> str:
    return f"tl:quota:{{{partner}}}"


AUDIT_KEY: Final = "tl:audit"
CHECKPOINTS_KEY: Final = "tl:audit:checkpoints"
AUDIT_INDEXED_KEY: Final = "tl:audit:indexed"


def audit_index_key(report_id: str) -> str:
    return f"tl:audit:report:{{{report_id}}}"


_AUDIT_INDEX_LUA: Final = """
-- Append a chunk of audit entries to their reports' lists, once.
-- KEYS[1] the index's cursor, KEYS[2..] one list per report; ARGV[1] the cursor the chunk was
--   read after, ARGV[2] the chunk's last entry id, then per list: how many ids, the ids
-- When another indexer moved the cursor first, it indexed this chunk: nothing is written.
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 0 end
local a = 3
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('RPUSH', KEYS[k], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def lease_key(task: str) -> str:
    return f"tl:lease:{task}"


@dataclass(frozen=True, slots=True)
class NewReport:
    """What the ingest script stores of one accepted report."""

    report_id: str
    envelope: bytes
    digest: bytes
    originator: str
    accepted_ms: int
    label: bytes
    suite: str
    grants: bytes
    recipients: Sequence[str]
    audit: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of an ingest: created, duplicate (same bytes) or conflict (other bytes)."""

    outcome: str
    accepted_ms: int = 0
    positions: tuple[str, ...] = ()
    grants: bytes = b""
    # For "over_quota": which quota ("inbox", "originator"), whose, and when it may fit.
    quota: str = ""
    partner: str = ""
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class InboxEntry:
    entry_id: str
    report_id: str
    originator: str
    deliveries: int
    kind: str = "report"  # "recall": the originator withdrew a report this partner had;
    # "gap": retention dropped entries this partner never acknowledged
    lost: int = 0
    before: str = ""
    bytes: int = 0  # the envelope's size, for a report entry written since quotas are counted


@dataclass(frozen=True, slots=True)
class Recalled:
    withdrawn: tuple[str, ...]  # recipients that never received it: their copy is gone
    notified: tuple[str, ...]  # recipients that had it: they get a recall notice


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """What delivery needs to re-run the engine without re-parsing the envelope."""

    envelope: bytes
    originator: str
    label: bytes
    suite: str
    recalled: bool


_LOG_APPEND_LUA: Final = """
-- Append each document not yet in the log, in order; return the log's size.
-- KEYS[1] the log list, KEYS[2] its index; ARGV pairs of (SHA-256 hex, document bytes)
local n = redis.call('LLEN', KEYS[1])
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    n = redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], n - 1)
  end
end
return n
"""
LOG_KEY: Final = "tl:log"
LOG_INDEX_KEY: Final = "tl:log:index"


class Store:
    def __init__(
        self,
        redis: aioredis.Redis,
        blocking: aioredis.Redis | None = None,
        *,
        pipeline: Pipeline | None = None,
    ) -> None:
        # redis-py types replies as unions that ignore decode_responses; ours are always bytes.
        self.redis: Any = redis
        # Blocking reads only (broker.connections): they never hold a connection of `redis`.
        self.blocking: Any = blocking if blocking is not None else redis
        self._ingest = redis.register_script(_INGEST_LUA)
        self._pipeline = pipeline
        self._recall = redis.register_script(_RECALL_LUA)
        self._ack = redis.register_script(_ACK_LUA)
        self._trim = redis.register_script(_TRIM_LUA)
        self._replay = redis.register_script(_REPLAY_LUA)
        self._dead_letter = redis.register_script(_DEAD_LETTER_LUA)
        self._withhold = redis.register_script(_WITHHOLD_LUA)
        self._log_append = redis.register_script(_LOG_APPEND_LUA)
        self._audit_index = redis.register_script(_AUDIT_INDEX_LUA)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def ensure_inboxes(self, partners: Sequence[str]) -> None:
        """Create each partner's inbox and consumer group, so a subscriber can wait on it."""
        for partner in partners:
            try:
                await self.redis.xgroup_create(inbox_key(partner), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def ingest(
        self,
        reports: Sequence[NewReport],
        *,
        retention_ms: int,
        nonce_key: str = "",
        nonce_ttl_s: int = 0,
        quotas: Quotas | None = None,
    ) -> list[Stored] | None:
        """Store each report all-or-nothing, in one round trip; the outcome of each in order.

        With ``nonce_key``, the request's nonce is recorded first, in the same step, and None
        is returned, with nothing stored, when it was seen before. A report that would take
        its originator or a recipient past ``quotas`` is not stored (outcome ``over_quota``)."""
        q = quotas or Quotas()
        keys = [AUDIT_KEY, nonce_key or "tl:nonce:-"]
        args: list[Any] = [
            nonce_ttl_s if nonce_key else 0, retention_ms, len(reports),
            q.inbox_reports, q.inbox_bytes, q.originator_reports, q.originator_bytes,
        ]  # fmt: skip
        for r in reports:
            keys += [
                report_key(r.report_id),
                quota_key(r.originator),
                *(inbox_key(p) for p in r.recipients),
                *(quota_key(p) for p in r.recipients),
            ]
            args += [
                r.report_id, r.envelope, r.digest, r.originator, r.accepted_ms, r.label,
                r.suite, r.grants, r.audit, len(r.recipients), *r.recipients,
            ]  # fmt: skip
        if self._pipeline is None:
            result = await self._ingest(keys=keys, args=args)
        else:
            result = await self._run_on_pipeline(self._pipeline, keys, args)
        if result == [b"replayed"]:
            return None
        out = []
        for i in range(0, len(result), 4):
            outcome = result[i].decode()
            if outcome == "conflict":
                out.append(Stored("conflict"))
                continue
            if outcome == "over_quota":
                quota, partner = result[i + 1].decode(), result[i + 2].decode()
                out.append(Stored(outcome, quota=quota, partner=partner,
                                  retry_after_s=int(result[i + 3])))  # fmt: skip
                continue
            positions = tuple(result[i + 2].decode().split(","))
            out.append(Stored(outcome, int(result[i + 1]), positions, result[i + 3]))
        return out

    async def _run_on_pipeline(self, pipeline: Pipeline, keys: list[str], args: list[Any]) -> Any:
        script = self._ingest
        try:
            return await pipeline.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed Redis forgot the script: EVAL loads and runs it.
            return await pipeline.execute("EVAL", script.script, len(keys), *keys, *args)

    async def report_facts(self, report_ids: Sequence[str]) -> dict[str, ReportFacts]:
        """What delivery needs of each report, in one round trip; expired ones are absent."""
        fields = ["envelope", "originator", "label", "suite", "recalled"]
        if self._pipeline is not None:
            pipeline = self._pipeline
            replies = await asyncio.gather(
                *(pipeline.execute("HMGET", report_key(r), *fields) for r in report_ids)
            )
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for report_id in report_ids:
                    pipe.hmget(report_key(report_id), fields)
                replies = await pipe.execute()
        return {
            report_id: ReportFacts(
                envelope=values[0],
                originator=values[1].decode(),
                label=values[2],
                suite=values[3].decode(),
                recalled=values[4] is not None,
            )
            for report_id, values in zip(report_ids, replies, strict=True)
            if values[0] is not None
        }

    async def receipt_inputs(self, report_id: str) -> dict[str, bytes] | None:
        values = await self.redis.hgetall(report_key(report_id))
        if not values:
            return None
        return {k.decode(): v for k, v in values.items() if k != b"envelope"}

    # --- delivery -------------------------------------------------------------------------

    async def read_inbox(
        self, partner: str, consumer: str, *, count: int, block_ms: int | None, after: str = ">"
    ) -> list[InboxEntry]:
        """New entries (``after=">"``) or this consumer's pending ones after an entry id.

        A read that blocks (``block_ms`` > 0) goes through the blocking client."""
        client = self.blocking if block_ms else self.redis
        streams = {inbox_key(partner): after}
        try:
            reply = await client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            # A Redis that lost its data (no AOF, a flush) lost the groups too: make it again.
            await self.ensure_inboxes([partner])
            reply = await client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        return _entries(reply)

    async def claim_stale(
        self, partner: str, consumer: str, *, idle_ms: int, count: int
    ) -> list[InboxEntry]:
        """Entries delivered to some consumer and not acked within the visibility timeout."""
        try:
            reply = await self.redis.xautoclaim(
                inbox_key(partner), GROUP, consumer, min_idle_time=idle_ms, start_id="0-0",
                count=count,
            )  # fmt: skip
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            await self.ensure_inboxes([partner])
            return []
        return _entries([[inbox_key(partner).encode(), reply[1]]])

    async def delivery_counts(self, partner: str, entry_ids: Sequence[str]) -> dict[str, int]:
        """How often each entry has been delivered, asked entry by entry in one round trip."""
        if not entry_ids:
            return {}
        key = inbox_key(partner)
        if self._pipeline is not None:
            pipeline = self._pipeline
            raw = await asyncio.gather(
                *(pipeline.execute("XPENDING", key, GROUP, e, e, 1) for e in entry_ids)
            )
            # XPENDING's extended form: [id, consumer, idle ms, times delivered] per entry.
            return {p[0].decode(): int(p[3]) for reply in raw for p in reply}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(key, GROUP, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {
            p["message_id"].decode(): int(p["times_delivered"]) for reply in replies for p in reply
        }

    async def ack(self, partner: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries of ``partner``'s inbox; each report acked is audited as received."""
        if not entry_ids:
            return 0
        keys = [inbox_key(partner), AUDIT_KEY, quota_key(partner)]
        return int(await self._ack(keys=keys, args=[partner, *entry_ids]))

    async def dead_letter(self, partner: str, entry: InboxEntry, reason: str) -> str | None:
        """Set an entry aside for the operator, with the reason; audited, atomically. Returns
        the dead letter's id, or None when the entry was no longer pending (another broker set
        it aside, or it was acked, first): an entry is never dead-lettered twice."""
        fields: list[Any] = [
            "entry", entry.entry_id, "report", entry.report_id, "originator", entry.originator,
            "kind", entry.kind, "reason", reason,
        ]  # fmt: skip
        if entry.kind == "gap":
            fields += ["lost", entry.lost, "before", entry.before]
        if entry.bytes:  # a replay queues it again, on the inbox quota again
            fields += ["bytes", entry.bytes]
        reply = await self._dead_letter(
            keys=[dead_key(partner), inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[entry.entry_id, partner, reason, entry.report_id, *fields],
        )
        return reply.decode() if reply else None

    async def dead_letters(
        self, partner: str, *, after: str | None, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """``partner``'s dead letters after ``after`` (exclusive), oldest first."""
        low = f"({after}" if after else "-"
        reply = await self.redis.xrange(dead_key(partner), min=low, max="+", count=count)
        return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in reply]

    async def dead_letter_entry(self, partner: str, dead_id: str) -> dict[str, str] | None:
        reply = await self.redis.xrange(dead_key(partner), min=dead_id, max=dead_id, count=1)
        if not reply:
            return None
        return {k.decode(): v.decode() for k, v in reply[0][1].items()}

    async def replay_dead_letter(self, partner: str, dead_id: str, operator: str) -> str | None:
        """Put a dead letter back in ``partner``'s inbox as a new entry (delivery re-checks the
        policy as for any entry), remove it from the dead letters, audit who did it. Returns
        the new entry id, or None when there is no such dead letter (already replayed)."""
        reply = await self._replay(
            keys=[dead_key(partner), inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[dead_id, _json({"partner": partner, "dead_letter": dead_id, "by": operator})],
        )
        return reply.decode() if reply else None

    async def report_routing(self, report_id: str) -> tuple[str, list[str]] | None:
        """The originator and the recipients of a stored report."""
        originator, recipients = await self.redis.hmget(
            report_key(report_id), ["originator", "recipients"]
        )
        if originator is None:
            return None
        return originator.decode(), recipients.decode().split(",")

    async def recall(self, report_id: str, originator: str, recipients: Sequence[str]) -> Recalled:
        """Withdraw undelivered copies and notify recipients that had it; idempotent."""
        keys = [
            report_key(report_id), AUDIT_KEY,
            *(inbox_key(p) for p in recipients), *(quota_key(p) for p in recipients),
        ]  # fmt: skip
        result = await self._recall(keys=keys, args=[report_id, originator, *recipients])
        withdrawn, _, notified = result.decode().partition(";")
        return Recalled(
            tuple(p for p in withdrawn.split(",") if p), tuple(p for p in notified.split(",") if p)
        )

    async def audit(self, event: str, report_id: str, data: bytes) -> None:
        await self.redis.xadd(AUDIT_KEY, {"event": event, "report": report_id, "data": data})

    async def withhold(self, partner: str, entry: InboxEntry, data: bytes) -> None:
        """Drop an entry the engine now refuses (policy changed), and say so in the audit."""
        await self._withhold(
            keys=[inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[entry.entry_id, entry.report_id, data],
        )

    async def hold_back(
        self, partner: str, consumer: str, entries: Sequence[tuple[str, int]], *, idle_ms: int
    ) -> None:
        """Hand entries read but left out of a page (its byte budget) straight back: they stay
        pending, made idle for ``idle_ms`` (the visibility timeout) so the next read claims them
        at once. Each is ``(entry id, delivery count to set)``: the count before this read, so
        being held back never brings an entry closer to the dead letters."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, count in entries:
                pipe.xclaim(
                    inbox_key(partner), GROUP, consumer, 0, [entry_id],
                    idle=idle_ms, retrycount=max(0, count), justid=True,
                )  # fmt: skip
            await pipe.execute()

    async def quota_usage(self, partner: str) -> dict[str, int]:
        """What counts against ``partner``'s quotas now: ``queued_reports``, ``queued_bytes``
        (its inbox), ``stored_reports``, ``stored_bytes`` (as originator)."""
        names = ("queued_reports", "queued_bytes", "stored_reports", "stored_bytes")
        values = await self.redis.hmget(quota_key(partner), names)
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}

    async def memory(self) -> dict[str, Any]:
        """Redis's ``INFO memory``: used_memory, maxmemory (0: none), maxmemory_policy."""
        info: dict[str, Any] = await self.redis.info("memory")
        return info

    async def audit_after(self, after: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Audit entries after ``after`` (exclusive), oldest first."""
        reply = await self.redis.xrange(AUDIT_KEY, min=f"({after}", max="+", count=count)
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in reply
        ]

    async def last_checkpoint(self) -> dict[str, str] | None:
        reply = await self.redis.xrevrange(CHECKPOINTS_KEY, count=1)
        if not reply:
            return None
        return {k.decode(): v.decode() for k, v in reply[0][1].items()}

    async def add_checkpoint(self, fields: dict[str, str]) -> None:
        await self.redis.xadd(CHECKPOINTS_KEY, fields)

    async def log_append(self, documents: Sequence[bytes]) -> int:
        """Append the documents the log does not hold yet (atomically: two workers reloading
        at once append each document once); the log's size after."""
        args: list[bytes | str] = []
        for doc in documents:
            args += [hashlib.sha256(doc).hexdigest(), doc]
        return int(await self._log_append(keys=[LOG_KEY, LOG_INDEX_KEY], args=args))

    async def log_leaves(self, start: int = 0) -> list[bytes]:
        """The log's leaves from index ``start`` on."""
        leaves: list[bytes] = await self.redis.lrange(LOG_KEY, start, -1)
        return leaves

    async def take_lease(self, task: str, holder: str, lease_ms: int) -> bool:
        """One broker process runs ``task`` at a time; the lease lapses if its holder dies."""
        key = lease_key(task)
        if await self.redis.set(key, holder, nx=True, px=lease_ms):
            return True
        if await self.redis.get(key) == holder.encode():
            await self.redis.pexpire(key, lease_ms)
            return True
        return False

    async def trim_inbox(self, partner: str, cutoff_ms: int) -> tuple[int, int]:
        """Drop ``partner``'s entries older than ``cutoff_ms``; returns (trimmed, lost), where
        lost counts the ones never acknowledged. A loss leaves the partner a gap notice."""
        reply = await self._trim(
            keys=[inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[f"{cutoff_ms}-0", partner],
        )
        return int(reply[0]), int(reply[1])

    async def audit_entries(self, report_id: str | None, count: int = 1000) -> list[dict[str, str]]:
        reply = await self.redis.xrevrange(AUDIT_KEY, count=count)
        out = []
        for entry_id, fields in reply:
            row = {k.decode(): v.decode() for k, v in fields.items()}
            if report_id is None or row.get("report") == report_id:
                out.append({"entry": entry_id.decode(), **row})
        return out

    async def index_audit(self, chunk: int) -> int:
        """Add the audit entries after the index's cursor (at most ``chunk``) to their reports'
        lists, and move the cursor past them, atomically; how many entries were read (0: the
        index is complete). Brokers may run it at once: each chunk is applied once.

        The lists are derived from the stream, so no writer of audit entries has to know of
        them, and a trail written before the index existed is indexed on the first run."""
        cursor = (await self.redis.get(AUDIT_INDEXED_KEY) or b"0-0").decode()
        reply = await self.redis.xrange(AUDIT_KEY, min=f"({cursor}", max="+", count=chunk)
        if not reply:
            return 0
        by_report: dict[str, list[str]] = {}
        for entry_id, fields in reply:
            report_id = fields.get(b"report", b"").decode()
            if report_id:  # a gap notice concerns no report
                by_report.setdefault(report_id, []).append(entry_id.decode())
        keys = [AUDIT_INDEXED_KEY]
        args: list[Any] = [cursor, reply[-1][0].decode()]
        for report_id, ids in by_report.items():
            keys.append(audit_index_key(report_id))
            args += [len(ids), *ids]
        await self._audit_index(keys=keys, args=args)
        return len(reply)

    async def audit_trail(self, report_id: str, count: int) -> list[dict[str, str]]:
        """The newest ``count`` audit entries about ``report_id``, newest first, however old,
        from its list (as far as :meth:`index_audit` has gone)."""
        ids = await self.redis.lrange(audit_index_key(report_id), -count, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in reversed(ids):
                pipe.xrange(AUDIT_KEY, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return [
            {"entry": entry_id.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
            for reply in replies
            for entry_id, fields in reply
        ]


def _no_group(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _entries(reply: Any) -> list[InboxEntry]:
    out = []
    for _stream, messages in reply or ():
        for entry_id, fields in messages:
            if not fields:  # deleted while pending: nothing left to deliver
                continue
            out.append(
                InboxEntry(
                    entry_id=entry_id.decode(),
                    report_id=fields.get(b"report", b"").decode(),
                    originator=fields.get(b"originator", b"").decode(),
                    deliveries=1,
                    kind=fields.get(b"kind", b"report").decode(),
                    lost=int(fields.get(b"lost", 0)),
                    before=fields.get(b"before", b"").decode(),
                    bytes=int(fields.get(b"bytes", 0)),
                )
            )
    return out
