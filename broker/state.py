"""What a running broker holds: settings, the policy in force, Redis, its key, its clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.keys import BrokerKey
from broker.policy.engine import Policy
from broker.policy.load import load_policies
from broker.ratelimit import TokenBuckets
from broker.settings import Settings
from broker.store import Store
from broker.waiters import Waiters
from clients.errors import PolicyError

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
    policy_error: str | None = field(default=None)
    waiters: Waiters = field(init=False)
    # Per signer (partner or operator), once authenticated; per source address, for failures.
    request_budget: TokenBuckets = field(init=False)
    failed_auth: TokenBuckets = field(init=False)
    # Set when the server starts shutting down: blocked reads end, streams say goodbye.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

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

    async def reload_policies(self) -> bool:
        """Load the policy folder again; on any problem keep the last good policy and say why."""
        try:
            policy = load_policies(self.settings.policies_dir)
        except PolicyError as exc:
            self.policy_error = exc.message
            log.error("policy reload refused, keeping the last good policy: %s", exc.message)
            return False
        self.policy = policy
        self.policy_error = None
        await self.store.ensure_inboxes(policy.registry.ids)
        log.info("policy reloaded: %s", policy.summary())
        return True
