"""``AsyncOperator``: the broker operator's client (audit trail, dead letters). ``Operator`` is
its sync twin.

An operator signs requests exactly as a partner does (RFC 9421, Ed25519), with a key listed in
the broker's ``policies/operators.yaml``; its identity file is what ``tearline keygen --partner
OPS-HQ`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from tearline.clients.http import SignedClient
from tearline.clients.protocol.encoding import parse_time
from tearline.clients.protocol.identity import Identity
from tearline.clients.sync import LoopRunner

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An inbox entry set aside: delivered too often without an ack, or undeliverable."""

    id: str
    entry_id: str
    kind: str  # "report", or a notice: "recall", "gap"
    report_id: str
    originator: str
    reason: str
    dead_at: datetime
    lost: int = 0  # for a gap notice: what it reported
    before: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        gap = data.get("gap") or {}
        return cls(
            id=data["id"],
            entry_id=data["entry_id"],
            kind=data["kind"],
            report_id=data["report_id"],
            originator=data["originator"],
            reason=data["reason"],
            dead_at=parse_time(data["dead_at"]),
            lost=int(gap.get("lost", 0)),
            before=str(gap.get("before", "")),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    partner: str
    dead_letters: tuple[DeadLetter, ...]
    next: str | None  # pass as ``after`` for the next page; None at the end


@dataclass(frozen=True, slots=True)
class HeldReport:
    """What the broker holds of a report: routing facts, never its content."""

    exists: bool  # False once the report outlived retention
    originator: str | None = None
    label: dict[str, Any] | None = None
    suite: str | None = None
    recalled: bool | None = None
    envelope_bytes: int | None = None
    envelope_sha256: str | None = None  # base64url, as in the receipt

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldReport:
        return cls(
            exists=bool(data["exists"]),
            originator=data.get("originator"),
            label=data.get("label"),
            suite=data.get("suite"),
            recalled=data.get("recalled"),
            envelope_bytes=data.get("envelope_bytes"),
            envelope_sha256=data.get("envelope_sha256"),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterDetail:
    partner: str
    dead_letter: DeadLetter
    report: HeldReport | None  # None for a gap notice, which has no report


@dataclass(frozen=True, slots=True)
class Replayed:
    partner: str
    dead_letter: str
    entry_id: str  # the new inbox entry


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[dict[str, Any]]  # newest first
    checkpoint: dict[str, Any] | None = None


def _segment(value: str) -> str:
    # Ids go into the path: quoted whole, so a stray "/" or "?" reaches the broker as data
    # (and is refused there) instead of changing which endpoint is asked.
    return quote(value, safe="")


class AsyncOperator(SignedClient):
    """An operator's client: the audit trail and the dead letters. Its identity is listed in
    ``policies/operators.yaml``; requests are signed as a partner's are."""

    async def audit(self, report_id: str | None = None, *, limit: int = 100) -> AuditPage:
        """The audit trail, newest first: every event, or those of one report."""
        params: dict[str, Any] = {"limit": limit}
        if report_id is not None:
            params["report_id"] = report_id
        data = await self._json("GET", "/v1/audit", params=params)
        return AuditPage(list(data["entries"]), data.get("checkpoint"))

    async def dead_letters(
        self, partner: str, *, after: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """One page of ``partner``'s dead letters, oldest first, after the id ``after``."""
        params: dict[str, Any] = {"partner": partner, "limit": limit}
        if after is not None:
            params["after"] = after
        data = await self._json("GET", "/v1/dead-letters", params=params)
        return DeadLetterPage(
            data["partner"],
            tuple(DeadLetter.from_dict(d) for d in data["dead_letters"]),
            data.get("next"),
        )

    async def dead_letter(self, partner: str, dead_id: str) -> DeadLetterDetail:
        """One dead letter, and what the broker holds of its report."""
        data = await self._json("GET", f"/v1/dead-letters/{_segment(partner)}/{_segment(dead_id)}")
        report = data.get("report")
        return DeadLetterDetail(
            data["partner"],
            DeadLetter.from_dict(data["dead_letter"]),
            HeldReport.from_dict(report) if report is not None else None,
        )

    async def replay(self, partner: str, dead_id: str) -> Replayed:
        """Put a dead letter back in ``partner``'s inbox as a new entry; audited with this
        operator's id. A dead letter replays once: again raises ``NotFoundError``."""
        data = await self._json(
            "POST", f"/v1/dead-letters/{_segment(partner)}/{_segment(dead_id)}/replay"
        )
        return Replayed(data["partner"], data["dead_letter"], data["entry_id"])


class Operator(LoopRunner):
    """The synchronous twin of :class:`AsyncOperator`, on a private event loop (so not for use
    inside a running one)."""

    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        self._client = AsyncOperator(base_url, identity, transport=transport, timeout_s=timeout_s)

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.aclose())
            self._loop.close()

    def audit(self, report_id: str | None = None, *, limit: int = 100) -> AuditPage:
        return self._run(self._client.audit(report_id, limit=limit))

    def dead_letters(
        self, partner: str, *, after: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        return self._run(self._client.dead_letters(partner, after=after, limit=limit))

    def dead_letter(self, partner: str, dead_id: str) -> DeadLetterDetail:
        return self._run(self._client.dead_letter(partner, dead_id))

    def replay(self, partner: str, dead_id: str) -> Replayed:
        return self._run(self._client.replay(partner, dead_id))
