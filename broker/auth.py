"""Refusing replayed requests: the nonce of each verified request signature, remembered in Redis.

The I/O edge of request authentication. Checking a signature is pure and lives in
:mod:`broker.signatures` (:func:`~broker.signatures.verify_request`); this module is the step
that needs the broker's store: a nonce seen before within the replay window is a replay.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tearline.broker.signatures import Authenticated, nonce_ttl_s, replayed
from tearline.broker.store.keys import nonce_key
from tearline.clients.errors import UnavailableError


async def remember_nonce(redis: Redis, auth: Authenticated, replay_window_s: int) -> None:
    """Record ``auth``'s nonce; refuse the request if the nonce was seen before. (Posting
    reports records it inside the ingest script instead: ``broker.store.Store.ingest``.)"""
    try:
        fresh = await redis.set(
            nonce_key(auth.partner, auth.nonce), b"1", nx=True, ex=nonce_ttl_s(replay_window_s)
        )
    except RedisError as exc:
        # Fail closed: without the nonce cache a replay cannot be told from a first use.
        raise UnavailableError("the replay cache is unavailable") from exc
    if not fresh:
        raise replayed(auth)
