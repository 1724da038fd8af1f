"""``create_app()``: the gateway's TAXII 2.1 API (FastAPI), the node's subscription running in
its lifespan. A thin edge: the filters, paging and shapes are :mod:`gateway.taxii`'s, the rows
:mod:`gateway.store`'s, the write side :mod:`gateway.writer`'s.

Every request is authenticated (HTTP Basic or a bearer token, :mod:`gateway.auth`) before
anything else is looked at; a POST's body is read only after that, only up to
``max_content_length``, and only within ``BODY_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tearline.clients.partner import AsyncPartner
from tearline.clients.protocol.identity import Identity
from tearline.clients.stix.markings import tlp_rank
from tearline.gateway import sync, writer
from tearline.gateway.auth import CHALLENGE, Authenticator, FailureBudget
from tearline.gateway.config import RECEIVED, GatewayConfig, User, WritableCollection
from tearline.gateway.node import LoopThread, NodePublisher
from tearline.gateway.store import Store, clock_us
from tearline.gateway.taxii import (
    MEDIA_TYPE_STIX,
    MEDIA_TYPE_TAXII,
    TaxiiError,
    accepts_taxii,
    authority_forms,
    check_host,
    collection_id,
    envelope,
    is_taxii_content_type,
    manifest,
    parse_query,
    status_resource,
    versions,
)

log = logging.getLogger("tearline.gateway")

#: How long a POST waits for the broker before answering with a ``pending`` status.
PUBLISH_WAIT_S: Final = 10.0
#: How long a client may take to send a POST's body.
BODY_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class Collection:
    name: str
    id: str
    title: str
    description: str
    writable: WritableCollection | None = None


@dataclass
class Gateway:
    """What the routes share: the configuration, the store, the node's client."""

    config: GatewayConfig
    me: str
    store: Store
    auth: Authenticator
    failures: FailureBudget
    publisher: writer.Publisher | None = None
    clock: Callable[[], int] = clock_us
    #: The ``Host`` values the configuration names (``public_url``, ``names``).
    names: frozenset[str] = frozenset()

    def collections(self) -> list[Collection]:
        found = {
            name: Collection(name, collection_id(self.me, name), title, description)
            for name, title, description in self.store.dynamic_collections()
        }
        found.setdefault(
            RECEIVED,
            Collection(RECEIVED, collection_id(self.me, RECEIVED), "Everything received", ""),
        )
        for w in self.config.collections:
            found[w.name] = Collection(
                w.name,
                collection_id(self.me, w.name),
                w.title,
                w.description
                or f"Shared as {w.label.classification} REL TO {', '.join(w.label.releasable_to)}"
                f" TLP:{w.label.tlp}",
                writable=w,
            )
        return sorted(found.values(), key=lambda c: (c.writable is not None, c.name))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers=headers,
        media_type=MEDIA_TYPE_TAXII,
    )


def _error(exc: TaxiiError) -> Response:
    return _json(exc.to_dict(), exc.status, exc.headers)


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _authenticate(request: Request) -> User:
    """The user the request authenticates as; 401 (or 429 past the failure budget) else."""
    gw = _gateway(request)
    header = request.headers.get("authorization")
    known = gw.auth.remembered(header)
    if known is not None:  # verified before: not held back by others' failures from its address
        return known
    source = _client(request)
    wait = gw.failures.retry_after(source)
    if wait is not None:
        raise TaxiiError(
            429, "Too many failed logins",
            f"too many failed logins from {source}; try again in {wait} s",
            error_code="auth_rate_limited", headers={"Retry-After": str(wait)},
        )  # fmt: skip
    user = gw.auth.authenticate(header)
    if user is None:
        if header:
            gw.failures.failed(source)
        raise TaxiiError(
            401, "Unauthorized",
            "this gateway needs HTTP Basic credentials or a bearer token of a configured user"
            if not header else "the credentials were not accepted",
            error_code="unauthenticated", headers={"WWW-Authenticate": CHALLENGE},
        )  # fmt: skip
    return user


def _negotiate(request: Request) -> None:
    if not accepts_taxii(request.headers.get("accept")):
        raise TaxiiError(
            406, "Not acceptable",
            f"this server answers only {MEDIA_TYPE_TAXII}; the Accept header "
            f"{request.headers.get('accept')!r} does not admit it",
            error_code="not_acceptable",
        )  # fmt: skip


