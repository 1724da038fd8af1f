"""The nonce cache on a real redis-server: a signed request is accepted once per nonce."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tearline.broker.auth import remember_nonce
from tearline.broker.signatures import Authenticated, verify_request
from tearline.broker.store.keys import nonce_key
from tearline.clients.errors import AuthenticationError, UnavailableError
from tearline.clients.httpsig import sign_request, signing_key_of
from tests.factories import NOW, identity, registry

WINDOW = 60


def _auth(partner: str = "GBR", nonce: str | None = None) -> Authenticated:
    # Fresh nonces per test: nothing here depends on the server being flushed.
    return Authenticated(
        partner=partner,
        kid=f"{partner}-sig-1",
        nonce=nonce or secrets.token_urlsafe(16),
        created=int(NOW.timestamp()),
    )


@pytest_asyncio.fixture(loop_scope="function")
async def client(redis_server: Any) -> AsyncIterator[Redis]:
    # Function-scoped loop here, whatever the default fixture loop scope: the connection must
    # live on the loop the test runs on.
    async with Redis.from_url(redis_server.url) as redis:
        yield redis


async def test_first_use_passes_replay_is_refused_another_nonce_passes(client: Redis) -> None:
    auth = _auth()
    await remember_nonce(client, auth, WINDOW)
    with pytest.raises(AuthenticationError) as caught:
        await remember_nonce(client, auth, WINDOW)
    assert caught.value.code == "replayed_request"
    await remember_nonce(client, _auth(), WINDOW)


async def test_the_record_expires_after_twice_the_window(client: Redis) -> None:
    auth = _auth()
    await remember_nonce(client, auth, WINDOW)
    ttl = await client.ttl(nonce_key(auth.partner, auth.nonce))
    assert WINDOW < ttl <= 2 * WINDOW


async def test_nonces_are_per_partner(client: Redis) -> None:
    nonce = secrets.token_urlsafe(16)
    await remember_nonce(client, _auth("GBR", nonce), WINDOW)
    await remember_nonce(client, _auth("USA", nonce), WINDOW)


async def test_a_replayed_signed_request_is_refused(client: Redis) -> None:
    reg = registry("GBR", "USA")
    kid, private = signing_key_of(identity("GBR", "pq-hybrid"), NOW)
    url, body = "http://127.0.0.1:8000/v1/inbox/ack", b'{"ids":["1-0"]}'
    headers = sign_request(
        "POST",
        url,
        {},
        body,
        key_id=kid,
        private_key=private,
        created=int(NOW.timestamp()),
        nonce=secrets.token_urlsafe(16),
    )
    for attempt in range(2):
        auth = verify_request("POST", url, headers, body, reg, now=NOW)
        if attempt == 0:
            await remember_nonce(client, auth, WINDOW)
        else:
            with pytest.raises(AuthenticationError) as caught:
                await remember_nonce(client, auth, WINDOW)
            assert caught.value.code == "replayed_request"


async def test_an_unreachable_cache_fails_closed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on a port just released: the connection is refused at once.
    nowhere = Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(UnavailableError):
            await remember_nonce(nowhere, _auth(), WINDOW)
    finally:
        await nowhere.aclose()
