"""Accepting a report (§5, §6): verify, check every slot against the engine, store atomically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from broker.state import BrokerState
from clients.errors import ConflictError, DeniedError
from clients.protocol import crypto
from clients.protocol.encoding import b64e, compact_json, format_time
from clients.protocol.envelope import verify
from clients.protocol.receipt import Delivery, Receipt, sign_receipt


async def accept_report(state: BrokerState, caller: str, body: bytes) -> tuple[bytes, bool]:
    """Returns the signed receipt (JSON bytes) and whether this was an idempotent replay."""
    now = state.clock()
    policy = state.policy
    settings = state.settings
    verified = verify(
        body,
        policy.registry,
        policy.scheme,
        now=now,
        max_age=timedelta(seconds=settings.max_report_age_s),
    )
    header = verified.header
    if header.originator != caller:
        raise DeniedError(
            f"the request is signed by {caller} but the report's originator is "
            f"{header.originator}; partners post only their own reports",
            code="not_originator",
        )
    slots = header.recipient_ids
    decisions = policy.decide(header.label, header.originator, header.suite, now, partners=slots)
    denied = {p: d.reason.value for p, d in decisions.items() if d.reason is not None}
    if denied:
        raise DeniedError(
            "the report has recipient slots for partners who are not entitled to it; "
            "nothing was stored",
            code="recipient_not_entitled",
            details={"denied": denied},
        )
    grants = {p: decisions[p].agreement for p in slots}
    envelope_sha256 = crypto.sha256(body)
    accepted_ms = int(now.timestamp() * 1000)
    audit = compact_json(
        {"originator": header.originator, "suite": header.suite, "granted": grants}
    )
    stored = await state.store.ingest(
        report_id=header.id,
        envelope=body,
        digest=envelope_sha256,
        originator=header.originator,
        accepted_ms=accepted_ms,
        label=compact_json(header.label.to_dict()),
        suite=header.suite,
        grants=compact_json(grants),
        recipients=slots,
        retention_ms=settings.retention_days * 86_400_000,
        audit=audit,
    )
    if stored.outcome == "conflict":
        raise ConflictError(
            f"report {header.id} was already accepted with different bytes; "
            "a report id names exactly one envelope",
            code="id_conflict",
        )
    stored_grants = json.loads(stored.grants)
    receipt = Receipt(
        id=header.id,
        originator=header.originator,
        envelope_sha256=b64e(envelope_sha256),
        accepted_at=format_time(_from_ms(stored.accepted_ms)),
        recipients=tuple(
            Delivery(p, stored_grants[p], pos)
            for p, pos in zip(slots, stored.positions, strict=True)
        ),
    )
    signed = sign_receipt(receipt, state.key.kid, state.key.signer)
    return compact_json(signed), stored.outcome == "duplicate"


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