_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


def _own_authorities(request: Request) -> frozenset[str]:
    """The ``Host`` values of the address this connection reached (the socket's, not anything
    the client sent); on loopback, ``localhost`` too."""
    server = request.scope.get("server")
    if not server:
        return frozenset()
    host, port = str(server[0]), server[1]
    scheme = str(request.scope.get("scheme", "http"))
    out: set[str] = set()
    for name in _LOOPBACK if host in _LOOPBACK else {host}:
        shown = f"[{name}]" if ":" in name else name
        out |= authority_forms(f"{shown}:{port}" if port else shown, scheme)
    return frozenset(out)


def _host(request: Request) -> str:
    """The request's ``Host``, once it is one this gateway answers for (421 otherwise)."""
    gw = _gateway(request)
    return check_host(request.headers.get("host"), gw.names | _own_authorities(request))


def _begin(request: Request, api_root: str | None = None) -> tuple[Gateway, User]:
    _host(request)  # before credentials: a request for another host is not this gateway's
    user = _authenticate(request)
    _negotiate(request)
    gw = _gateway(request)
    if api_root is not None and api_root != gw.config.api_root:
        raise TaxiiError(404, "Not found", f"there is no API root {api_root!r}")
    return gw, user


def _collection(gw: Gateway, user: User, cid: str, *, write: bool = False) -> Collection:
    """The collection ``cid`` if the user may see it; 404 if not (even if it exists), 403 if it
    may read it but asks to write (or the other way round)."""
    found = next((c for c in gw.collections() if c.id == cid), None)
    readable = found is not None and user.can_read(found.name)
    writable = found is not None and found.writable is not None and user.can_write(found.name)
    if found is None or not (readable or writable):
        raise TaxiiError(404, "Not found", f"there is no collection {cid} for this user")
    if write and not writable:
        raise TaxiiError(
            403, "Forbidden", f"{found.name} is not a collection this user may add objects to",
            error_code="not_writable",
        )  # fmt: skip
    if not write and not readable:
        raise TaxiiError(
            403, "Forbidden", f"{found.name} is not a collection this user may read",
            error_code="not_readable",
        )  # fmt: skip
    return found


def _resource(gw: Gateway, user: User, c: Collection) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "alias": c.name,
        "can_read": user.can_read(c.name),
        "can_write": c.writable is not None and user.can_write(c.name),
        "media_types": [MEDIA_TYPE_STIX],
    }


# --- routes ---------------------------------------------------------------------------------------


def discovery(request: Request) -> Response:
    gw, _ = _begin(request)
    # From the configuration: public_url, else the Host checked above to be one of the
    # gateway's own names (never a Host header taken as it came, nor X-Forwarded-*).
    scheme = str(request.scope.get("scheme", "http"))
    base = gw.config.public_url or f"{scheme}://{_host(request)}"
    root = f"{base}/{gw.config.api_root}/"
    return _json(
        {
            "title": gw.config.title,
            "description": f"TAXII 2.1 gateway of Tearline partner {gw.me}",
            "default": root,
            "api_roots": [root],
        }
    )


def api_root_info(request: Request, api_root: str) -> Response:
    gw, _ = _begin(request, api_root)
    return _json(
        {
            "title": f"{gw.me} via Tearline",
            "description": "Reports received through the Tearline broker, and collections to "
            "share through it",
            "versions": [MEDIA_TYPE_TAXII],
            "max_content_length": gw.config.max_content_length,
        }
    )


def list_collections(request: Request, api_root: str) -> Response:
    gw, user = _begin(request, api_root)
    visible = [
        _resource(gw, user, c)
        for c in gw.collections()
        if user.can_read(c.name) or (c.writable is not None and user.can_write(c.name))
    ]
    return _json({"collections": visible})


def get_collection(request: Request, api_root: str, cid: str) -> Response:
    gw, user = _begin(request, api_root)
    c = _collection(gw, user, cid)
    return _json(_resource(gw, user, c))


