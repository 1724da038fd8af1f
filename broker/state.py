"""What a running broker holds: settings, the policy in force, Redis, its key, its clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tearline.broker.keys import BrokerKey
from tearline.broker.memory import StoreMemory
from tearline.broker.policy.engine import Policy
from tearline.broker.policy.record import PolicyReloads
from tearline.broker.ratelimit import TokenBuckets
from tearline.broker.settings import Settings
from tearline.broker.store import Store
from tearline.broker.translog import TransparencyLog
from tearline.broker.waiters import Waiters

log = logging.getLogger("tearline.broker")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class BrokerState:
    settings: Settings
    policy: Policy
    store: Store
    key: BrokerKey
    clock: Callable[[], datetime] = utc_now
    # The policy folder: the fingerprint of the policy in force, the last reload refused.
    reloads: PolicyReloads = field(default_factory=PolicyReloads)
    # The transparency log of the governance documents (a cache of what Redis holds).
    log: TransparencyLog = field(default_factory=TransparencyLog)
    waiters: Waiters = field(init=False)
    # Per signer (partner or operator), once authenticated; per source address, for failures.
    request_budget: TokenBuckets = field(init=False)
    failed_auth: TokenBuckets = field(init=False)
    # Set when the server starts shutting down: blocked reads end, streams say goodbye.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Redis's memory as last read (broker.memory): above the high-water mark, no new reports.
    memory: StoreMemory = field(init=False)
    # Every partner's inbox and group made (broker.app): until then a report cannot be routed,
    # however well Redis answers a PING (a read-only replica does, and refuses every write).
    inboxes_ready: bool = False

    def __post_init__(self) -> None:
        self.waiters = Waiters(
            total=self.settings.blocking_readers_max,
            per_partner=self.settings.blocking_readers_per_partner,
        )
        s = self.settings
        self.request_budget = TokenBuckets(rate_per_s=s.partner_rate_per_s, burst=s.partner_burst)
        self.failed_auth = TokenBuckets(
            rate_per_s=s.failed_auth_rate_per_s, burst=s.failed_auth_burst
        )
        self.memory = StoreMemory(high_water_fraction=s.store_high_water_fraction)

    @property
    def policy_error(self) -> str | None:
        """Why the broker refused what the policy folder holds now; None when it is in force."""
        return self.reloads.error
