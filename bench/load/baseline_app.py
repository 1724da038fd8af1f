"""The baseline of DESIGN §10: a bare FastAPI endpoint that does one XADD per request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response


def create_app() -> FastAPI:
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/reports")
    async def ingest(request: Request) -> Response:
        entry = await redis.xadd("bench:baseline", {"envelope": await request.body()})
        position = entry.decode() if isinstance(entry, bytes) else entry
        return Response(f'{{"position":"{position}"}}', 201, media_type="application/json")

    return app