def _paged(request: Request, api_root: str, cid: str, endpoint: str,
           object_id: str | None = None) -> Response:  # fmt: skip
    gw, user = _begin(request, api_root)
    c = _collection(gw, user, cid)
    scope = f"{endpoint}:{c.id}:{object_id or ''}"
    query = parse_query(
        request.query_params.multi_items(), endpoint, page_size=gw.config.page_size, scope=scope
    )
    page = gw.store.page(c.name, query, endpoint, object_id)
    gone = object_id is not None and not page.rows and query.after_seq == 0
    if gone and object_id is not None and not gw.store.has_object(c.name, object_id):
        stones = gw.store.tombstones(c.name, object_id)
        if stones:
            recalled = [{"version": s.version, "report_id": s.report_id} for s in stones]
            raise TaxiiError(
                404,
                "Not found",
                f"{object_id} was removed: its originator recalled report {stones[-1].report_id}",
                error_code="recalled",
                details={"recalled": recalled},
            )
        raise TaxiiError(404, "Not found", f"there is no object {object_id} in {c.name}")
    shape = {"objects": envelope, "object": envelope, "manifest": manifest, "versions": versions}
    return _json(shape[endpoint](page), headers=page.headers())


def get_objects(request: Request, api_root: str, cid: str) -> Response:
    return _paged(request, api_root, cid, "objects")


def get_object(request: Request, api_root: str, cid: str, object_id: str) -> Response:
    return _paged(request, api_root, cid, "object", object_id)


def get_versions(request: Request, api_root: str, cid: str, object_id: str) -> Response:
    return _paged(request, api_root, cid, "versions", object_id)


def get_manifest(request: Request, api_root: str, cid: str) -> Response:
    return _paged(request, api_root, cid, "manifest")


def get_status(request: Request, api_root: str, status_id: str) -> Response:
    gw, user = _begin(request, api_root)
    found = gw.store.status(status_id)
    if found is None or (found[1] != user.name and not user.can_write(found[0])):
        raise TaxiiError(404, "Not found", f"there is no status {status_id} for this user")
    return _json(found[2])


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        # ASCII digits only: str.isdigit() takes "²", which int() then refuses (a 500).
        if not re.fullmatch(r"[0-9]{1,19}", declared, re.ASCII):
            raise TaxiiError(
                400, "Bad request", "Content-Length is not a number of bytes",
                error_code="invalid_content_length",
            )  # fmt: skip
        if int(declared) > limit:
            raise TaxiiError(
                413, "Payload too large",
                f"the body is {declared} bytes; this API root takes at most {limit}",
                error_code="too_large",
            )  # fmt: skip

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TaxiiError(
                    413, "Payload too large", f"the body is over {limit} bytes",
                    error_code="too_large",
                )  # fmt: skip
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout=BODY_TIMEOUT_S)
    except TimeoutError:
        raise TaxiiError(
            408, "Request timeout", f"the body did not arrive within {BODY_TIMEOUT_S:g} s"
        ) from None


async def add_objects(request: Request, api_root: str, cid: str) -> Response:
    # Before the body is read at all; in a thread, as the sync routes are (a hash costs ms).
    gw, user = await asyncio.to_thread(_begin, request, api_root)
    c = await asyncio.to_thread(_collection, gw, user, cid, write=True)
    assert c.writable is not None  # only writable collections pass write=True
    if not is_taxii_content_type(request.headers.get("content-type")):
        raise TaxiiError(
            415, "Unsupported media type",
            f"add objects as {MEDIA_TYPE_TAXII}, not {request.headers.get('content-type')!r}",
            error_code="unsupported_media_type",
        )  # fmt: skip
    body = await _read_body(request, gw.config.max_content_length)
    objects = writer.parse_envelope(body)
    if gw.publisher is None:
        raise TaxiiError(503, "Unavailable", "the gateway is not connected to the broker")
    request_us = gw.clock()
    status_id = str(uuid.uuid4())
    pending = [writer.detail(o, i, request_us) for i, o in enumerate(objects)]
    first = status_resource(status_id, request_us, [], [], pending)
    await asyncio.to_thread(gw.store.put_status, status_id, c.name, user.name, first,
                            now_us=request_us)  # fmt: skip
    task = asyncio.create_task(_publish(gw, c.writable, status_id, user.name, objects, request_us))
    request.app.state.tasks.add(task)
    task.add_done_callback(request.app.state.tasks.discard)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=PUBLISH_WAIT_S)
    found = await asyncio.to_thread(gw.store.status, status_id)
    return _json(found[2] if found else first, 202)


