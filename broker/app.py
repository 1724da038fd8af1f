"""``create_app()`` builds the broker's ASGI app: ``uvicorn --factory broker.app:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.exceptions import RedisError

from broker import audit, retention
from broker.api import audit as audit_api
from broker.api import directory, health, inbox, reports
from broker.api import errors as api_errors
from broker.keys import load_or_create
from broker.policy.load import load_policies
from broker.settings import Settings, get_settings
from broker.state import BrokerState, utc_now
from broker.store import Store
from clients.errors import UnavailableError

log = logging.getLogger("tearline.broker")

# How often the policy folder is checked for edits.
POLICY_POLL_S = 5.0


def _policy_mtime(folder: Path) -> float:
    files = [folder / "scheme.yaml", folder / "partners.yaml", *folder.glob("agreements/*.y*ml")]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


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


async def _watch_policies(state: BrokerState, interval_s: float) -> None:
    """Reload the policy folder when a file in it changes; a bad edit keeps the last good one."""
    seen = _policy_mtime(state.settings.policies_dir)
    while True:
        await asyncio.sleep(interval_s)
        current = _policy_mtime(state.settings.policies_dir)
        if current != seen:
            seen = current
            await state.reload_policies()


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
        policy = load_policies(settings.policies_dir)
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=False)
        store = Store(redis)
        await store.ensure_inboxes(policy.registry.ids)
        key = load_or_create(settings.broker_key_path)
        state = BrokerState(settings, policy, store, key, clock)
        app.state.broker = state
        watcher = asyncio.create_task(_watch_policies(state, POLICY_POLL_S))
        sealer = asyncio.create_task(
            _every(state, "audit-sealer", settings.audit_checkpoint_s, audit.seal)
        )
        trimmer = asyncio.create_task(
            _every(state, "retention", settings.retention_check_s, retention.enforce)
        )
        log.info("broker ready: %s, broker key %s", policy.summary(), key.kid)
        try:
            yield
        finally:
            for task in (watcher, sealer, trimmer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await redis.aclose()

    app = FastAPI(
        title="Tearline broker",
        version="1",
        description=(
            "Routes signed, end-to-end encrypted threat reports to exactly the partners entitled "
            "to them. Every partner request carries an RFC 9421 HTTP Message Signature (Ed25519)."
        ),
        lifespan=lifespan,
    )
    api_errors.install(app)
    for module in (reports, inbox, directory, audit_api, health):
        app.include_router(module.router)
    return app
