"""Retention (DESIGN §7): inbox entries older than ``retention_days`` are trimmed (MINID).

Reports expire with their own TTL; this trims the streams that point at them. An entry a partner
never acknowledged is not dropped silently: the partner gets a gap notice saying how many it
lost, and the audit trail records it.
"""

from __future__ import annotations

from datetime import timedelta

from tearline.broker.state import BrokerState


async def enforce(state: BrokerState) -> dict[str, int]:
    """Trim every inbox to the retention window; returns the entries lost per partner."""
    cutoff = state.clock() - timedelta(days=state.settings.retention_days)
    cutoff_ms = int(cutoff.timestamp() * 1000)
    lost = {}
    for partner in state.policy.registry.ids:
        _, missed = await state.store.trim_inbox(partner, cutoff_ms)
        if missed:
            lost[partner] = missed
    return lost
