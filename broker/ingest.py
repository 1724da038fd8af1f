"""Accepting a report (§5, §6): verify, check every slot against the engine, store atomically."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tearline.broker.memory import STORE_FULL_RETRY_AFTER_S
from tearline.broker.settings import Settings
from tearline.broker.signatures import Authenticated, nonce_ttl_s, replayed
from tearline.broker.state import BrokerState
from tearline.broker.store import NewReport, Quotas, Stored, keys
from tearline.clients.errors import (
    ConflictError,
    DeniedError,
    EnvelopeError,
    InternalError,
    RateLimitedError,
    TearlineError,
    TooLargeError,
    UnavailableError,
)
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64d, b64e, compact_json, format_time, strict_loads
from tearline.clients.protocol.envelope import VerifiedEnvelope, verify
from tearline.clients.protocol.receipt import Delivery, Receipt, sign_receipt

log = logging.getLogger("tearline.broker")


@dataclass(frozen=True, slots=True)
class Accepted:
    """One report's answer: the signed receipt (JSON bytes) and whether it was a replay."""

    receipt: bytes
    replayed: bool


async def accept_report(
    state: BrokerState, caller: Authenticated, body: bytes, *, nonce_checked: bool = False
) -> Accepted:
    """Accept one envelope, or raise the refusal. Unless ``nonce_checked``, the request's
    nonce is recorded in the same Redis step as the report (one round trip per post)."""
    (outcome,) = await accept_reports(state, caller, [body], nonce_checked=nonce_checked)
    if isinstance(outcome, TearlineError):
        raise outcome
    return outcome


async def accept_reports(
    state: BrokerState,
    caller: Authenticated,
    bodies: Sequence[bytes],
    *,
    nonce_checked: bool = False,
) -> list[Accepted | TearlineError]:
    """Each envelope verified, decided, stored and receipted on its own, all-or-nothing per
    report, in one Redis round trip for all of them; the outcome of each, in order.

    A retry of bytes already accepted gets the same receipt even when today's checks would
    refuse them (the policy changed, or the envelope is now older than the age bound): the
    report was accepted once, and the sender must be able to learn so.

    Raises AuthenticationError (``replayed_request``), with nothing stored, when the request's
    nonce was seen before.
    """
    now = state.clock()
    accepted_ms = int(now.timestamp() * 1000)
    outcomes: list[Accepted | TearlineError | None] = [None] * len(bodies)
    refused: dict[int, tuple[TearlineError, bytes]] = {}
    new: list[tuple[int, NewReport, bytes]] = []
    limit = state.settings.max_envelope_bytes
    for i, body in enumerate(bodies):
        if len(body) > limit:  # in a batch; a single post's body was bounded as it was read
            outcomes[i] = TooLargeError(f"the envelope is over the {limit}-byte limit")
            continue
        digest = crypto.sha256(body)
        try:
            verified, grants = _check(state, caller.partner, body, now)
            report = _new_report(verified, body, digest, accepted_ms, grants)
        except (EnvelopeError, DeniedError) as exc:
            refused[i] = (exc, digest)
            continue
        except Exception:
            # A bug must not take the batch's other reports down with it, nor leave the
            # request's nonce unspent: this envelope alone fails.
            log.exception("envelope %d of a post by %s failed unexpectedly", i, caller.partner)
            outcomes[i] = InternalError(
                "the broker failed on this envelope (nothing of it was stored); the operator's "
                "log says why"
            )
            continue
        new.append((i, report, digest))
    if new and state.memory.full:
        # Redis is near its maxmemory: no new report, so acks and reads keep the room they
        # need. A retry of one already accepted still gets its receipt (below).
        full = UnavailableError(
            "the broker's store is nearly full; the operator has been alerted, try again later",
            code="store_full",
            retry_after_s=STORE_FULL_RETRY_AFTER_S,
        )
        refused |= {i: (full, digest) for i, _, digest in new}
        new = []
    stored = await state.store.ingest(
        [r for _, r, _ in new],
        retention_ms=state.settings.retention_days * 86_400_000,
        nonce_key="" if nonce_checked else keys.nonce_key(caller.partner, caller.nonce),
        nonce_ttl_s=nonce_ttl_s(state.settings.replay_window_s),
        quotas=quotas(state.settings),
    )
    if stored is None:
        raise replayed(caller)
    for (i, report, digest), result in zip(new, stored, strict=True):
        if result.outcome == "over_quota":
            outcomes[i] = _over_quota(result)
            continue
        if result.outcome == "conflict":
            outcomes[i] = ConflictError(
                f"report {report.report_id} was already accepted with different bytes; "
                "a report id names exactly one envelope",
                code="id_conflict",
            )
            continue
        receipt = _receipt(
            report.report_id, report.originator, digest, result.accepted_ms,
            report.recipients, result.positions, json.loads(result.grants),
        )  # fmt: skip
        signed = compact_json(sign_receipt(receipt, state.key.kid, state.key.signer))
        outcomes[i] = Accepted(signed, result.outcome == "duplicate")
    for i, (refusal, digest) in refused.items():
        replay = await _stored_receipt(state, caller.partner, bodies[i], digest)
        outcomes[i] = refusal if replay is None else Accepted(replay, True)
    return [o for o in outcomes if o is not None]


def quotas(settings: Settings) -> Quotas:
    return Quotas(
        inbox_reports=settings.max_inbox_queued_reports,
        inbox_bytes=settings.max_inbox_queued_bytes,
        originator_reports=settings.max_originator_stored_reports,
        originator_bytes=settings.max_originator_stored_bytes,
    )


def _over_quota(result: Stored) -> TearlineError:
    if result.quota == "inbox":
        return RateLimitedError(
            f"{result.partner}'s inbox holds as many reports (or bytes) as it may until "
            f"{result.partner} acknowledges some; nothing was stored: try again later, or seal "
            f"the report without {result.partner}",
            code="recipient_inbox_full",
            details={"partner": result.partner},
            retry_after_s=result.retry_after_s,
        )
    return RateLimitedError(
        f"{result.partner} holds as many reports (or bytes) in this broker as it may within "
        "the retention window; nothing was stored: room comes back as its oldest reports "
        "expire, or the operator raises the quota",
        code="originator_quota_exceeded",
        details={"partner": result.partner},
        retry_after_s=result.retry_after_s,
    )


def _new_report(
    verified: VerifiedEnvelope, body: bytes, digest: bytes, accepted_ms: int, grants: dict[str, str]
) -> NewReport:
    header = verified.header
    return NewReport(
        report_id=header.id,
        envelope=body,
        digest=digest,
        originator=header.originator,
        accepted_ms=accepted_ms,
        label=compact_json(header.label.to_dict()),
        suite=header.suite,
        grants=compact_json(grants),
        recipients=header.recipient_ids,
        audit=compact_json(
            {"originator": header.originator, "suite": header.suite, "granted": grants}
        ),
    )


def _check(
    state: BrokerState, caller: str, body: bytes, now: datetime
) -> tuple[VerifiedEnvelope, dict[str, str]]:
    """Verify the envelope and refuse it unless every recipient slot is entitled; returns it
    with the agreement that grants each slot."""
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
    slots: Sequence[str],
    positions: Sequence[str],
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
