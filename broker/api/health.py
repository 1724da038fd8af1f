"""Liveness and readiness. Unauthenticated: they reveal nothing about partners. (Metrics do:
they are for operators, broker.api.metrics.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis answers, every inbox is set up and a policy is loaded; whether a policy "
    "reload was refused",
    description="Not ready (503) while Redis is away, until every partner's inbox has been set "
    'up in it (`"inboxes": "setting up"`: a Redis that answers but refuses writes, such as a '
    "read-only replica, stays so), or above the high-water mark of its memory "
    '(`"store": "full"`: new reports are refused with 503 `store_full`; acks and reads are '
    "still served).",
    responses={503: {"description": "not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = getattr(request.app.state, "broker", None)
    checks: dict[str, Any] = {"policy": state is not None, "redis": False}
    if state is not None:
        try:
            checks["redis"] = await state.store.ping()
        except (RedisError, OSError):
            checks["redis"] = False
        # Only that the folder holds something refused: the error can quote agreement terms.
        # Operators read it from the log, `tearline policy check` or GET /v1/status.
        checks["policy_reload"] = "refused" if state.policy_error else "ok"
        # A report cannot be written end to end above the high-water mark (broker.memory).
        checks["store"] = "full" if state.memory.full else "ok"
        checks["inboxes"] = "ready" if state.inboxes_ready else "setting up"
    ready = bool(
        checks["policy"]
        and checks["redis"]
        and checks.get("store") != "full"
        and checks.get("inboxes") == "ready"
    )
    return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)