async def _publish(gw: Gateway, w: WritableCollection, status_id: str, owner: str,
                   objects: list[Any], request_us: int) -> None:  # fmt: skip
    assert gw.publisher is not None
    try:
        outcome = await writer.share(gw.publisher, gw.me, objects, w.label, request_us)
        final = status_resource(status_id, request_us, outcome.successes, outcome.failures, [])
        if outcome.receipt is not None:  # the local copy: what this collection shared
            try:
                await asyncio.to_thread(
                    gw.store.add_report, outcome.receipt.id, gw.me, [w.name],
                    list(outcome.published), now_us=gw.clock(), tlp_rank=tlp_rank(w.label.tlp),
                )  # fmt: skip
            except Exception:  # published all the same: the status says so
                log.exception("report %s was published but not copied locally", outcome.receipt.id)
    except Exception:  # the status must not stay pending for ever
        log.exception("publishing status %s failed", status_id)
        message = "internal_error: the gateway failed while publishing; see its log"
        failures = [writer.detail(o, i, request_us, message) for i, o in enumerate(objects)]
        final = status_resource(status_id, request_us, [], failures, [])
    await asyncio.to_thread(gw.store.put_status, status_id, w.name, owner, final,
                            now_us=request_us)  # fmt: skip


# --- the app --------------------------------------------------------------------------------------


def create_app(
    config: GatewayConfig,
    identity: Identity,
    *,
    subscribe: bool = True,
    publisher: writer.Publisher | None = None,
) -> FastAPI:
    """The gateway of the node ``identity``. With ``subscribe`` it follows the node's inbox;
    ``publisher`` replaces the node's own client on the write side (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(Path(config.database))
        ended = store.end_pending(
            "interrupted: the gateway stopped before the broker answered; look for the report "
            "with `tearline` before sending it again"
        )
        if ended:
            log.warning("%d status resource(s) were pending when the gateway stopped", ended)
        # The node's client lives on a loop of its own (gateway.node): its crypto never stalls
        # the loop that serves TAXII.
        node = LoopThread(f"tearline-node-{identity.partner}")
        partner = AsyncPartner(config.broker, identity)
        gw = Gateway(
            config=config,
            me=identity.partner,
            store=store,
            auth=Authenticator(config.users),
            failures=FailureBudget(clock=time.monotonic),
            publisher=publisher or NodePublisher(partner, node),
            names=config.authorities(),
        )
        app.state.gateway = gw
        app.state.tasks = set()
        follower = (
            node.submit(sync.run(partner, store, consumer=config.consumer)) if subscribe else None
        )
        log.info(
            "gateway of %s ready: broker %s, %d writable collection(s), %d user(s)",
            identity.partner, config.broker, len(config.collections), len(config.users),
        )  # fmt: skip
        try:
            yield
        finally:
            for task in list(app.state.tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if follower is not None:
                follower.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.run(partner.aclose()), timeout=10)
            await asyncio.to_thread(node.stop)
            store.close()

    app = FastAPI(
        title="Tearline gateway (TAXII 2.1)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(TaxiiError)
    async def taxii_error(request: Request, exc: TaxiiError) -> Response:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return _error(TaxiiError(exc.status_code, title, str(exc.detail)))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return _error(TaxiiError(500, "Internal error", "the gateway failed; see its log"))

    root = "/{api_root}"
    coll = root + "/collections/{cid}"
    app.add_api_route("/taxii2/", discovery, methods=["GET"])
    app.add_api_route(root + "/", api_root_info, methods=["GET"])
    app.add_api_route(root + "/collections/", list_collections, methods=["GET"])
    app.add_api_route(coll + "/", get_collection, methods=["GET"])
    app.add_api_route(coll + "/objects/", get_objects, methods=["GET"])
    app.add_api_route(coll + "/objects/", add_objects, methods=["POST"])
    app.add_api_route(coll + "/objects/{object_id}/", get_object, methods=["GET"])
    app.add_api_route(coll + "/objects/{object_id}/versions/", get_versions, methods=["GET"])
    app.add_api_route(coll + "/manifest/", get_manifest, methods=["GET"])
    app.add_api_route(root + "/status/{status_id}/", get_status, methods=["GET"])
    return app
