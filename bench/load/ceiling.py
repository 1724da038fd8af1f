"""The ceiling (DESIGN §10): a bare FastAPI endpoint that stores the body with one XADD, served
by uvicorn with the settings `tearline serve` uses (httptools protocol, JSON access log).

    python bench/load/ceiling.py PORT WORKERS     (REDIS_URL in the environment)
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request, Response

from tearline.broker.app import NO_TELEMETRY
from tearline.broker.observability import log_config


def create_app() -> FastAPI:
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    app = FastAPI(lifespan=lifespan, telemetry=NO_TELEMETRY)  # as the broker's

    @app.post("/v1/reports")
    async def ingest(request: Request) -> Response:
        entry = await redis.xadd("bench:ceiling", {"envelope": await request.body()})
        position = entry.decode() if isinstance(entry, bytes) else entry
        return Response(f'{{"position":"{position}"}}', 201, media_type="application/json")

    @app.post("/v1/reports:batch")
    async def ingest_batch(request: Request) -> Response:
        # The same single XADD of the whole body: the ceiling for a request, whatever it holds.
        entry = await redis.xadd("bench:ceiling", {"envelope": await request.body()})
        position = entry.decode() if isinstance(entry, bytes) else entry
        return Response(f'{{"position":"{position}"}}', 200, media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    return app


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(
        "bench.load.ceiling:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        http="tearline.broker.http_protocol:BoundedHttpToolsProtocol",
        server_header=False,
        log_config=log_config(),
    )
