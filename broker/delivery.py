"""Delivering inbox entries (§7): claim stale ones, read new ones, re-check the policy.

The engine runs again at delivery time: a partner suspended, an agreement ended or a key
revoked after a report was posted stops its delivery at once. A withheld entry is acked (it
will never be deliverable under the policy that refused it) and recorded in the audit stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from broker.state import BrokerState
from broker.store import InboxEntry
from clients.protocol.encoding import compact_json
from clients.protocol.label import Label


@dataclass(frozen=True, slots=True)
class Delivered:
    entry_id: str
    report_id: str
    originator: str
    envelope: bytes | None  # None for a notice
    deliveries: int
    kind: str = "report"  # or a notice: "recall", "gap"
    gap: dict[str, Any] | None = None  # for a gap: how many entries were lost, before which id

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "kind": self.kind,
            "report_id": self.report_id,
            "originator": self.originator,
            "deliveries": self.deliveries,
            "envelope": None if self.envelope is None else self.envelope.decode(),
            "gap": self.gap,
        }


async def next_batch(
    state: BrokerState,
    partner: str,
    consumer: str,
    *,
    limit: int,
    wait_s: float,
    after: str | None = None,
) -> list[Delivered]:
    """Up to ``limit`` deliverable entries, waiting up to ``wait_s`` for the first one.

    With ``after`` (an SSE ``Last-Event-ID``), this consumer's unacknowledged entries after
    that id come first, so a reconnecting stream resumes where it stopped.
    """
    store = state.store
    deadline = time.monotonic() + wait_s
    # Block in slices, so an entry whose visibility timeout runs out during a long wait is
    # claimed within a quarter of that timeout rather than after the whole wait.
    slice_ms = max(100, state.settings.visibility_timeout_ms // 4)
    while True:
        entries: list[InboxEntry] = []
        if after is not None:
            entries = await store.read_inbox(
                partner, consumer, count=limit, block_ms=None, after=after
            )
            after = None
        if len(entries) < limit:
            entries += await store.claim_stale(
                partner,
                consumer,
                idle_ms=state.settings.visibility_timeout_ms,
                count=limit - len(entries),
            )
        if len(entries) < limit:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            block = min(remaining_ms, slice_ms) if not entries and remaining_ms > 0 else None
            entries += await store.read_inbox(
                partner, consumer, count=limit - len(entries), block_ms=block
            )
        delivered = await _deliverable(state, partner, entries)
        if delivered or time.monotonic() >= deadline:
            return delivered


async def _deliverable(
    state: BrokerState, partner: str, entries: list[InboxEntry]
) -> list[Delivered]:
    if not entries:
        return []
    store = state.store
    counts = await store.delivery_counts(partner, [e.entry_id for e in entries])
    now = state.clock()
    policy = state.policy
    out = []
    facts_of = await store.report_facts([e.report_id for e in entries if e.kind == "report"])
    for entry in entries:
        deliveries = counts.get(entry.entry_id, 1)
        if deliveries > state.settings.max_deliveries:
            await store.dead_letter(partner, entry, f"delivered {deliveries - 1} times without ack")
            continue
        if entry.kind != "report":  # a notice: it carries no report to re-check
            gap = {"lost": entry.lost, "before": entry.before} if entry.kind == "gap" else None
            notice = Delivered(
                entry.entry_id, entry.report_id, entry.originator, None, deliveries, entry.kind, gap
            )
            out.append(notice)
            continue
        facts = facts_of.get(entry.report_id)
        if facts is None:  # the report outlived retention: nothing left to deliver, but say so
            await store.withhold(
                partner, entry, compact_json({"partner": partner, "reason": "RETENTION_EXPIRED"})
            )
            continue
        label = Label.from_dict(json.loads(facts.label))
        decision = policy.decide(
            label, facts.originator, facts.suite, now, recalled=facts.recalled, partners=[partner]
        )[partner]
        if decision.reason is not None:
            await store.withhold(
                partner,
                entry,
                compact_json({"partner": partner, "reason": decision.reason.value}),
            )
            continue
        out.append(
            Delivered(entry.entry_id, entry.report_id, facts.originator, facts.envelope, deliveries)
        )
    return out
