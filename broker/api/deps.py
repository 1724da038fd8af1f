"""Request dependencies: the broker state and the authenticated caller.

All async on purpose: FastAPI runs a plain `def` dependency in a thread pool, and that hand-off
cost a fifth of the ingest path's CPU (measured with py-spy under wrk).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from tearline.broker.api.errors import RequestShapeError
from tearline.broker.auth import remember_nonce
from tearline.broker.metrics import AUTH_FAILURES
from tearline.broker.signatures import Authenticated, verify_request
from tearline.broker.state import BrokerState
from tearline.clients.errors import (
    AuthenticationError,
    InputError,
    MisdirectedError,
    RateLimitedError,
    SlowRequestError,
    TooLargeError,
    UnavailableError,
)
from tearline.clients.protocol.identity import Registry


async def get_state(request: Request) -> BrokerState:
    state: BrokerState | None = getattr(request.app.state, "broker", None)
    if state is None:
        raise UnavailableError("the broker is starting; try again shortly")
    return state


State = Annotated[BrokerState, Depends(get_state)]


async def read_body(request: Request, state: State) -> bytes:
    return await read_body_within(request, state, state.settings.max_envelope_bytes)


async def read_body_within(request: Request, state: BrokerState, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the body is over the {limit}-byte limit")
    body = bytearray()
    try:
        # A client that trickles its body holds a connection and a task: it gets a deadline.
        async with asyncio.timeout(state.settings.body_read_timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise TooLargeError(f"the body is over the {limit}-byte limit")
    except TimeoutError:
        raise SlowRequestError(
            f"the body did not arrive within {state.settings.body_read_timeout_s:g} s"
        ) from None
    except ClientDisconnect:
        # Nobody is left to answer; end the request quietly instead of logging a crash.
        raise InputError("the client went away mid-request", code="client_disconnected") from None
    request._body = bytes(body)  # Starlette's cache: later reads see the same bytes
    return bytes(body)


Body = Annotated[bytes, Depends(read_body)]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def target_uri(request: Request, public_urls: Sequence[str]) -> str:
    """The URI the partner signed (RFC 9421 ``@target-uri``), or MisdirectedError when the
    request names a host that is not this broker.

    - one public URL (behind a proxy): that, whatever ``Host`` the proxy forwards;
    - several: the one whose authority is the request's ``Host``;
    - none: the address this connection reached (on loopback, ``localhost`` too).

    Built from the raw path, because Starlette's ``request.url`` percent-decodes it and the
    signature covers the bytes the client sent."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    if len(public_urls) == 1:
        return public_urls[0] + path
    host = request.headers.get("host", "").lower()
    if public_urls:
        for base in public_urls:
            if base.partition("://")[2].split("/")[0].lower() == host:
                return base + path
        names = ", ".join(public_urls)
        raise MisdirectedError(f"this broker is {names}; the request is for {host or 'no host'}")
    allowed = _own_authorities(request)
    if host not in allowed:
        raise MisdirectedError(
            f"this broker is {min(allowed)}; the request is for {host or 'no host'} "
            "(behind a proxy, the operator sets TEARLINE_PUBLIC_URL)"
        )
    return f"{request.url.scheme}://{host}{path}"


def _own_authorities(request: Request) -> frozenset[str]:
    server = request.scope.get("server")
    if not server:
        return frozenset()
    host, port = str(server[0]), server[1]
    hosts = _LOOPBACK if host in _LOOPBACK else {host}
    default = 443 if request.url.scheme == "https" else 80
    out = set()
    for name in hosts:
        shown = f"[{name}]" if ":" in name else name
        out.add(f"{shown}:{port}")
        if port in (None, default):
            out.add(shown)
    return frozenset(out)


async def _signed_by(
    request: Request,
    state: BrokerState,
    body: bytes,
    signers: Registry,
    kind: str,
    *,
    check_nonce: bool = True,
) -> Authenticated:
    """Who signed the request. Cheap refusals first: an address whose recent signatures kept
    failing is refused before any signature is verified; a signer over its budget after.

    Without ``check_nonce`` the caller must record the nonce itself (posting reports does, in
    its one Redis step) and report a replay through :func:`failed_authentication`."""
    address = request.client.host if request.client else "unknown"
    now_s = time.monotonic()
    wait = state.failed_auth.retry_after_s(address, now_s)
    if wait is not None:
        raise RateLimitedError(
            f"too many requests from {address} failed authentication; wait {wait} s",
            code="auth_rate_limited",
            retry_after_s=wait,
        )
    try:
        auth = verify_request(
            request.method,
            target_uri(request, state.settings.public_urls),
            request.headers,
            body,
            signers,
            now=state.clock(),
            replay_window_s=state.settings.replay_window_s,
        )
        if check_nonce:
            await remember_nonce(state.store.redis, auth, state.settings.replay_window_s)
    except AuthenticationError as exc:
        failed_authentication(request, state, exc)
        raise
    request.state.partner = auth.partner  # for the log lines about this request
    # Bytes are work too (parsing, hashing, storing): a large body costs more than one token.
    per_token = state.settings.request_bytes_per_token
    cost = 1 + len(body) // per_token
    wait = state.request_budget.take(f"{kind}:{auth.partner}", now_s, cost)
    if wait is not None:
        raise RateLimitedError(
            f"{auth.partner} is over its budget of {state.settings.partner_rate_per_s:g} "
            f"tokens per second on this broker (a request costs one, plus one per {per_token} "
            f"bytes of body; this one cost {cost})",
            code="rate_limited",
            retry_after_s=wait,
        )
    return auth


def failed_authentication(request: Request, state: BrokerState, exc: AuthenticationError) -> None:
    """Count a refused signature against the address it came from."""
    address = request.client.host if request.client else "unknown"
    state.failed_auth.take(address, time.monotonic())
    AUTH_FAILURES.labels(code=exc.code).inc()


async def authenticate_deferring_nonce(
    request: Request, state: BrokerState, body: bytes
) -> Authenticated:
    """:func:`authenticate`, leaving the nonce to the caller's own Redis step."""
    return await _signed_by(
        request, state, body, state.policy.registry, "partner", check_nonce=False
    )


async def authenticate(request: Request, state: State, body: Body) -> Authenticated:
    """The partner that signed the request (RFC 9421, keys from ``policies/partners.yaml``)."""
    return await _signed_by(request, state, body, state.policy.registry, "partner")


Caller = Annotated[Authenticated, Depends(authenticate)]


async def authenticate_operator(request: Request, state: State, body: Body) -> Authenticated:
    """The operator that signed the request (the same check, keys from ``operators.yaml``)."""
    return await _signed_by(request, state, body, state.policy.operators, "operator")


Operator = Annotated[Authenticated, Depends(authenticate_operator)]


M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M], body: bytes) -> M:
    """Parse a JSON body after the caller is authenticated, so an unsigned request is a 401
    whatever it carries. Shape errors are 422, in the same form as FastAPI's own."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in ("body", *e["loc"])), "problem": e["msg"]}
            for e in exc.errors()
        ]
        raise RequestShapeError(
            "the request does not match the API's schema", details=details
        ) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body parsed by :func:`json_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
