"""Accepting a report (§5, §6): verify, check every slot against the engine, store atomically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from broker.state import BrokerState
from clients.errors import ConflictError, DeniedError, EnvelopeError
from clients.protocol import crypto
from clients.protocol.encoding import b64d, b64e, compact_json, format_time, strict_loads
from clients.protocol.envelope import VerifiedEnvelope, verify
from clients.protocol.receipt import Delivery, Receipt, sign_receipt


async def accept_report(state: BrokerState, caller: str, body: bytes) -> tuple[bytes, bool]:
    """Returns the signed receipt (JSON bytes) and whether this was an idempotent replay.

    A retry of bytes already accepted gets the same receipt even when today's checks would
    refuse them (the policy changed, or the envelope is now older than the age bound): the
    report was accepted once, and the sender must be able to learn so.
    """
    envelope_sha256 = crypto.sha256(body)
    try:
        verified, grants = _check(state, caller, body)
    except (EnvelopeError, DeniedError):
        replay = await _stored_receipt(state, caller, body, envelope_sha256)
        if replay is None:
            raise
        return replay, True
    header = verified.header
    slots = header.recipient_ids
    stored = await state.store.ingest(
        report_id=header.id,
        envelope=body,
        digest=envelope_sha256,
        originator=header.originator,
        accepted_ms=int(state.clock().timestamp() * 1000),
        label=compact_json(header.label.to_dict()),
        suite=header.suite,
        grants=compact_json(grants),
        recipients=slots,
        retention_ms=state.settings.retention_days * 86_400_000,
        audit=compact_json(
            {"originator": header.originator, "suite": header.suite, "granted": grants}
        ),
    )
    if stored.outcome == "conflict":
        raise ConflictError(
            f"report {header.id} was already accepted with different bytes; "
            "a report id names exactly one envelope",
            code="id_conflict",
        )
    receipt = _receipt(
        header.id, header.originator, envelope_sha256, stored.accepted_ms, slots,
        stored.positions, json.loads(stored.grants),
    )  # fmt: skip
    return compact_json(sign_receipt(receipt, state.key.kid, state.key.signer)), (
        stored.outcome == "duplicate"
    )


def _check(state: BrokerState, caller: str, body: bytes) -> tuple[VerifiedEnvelope, dict[str, str]]:
    """Verify the envelope and refuse it unless every recipient slot is entitled; returns it
    with the agreement that grants each slot."""
    now = state.clock()
    policy = state.policy
    verified = verify(
        body,
        policy.registry,
        policy.scheme,
        now=now,
        max_age=timedelta(seconds=state.settings.max_report_age_s),
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
    for slot in header.recipients:
        owner = policy.registry.key(slot.kid)
        # The engine asks whether the partner has some valid key; the slot must use one.
        if slot.partner not in denied and (owner is None or not owner.record.valid_at(now)):
            denied[slot.partner] = "NO_ENCRYPTION_KEY"
    if denied:
        raise DeniedError(
            "the report has recipient slots for partners who are not entitled to it; "
            "nothing was stored",
            code="recipient_not_entitled",
            details={"denied": denied},
        )
    return verified, {p: d.agreement for p, d in decisions.items() if d.agreement is not None}


async def _stored_receipt(
    state: BrokerState, caller: str, body: bytes, envelope_sha256: bytes
) -> bytes | None:
    """The receipt of an identical, already accepted envelope from the same caller, if any."""
    try:
        report_id = strict_loads(b64d(strict_loads(body)["header"]))["id"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(report_id, str):
        return None
    stored = await state.store.receipt_inputs(report_id)
    if stored is None or stored.get("digest") != envelope_sha256:
        return None
    if stored["originator"].decode() != caller:
        return None
    receipt = _receipt(
        report_id,
        caller,
        envelope_sha256,
        int(stored["accepted_ms"]),
        stored["recipients"].decode().split(","),
        stored["positions"].decode().split(","),
        json.loads(stored["grants"]),
    )
    return compact_json(sign_receipt(receipt, state.key.kid, state.key.signer))


def _receipt(
    report_id: str,
    originator: str,
    envelope_sha256: bytes,
    accepted_ms: int,
    slots: list[str],
    positions: list[str] | tuple[str, ...],
    grants: dict[str, str],
) -> Receipt:
    return Receipt(
        id=report_id,
        originator=originator,
        envelope_sha256=b64e(envelope_sha256),
        accepted_at=format_time(datetime.fromtimestamp(accepted_ms / 1000, UTC)),
        recipients=tuple(
            Delivery(p, grants[p], pos) for p, pos in zip(slots, positions, strict=True)
        ),
    )
