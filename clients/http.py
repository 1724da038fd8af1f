"""Signed HTTP to a broker: what the partner's and the operator's clients share.

Every request is signed over the exact URL sent (RFC 9421, the identity's Ed25519 key); every
answer that is not a success becomes the :class:`~clients.errors.TearlineError` its status
names, with the broker's ``code``, message, details and ``Retry-After``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from tearline.clients.errors import TearlineError, TransportError, error_for_status
from tearline.clients.httpsig import sign_as
from tearline.clients.protocol.identity import Identity


def utc_now() -> datetime:
    return datetime.now(UTC)


def _tls_for(base_url: str) -> ssl.SSLContext | bool:
    """How the client checks the broker's certificate. Over https: httpx's default, the CA
    bundle. Over plain http no TLS handshake is made (every request goes to ``base_url``, and
    redirects are not followed), and loading the bundle for nothing took tens of milliseconds
    of every command's start: such a client gets a context that trusts no CA at all, so a TLS
    connection, were one ever attempted, fails rather than going unchecked."""
    if urlsplit(base_url.strip()).scheme.lower() != "http":
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, against no CA: refuses all


class SignedClient:
    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.identity = identity
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout_s,
            verify=_tls_for(base_url),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _signed(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        request = self._http.build_request(
            method, path, params=params, content=body, headers=headers
        )
        request.headers.update(
            sign_as(
                self.identity, method, str(request.url), dict(request.headers), body,
                now=self._clock(),
            )
        )  # fmt: skip
        return request

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        headers = {"content-type": content_type} if body is not None else None
        request = self._signed(method, path, params, body, headers)
        if timeout_s is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout_s).as_dict()
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path} failed: {exc}") from exc
        raise_for_error(response)
        return response

    async def _json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        return (await self._send(method, path, body=body, **kw)).json()


def raise_for_error(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_of(response)


def error_of(response: httpx.Response) -> TearlineError:
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except Exception:
        code, message, details = "http_error", f"HTTP {response.status_code}", None
    cls = error_for_status(response.status_code)
    retry_after_s = _retry_after_s(response)
    if retry_after_s is None:  # keep the class's own default (1 s for 429 and 503)
        return cls(message, code=code, details=details)
    return cls(message, code=code, details=details, retry_after_s=retry_after_s)


def _retry_after_s(response: httpx.Response) -> int | None:
    """``Retry-After`` in seconds, when it is given as seconds (the broker's form); an HTTP
    date, or garbage, counts as absent."""
    value = response.headers.get("retry-after", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None
