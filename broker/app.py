"""``create_app()`` builds the broker's ASGI app: ``uvicorn --factory broker.app:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Final

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from redis.exceptions import MovedError, RedisError
from sse_starlette.sse import AppStatus

from tearline.broker import audit, memory, retention
from tearline.broker.api import audit as audit_api
from tearline.broker.api import deadletters, directory, governance, health, inbox, reports, status
from tearline.broker.api import docs as api_docs
from tearline.broker.api import errors as api_errors
from tearline.broker.api import metrics as metrics_api
from tearline.broker.api import openapi as api_openapi
from tearline.broker.api.limits import HeaderLimits
from tearline.broker.connections import connect
from tearline.broker.keys import load_or_create
from tearline.broker.observability import RequestObserver
from tearline.broker.reload import load_initial, reload, watch
from tearline.broker.settings import Settings, get_settings
from tearline.broker.state import BrokerState, utc_now
from tearline.broker.store import Store
from tearline.clients.errors import UnavailableError

log = logging.getLogger("tearline.broker")

# Who signs the requests of each router: partners, operators, nobody. broker.api.openapi
# documents it; tests/integration/test_authorisation.py shows that the broker enforces it.
PARTNER_ROUTERS = (reports.router, inbox.router, directory.router, governance.router)
OPERATOR_ROUTERS = (audit_api.router, deadletters.router, status.router, metrics_api.router)
PUBLIC_ROUTERS = (health.router,)

# How often a broker that started while Redis was away tries to set up the inboxes again, and
# how often it looks for the server's shutdown signal.
SETUP_RETRY_S = 1.0
# A Redis Cluster node in REDIS_URL is a configuration error, not an outage: said once a minute.
CLUSTER_RETRY_S = 60.0
SHUTDOWN_POLL_S = 0.2


async def _every(
    state: BrokerState,
    task: str,
    interval_s: float,
    run: Callable[[BrokerState], Awaitable[object]],
) -> None:
    """Run ``run`` every ``interval_s``; one broker process holds the task's lease at a time."""
    holder = uuid.uuid4().hex
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await state.store.take_lease(task, holder, int(interval_s * 3000)):
                await run(state)
        except (RedisError, OSError) as exc:  # Redis away: the next round catches up
            log.warning("%s postponed: %s", task, exc)


async def _set_up_inboxes(state: BrokerState) -> None:
    """Make every partner's inbox and group; while Redis is away, keep trying (the broker
    serves 503 meanwhile and needs no restart when Redis comes back)."""
    while True:
        try:
            await state.store.ensure_inboxes(state.policy.registry.ids)
            if state.policy.governance is not None:
                # Checked against the transparency log (a rollback of what was published
                # before is refused), and what is in force published in it.
                await reload(state, force=True)
            state.inboxes_ready = True
            return
        except MovedError as exc:
            # Not an outage: the node answers, and says another one serves the key. Waiting
            # will not change that; the operator must point REDIS_URL elsewhere.
            log.error(
                "REDIS_URL names a node of a Redis Cluster (it sends slot %s to %s:%s); this "
                "broker needs a standalone Redis (or a primary with replicas): /readyz stays "
                "503 until REDIS_URL names one and the broker is restarted",
                exc.slot_id,
                exc.host,
                exc.port,
            )
            await asyncio.sleep(CLUSTER_RETRY_S)
        except (RedisError, OSError) as exc:
            log.warning("Redis unavailable at start (%s); retrying", exc)
            await asyncio.sleep(SETUP_RETRY_S)


def _server_exiting() -> bool:
    """Whether the uvicorn server running this app has begun a graceful shutdown.

    uvicorn tells the app only after every connection has closed, so it is asked directly: its
    SIGTERM handler is a method of the server, whose ``should_exit`` the signal sets. (The flag
    sse-starlette keeps, ``AppStatus``, is set only when it was imported before uvicorn installed
    its handlers, which a ``--factory`` app is not.)"""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return AppStatus.should_exit or bool(getattr(server, "should_exit", False))


async def _watch_shutdown(state: BrokerState) -> None:
    """Tell the delivery loops when the server begins a graceful shutdown, so blocked reads end
    and long polls answer at once instead of being cut when the grace period runs out."""
    while not _server_exiting():
        await asyncio.sleep(SHUTDOWN_POLL_S)
    state.stopping.set()


NO_TELEMETRY: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.redis_url:
            raise UnavailableError(
                "REDIS_URL is not set: run `tearline serve`, which starts an embedded Redis, "
                "or point REDIS_URL at a Redis server"
            )
        # The policy and the fingerprint it is known by come from one read of the folder.
        policy, reloads = load_initial(settings.policies_dir, clock())
        clients = connect(settings)
        store = Store(clients.commands, clients.blocking, pipeline=clients.pipeline)
        key = load_or_create(settings.broker_key_path)
        state = BrokerState(settings, policy, store, key, clock, reloads=reloads)
        app.state.broker = state
        setup = asyncio.create_task(_set_up_inboxes(state))
        with contextlib.suppress(asyncio.TimeoutError):  # served 503 until Redis is back
            await asyncio.wait_for(asyncio.shield(setup), timeout=settings.redis_connect_timeout_s)
        shutdown = asyncio.create_task(_watch_shutdown(state))
        watcher = asyncio.create_task(watch(state, settings.policy_poll_s))
        sealer = asyncio.create_task(
            _every(state, "audit-sealer", settings.audit_checkpoint_s, audit.seal)
        )
        trimmer = asyncio.create_task(
            _every(state, "retention", settings.retention_check_s, retention.enforce)
        )
        # Every process reads it: each refuses reports on its own reading (broker.memory).
        memory_watch = asyncio.create_task(memory.watch(state, settings.store_memory_check_s))
        log.info(
            "broker ready: %s (fingerprint %s), broker key %s",
            policy.summary(),
            reloads.fingerprint.short if reloads.fingerprint else "?",
            key.kid,
        )
        try:
            yield
        finally:
            state.stopping.set()
            for task in (setup, shutdown, watcher, sealer, trimmer, memory_watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await clients.aclose()

    app = FastAPI(
        title="Tearline broker",
        version="1",
        description=(
            "Routes signed, end-to-end encrypted threat reports to exactly the partners entitled "
            "to them. Every partner request carries an RFC 9421 HTTP Message Signature (Ed25519)."
        ),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: broker.api.docs serves its own
        redoc_url=None,
        # Off on purpose: the broker's metrics are Prometheus's (broker.metrics), and FastAPI's
        # OpenTelemetry middleware asked the environment for a provider on every request,
        # 7% of the ingest path's CPU (py-spy, bench/).
        telemetry=NO_TELEMETRY,
    )
    api_errors.install(app)
    app.add_middleware(RequestObserver)
    # Outermost (added last): the cheapest refusal runs before anything else.
    app.add_middleware(
        HeaderLimits, max_count=settings.max_header_count, max_bytes=settings.max_header_bytes
    )
    for router in (*PARTNER_ROUTERS, *OPERATOR_ROUTERS, *PUBLIC_ROUTERS):
        app.include_router(router)
    api_openapi.install(app, partner=PARTNER_ROUTERS, operator=OPERATOR_ROUTERS)
    app.include_router(api_docs.router)  # /docs, /redoc: unsigned, outside the schema
    return app
