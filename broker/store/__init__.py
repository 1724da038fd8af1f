"""Everything the broker keeps in Redis (DESIGN §7), and nothing else touches Redis keys.

The rest of the broker uses one class, :class:`Store`, made of one part per concern:

    keys.py          every key's name, and what lives there (below)
    lua.py           the Lua scripts, read once from scripts/*.lua (package data; below)
    base.py          StoreBase: the Redis connections and the registered scripts; ping, memory
    reports.py       ReportStore: ingest, what delivery and receipts read, recall
    inbox.py         InboxStore: inboxes, reads, delivery counts, acks, hold back, withhold
    dead_letters.py  DeadLetterStore: set aside, list, replay
    audit.py         AuditStore: the audit stream, its per-report index, its checkpoints
    log.py           LogStore: the transparency log's leaves
    quotas.py        Quotas (the limits) and QuotaStore: what counts against them now
    upkeep.py        UpkeepStore: the retention trim, the leases of periodic tasks

Keys (keys.py; a ``{…}`` part is a hash tag, so the layout can move to Redis Cluster; ``P`` a
partner's code, ``id`` a report's id):

    tl:report:{id}        hash: the envelope bytes, their digest, routing facts, the receipt
                          inputs; a recall's outcome. Expires after the retention window
    tl:inbox:{P}          stream per recipient: one entry per report for P, and P's recall and
                          gap notices; consumer group "tl" (GROUP)
    tl:dead:{P}           stream: P's entries delivered more than max_deliveries times, or not
                          deliverable, with the reason, until an operator replays them
    tl:quota:{P}          hash: P's storage quotas' counts (below)
    tl:audit              stream: the audit trail, one entry per event (accepted, received,
                          withheld, recalled, dead_lettered, replayed, gap)
    tl:audit:checkpoints  stream: the audit trail's signed checkpoints (broker.audit)
    tl:audit:report:{id}  list: the ids of the audit entries about report id, oldest first
    tl:audit:indexed      string: the last audit entry the per-report lists cover
    tl:log                list: the transparency log's leaves, the governance documents' bytes
    tl:log:index          hash: SHA-256 of a document → its index in tl:log (appended once)
    tl:nonce:P:n          string: request nonce n of P, seen within the replay window (no hash
                          tag); tl:nonce:- stands in the ingest script's keys when the request's
                          nonce was checked before, and is never written
    tl:lease:task         string: the broker process that runs periodic task now (no hash tag)

Scripts (scripts/*.lua, run by the method named; each is atomic; the keys it is given):

    ingest.lua       Store.ingest: one or more reports, each all-or-nothing (the request's
                     nonce first). tl:audit, tl:nonce:P:n; per report tl:report:{id}, the
                     originator's tl:quota:{O}, each recipient's tl:inbox:{R} and tl:quota:{R}
    ack.lua          Store.ack: acknowledge entries, audit each report as received.
                     tl:inbox:{P}, tl:audit, tl:quota:{P}
    withhold.lua     Store.withhold: drop an entry the policy now refuses, audited.
                     tl:inbox:{P}, tl:audit, tl:quota:{P}
    recall.lua       Store.recall: withdraw undelivered copies, notify who had it; idempotent.
                     tl:report:{id}, tl:audit, each recipient's tl:inbox:{R}, then tl:quota:{R}
    dead_letter.lua  Store.dead_letter: set an entry aside with the reason, audited, once.
                     tl:dead:{P}, tl:inbox:{P}, tl:audit, tl:quota:{P}
    replay.lua       Store.replay_dead_letter: a dead letter back into the inbox, audited.
                     tl:dead:{P}, tl:inbox:{P}, tl:audit, tl:quota:{P}
    trim.lua         Store.trim_inbox: retention; a loss becomes a gap notice; recount quota.
                     tl:inbox:{P}, tl:audit, tl:quota:{P}
    audit_index.lua  Store.index_audit: a chunk of audit entries onto their reports' lists,
                     once. tl:audit:indexed, each report's tl:audit:report:{id}
    log_append.lua   Store.log_append: each document not yet in the log, once, in order.
                     tl:log, tl:log:index
    release.lua      no script of its own: the function release(inbox, quota, id), put
                     before withhold, recall and dead_letter (lua.py)

An accepted report is written all-or-nothing by the ingest script: envelope, inbox entries,
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

from tearline.broker.store.audit import AuditStore
from tearline.broker.store.dead_letters import DeadLetterStore
from tearline.broker.store.inbox import InboxEntry, InboxStore
from tearline.broker.store.keys import (
    AUDIT_INDEXED_KEY,
    AUDIT_KEY,
    CHECKPOINTS_KEY,
    GROUP,
    LOG_INDEX_KEY,
    LOG_KEY,
    NO_NONCE_KEY,
    audit_index_key,
    dead_key,
    inbox_key,
    lease_key,
    nonce_key,
    quota_key,
    report_key,
)
from tearline.broker.store.log import LogStore
from tearline.broker.store.quotas import Quotas, QuotaStore
from tearline.broker.store.reports import NewReport, Recalled, ReportFacts, ReportStore, Stored
from tearline.broker.store.upkeep import UpkeepStore


class Store(
    ReportStore, InboxStore, DeadLetterStore, AuditStore, LogStore, QuotaStore, UpkeepStore
):
    """The store: every concern's methods over one Redis connection (and, for blocking reads,
    a second), built as ``Store(redis, blocking, pipeline=…)``."""


__all__ = [
    "AUDIT_INDEXED_KEY",
    "AUDIT_KEY",
    "CHECKPOINTS_KEY",
    "GROUP",
    "LOG_INDEX_KEY",
    "LOG_KEY",
    "NO_NONCE_KEY",
    "InboxEntry",
    "NewReport",
    "Quotas",
    "Recalled",
    "ReportFacts",
    "Store",
    "Stored",
    "audit_index_key",
    "dead_key",
    "inbox_key",
    "lease_key",
    "nonce_key",
    "quota_key",
    "report_key",
]
