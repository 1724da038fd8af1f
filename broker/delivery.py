"""Delivering inbox entries (§7): claim stale ones, read new ones, re-check the policy.

The engine runs again at delivery time: a partner suspended, an agreement ended or a key
revoked after a report was posted stops its delivery at once. A withheld entry is acked (it
will never be deliverable under the policy that refused it) and recorded in the audit stream.

An entry that cannot be delivered for a reason of its own (its label no longer parses under
today's scheme, its report is unreadable) is a *poison* entry: it goes to the dead-letter
stream on its own, with the reason, and never fails the poll or takes valid entries with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tearline.broker.connections import block_slice_ms
from tearline.broker.metrics import DEAD_LETTERED, WITHHELD
from tearline.broker.state import BrokerState
from tearline.broker.store import InboxEntry, ReportFacts
from tearline.clients.errors import TearlineError
from tearline.clients.protocol.encoding import compact_json
from tearline.clients.protocol.label import Label

log = logging.getLogger("tearline.broker")


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
    slice_ms = block_slice_ms(state.settings)
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
            # Never 0: to Redis, BLOCK 0 means forever.
            may_block = not entries and remaining_ms > 0 and not state.stopping.is_set()
            count = limit - len(entries)
            if may_block:
                entries += await _read_unless_stopping(
                    state, partner, consumer, count, min(remaining_ms, slice_ms)
                )
            else:
                entries += await store.read_inbox(partner, consumer, count=count, block_ms=None)
        entries, held = _within_page(entries, state.settings.max_inbox_page_bytes)
        if held:
            counts = await store.delivery_counts(partner, [e.entry_id for e in held])
            await store.hold_back(
                partner,
                consumer,
                [(e.entry_id, counts.get(e.entry_id, 1) - 1) for e in held],
                idle_ms=state.settings.visibility_timeout_ms,
            )
        delivered = await _deliverable(state, partner, entries)
        if delivered or time.monotonic() >= deadline or state.stopping.is_set():
            return delivered


def _within_page(
    entries: list[InboxEntry], budget_bytes: int
) -> tuple[list[InboxEntry], list[InboxEntry]]:
    """The entries whose envelopes fit in ``budget_bytes`` (always the first, whatever its
    size), and the rest, in order: one page never holds the broker's memory hostage (a 53 MB
    page once tripled it). Sizes come from the inbox entries, before any envelope is read."""
    total = 0
    for i, entry in enumerate(entries):
        total += entry.bytes
        if i > 0 and total > budget_bytes:
            return entries[:i], entries[i:]
    return entries, []


async def _read_unless_stopping(
    state: BrokerState, partner: str, consumer: str, count: int, block_ms: int
) -> list[InboxEntry]:
    """A blocking read that ends early, empty, when the server starts shutting down.

    An entry Redis handed over just as the read was cancelled stays pending for this consumer
    and comes back after the visibility timeout: at least once, never lost."""
    read = asyncio.ensure_future(
        state.store.read_inbox(partner, consumer, count=count, block_ms=block_ms)
    )
    stop = asyncio.ensure_future(state.stopping.wait())
    try:
        await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        if read.done():
            return read.result()
        return []
    finally:
        for task in (read, stop):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _deliverable(
    state: BrokerState, partner: str, entries: list[InboxEntry]
) -> list[Delivered]:
    if not entries:
        return []
    store = state.store
    # Two independent reads, sent together: one round trip of latency for the pair.
    counts, facts_of = await asyncio.gather(
        store.delivery_counts(partner, [e.entry_id for e in entries]),
        store.report_facts([e.report_id for e in entries if e.kind == "report"]),
    )
    now = state.clock()
    out = []
    for entry in entries:
        deliveries = counts.get(entry.entry_id, 1)
        if deliveries > state.settings.max_deliveries:
            why = f"delivered {deliveries - 1} times without ack"
            if await store.dead_letter(partner, entry, why):
                DEAD_LETTERED.labels(cause="max_deliveries").inc()
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
            WITHHELD.inc()
            continue
        originator = state.policy.registry.get(facts.originator)
        if originator is None or not originator.active:
            # Suspending an originator stops its queued reports too, but reversibly: they are
            # set aside for the operator, who replays them if the suspension is lifted.
            why = f"originator {facts.originator} is suspended or removed; replay if reinstated"
            if await store.dead_letter(partner, entry, why):
                DEAD_LETTERED.labels(cause="originator_suspended").inc()
            continue
        try:
            reason = _refusal(state, partner, facts, now)
        except (TearlineError, ValueError, KeyError, TypeError) as exc:
            # Poison: this entry cannot be judged today (say, its label names a caveat the
            # operator removed from the scheme). It alone is set aside, for the operator to
            # inspect and replay once the cause is fixed; the rest of the batch goes out.
            why = exc.message if isinstance(exc, TearlineError) else f"{type(exc).__name__}: {exc}"
            log.warning("inbox %s entry %s dead-lettered: %s", partner, entry.entry_id, why)
            if await store.dead_letter(partner, entry, f"undeliverable: {why}"):
                DEAD_LETTERED.labels(cause="undeliverable").inc()
            continue
        if reason is not None:
            await store.withhold(
                partner,
                entry,
                compact_json({"partner": partner, "reason": reason}),
            )
            WITHHELD.inc()
            continue
        out.append(
            Delivered(entry.entry_id, entry.report_id, facts.originator, facts.envelope, deliveries)
        )
    return out


def _refusal(state: BrokerState, partner: str, facts: ReportFacts, now: datetime) -> str | None:
    """The engine's reason to withhold this report from ``partner`` today, or None to deliver."""
    label = Label.from_dict(json.loads(facts.label))
    decision = state.policy.decide(
        label, facts.originator, facts.suite, now, recalled=facts.recalled, partners=[partner]
    )[partner]
    return None if decision.reason is None else decision.reason.value
