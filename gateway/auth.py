"""Local authentication of the tools that connect to the gateway: HTTP Basic (a user's password)
or a bearer token, both checked against the stored hashes of :mod:`gateway.config`. Pure: the
failure budget's clock is the caller's.

A stored hash costs a deliberate few tens of milliseconds to check, so a credential that
verified is remembered, keyed by an HMAC of it under a key that lives only in this process;
the next request with it costs one HMAC. Failures are budgeted per client address (a token
bucket) before any hash is computed, so guessing costs the guesser, not the gateway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from tearline.gateway.config import User, hash_secret, verify_secret

#: What a 401 says it wants.
CHALLENGE: Final = 'Basic realm="tearline-gateway", Bearer realm="tearline-gateway"'
_CACHE_MAX: Final = 4096


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailureBudget:
    """At most ``burst`` failed logins from one address, refilled at ``rate_per_s``; ``clock``
    (seconds, monotonic: ``time.monotonic`` at the edge) is the caller's."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        rate_per_s: float = 1.0,
        burst: int = 10,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, source: str) -> _Bucket:
        now = self._clock()
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) > 10_000:  # forget the full ones, not the throttled ones
                self._buckets = {k: v for k, v in self._buckets.items() if v.tokens < self.burst}
            b = self._buckets[source] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate_per_s)
        b.at = now
        return b

    def retry_after(self, source: str) -> int | None:
        """Seconds to wait before this address may try again, or None if it may now."""
        b = self._bucket(source)
        if b.tokens >= 1:
            return None
        return max(1, int((1 - b.tokens) / self.rate_per_s + 0.999))

    def failed(self, source: str) -> None:
        b = self._bucket(source)
        b.tokens = max(0.0, b.tokens - 1)


class Authenticator:
    """Who an ``Authorization`` header names, if its secret verifies."""

    def __init__(self, users: Sequence[User]) -> None:
        self._users = {u.name: u for u in users}
        self._key = os.urandom(32)
        self._verified: dict[bytes, str] = {}
        # Checked when the user is unknown, so that an unknown name costs what a known one does.
        self._decoy = hash_secret(os.urandom(16).hex())

    def _remember(self, header: str) -> bytes:
        return hmac.new(self._key, header.encode(), hashlib.sha256).digest()

    def remembered(self, header: str | None) -> User | None:
        """The user of a credential that verified before (one HMAC, no hash)."""
        if not header:
            return None
        known = self._verified.get(self._remember(header))
        return self._users.get(known) if known is not None else None

    def authenticate(self, header: str | None) -> User | None:
        if not header:
            return None
        mark = self._remember(header)
        known = self._verified.get(mark)
        if known is not None and known in self._users:
            return self._users[known]
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        user = None
        if scheme.lower() == "basic":
            user = self._basic(credential)
        elif scheme.lower() == "bearer" and credential:
            user = self._bearer(credential)
        if user is not None:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified[mark] = user.name
        return user

    def _basic(self, credential: str) -> User | None:
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep:
            return None
        user = self._users.get(name)
        if user is None or user.password_hash is None:
            verify_secret(password, self._decoy)
            return None
        return user if verify_secret(password, user.password_hash) else None

    def _bearer(self, token: str) -> User | None:
        found = None
        for user in self._users.values():
            for stored in user.token_hashes:
                if verify_secret(token, stored) and found is None:
                    found = user
        if not any(u.token_hashes for u in self._users.values()):
            verify_secret(token, self._decoy)
        return found
