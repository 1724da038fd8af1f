"""Builders for test data: real keys, real labels, real agreements. Nothing here is mocked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache

from tearline.broker.policy.engine import Policy
from tearline.clients.policy.agreement import Agreement, Party
from tearline.clients.protocol.identity import Identity, Partner, Registry, Suite
from tearline.clients.protocol.label import Label, Scheme

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEVELS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")
SCHEME = Scheme(
    policy="TEARLINE-TEST",
    levels=LEVELS,
    caveats=frozenset({"CYBER-OPS", "NUC"}),
    groups={"FVEY": frozenset({"AUS", "CAN", "GBR", "NZL", "USA"})},
)


def identity(partner: str, suite: Suite = "pq-hybrid") -> Identity:
    """A TEST identity, valid from 30 days before NOW for two years. Cached per session, so
    ``identity("USA")`` and ``identity("USA", "pq-hybrid")`` are the same keys."""
    return _identity(partner, suite)


@cache
def _identity(partner: str, suite: Suite) -> Identity:
    return Identity.generate(partner, suite, NOW - timedelta(days=30), timedelta(days=730))


def partner(pid: str, suite: Suite = "pq-hybrid", status: str = "active") -> Partner:
    return Partner.from_dict(identity(pid, suite).public_entry(status=status))


def registry(*partners: Partner | str) -> Registry:
    return Registry(p if isinstance(p, Partner) else partner(p) for p in partners)


def agreement(
    aid: str,
    parties: Mapping[str, Party | None] | Iterable[str],
    *,
    ceiling: str = "SECRET",
    topics: Iterable[str] | None = None,
    require_pq_from: str | None = None,
    suspended: bool = False,
    valid_from: datetime = NOW - timedelta(days=365),
    valid_until: datetime = NOW + timedelta(days=365),
) -> Agreement:
    if not isinstance(parties, Mapping):
        parties = {p: None for p in parties}
    return Agreement(
        id=aid,
        title=f"test agreement {aid}",
        valid_from=valid_from,
        valid_until=valid_until,
        ceiling=ceiling,
        topics=None if topics is None else frozenset(topics),
        parties={p: terms or Party() for p, terms in parties.items()},
        require_pq_from=require_pq_from,
        suspended=suspended,
    )


def policy(reg: Registry, agreements: Iterable[Agreement], scheme: Scheme = SCHEME) -> Policy:
    return Policy(scheme, reg, agreements)


def label(
    classification: str = "RESTRICTED",
    releasable_to: Iterable[str] = ("USA",),
    tlp: str = "AMBER",
    **kwargs: object,
) -> Label:
    return Label(classification, releasable_to, tlp, **kwargs)  # type: ignore[arg-type]
