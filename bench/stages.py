"""Where a post's time goes: `POST /v1/reports` through the ASGI app in this process, one after
another against a real redis-server, with each stage of the hot path timed by wrapping it.

    python -m bench.stages [N]      (N posts, default 2,300; the first 300 warm up)

Sequential wall time per stage (the Redis step includes Redis's own execution) and the
process's CPU per post. It complements the flame graph of `python -m bench`, whose async
stacks are split across event-loop steps.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from tearline.clients.httpsig import sign_request, signing_key_of

SPENT: collections.Counter[str] = collections.Counter()
CALLS: collections.Counter[str] = collections.Counter()


def _timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    if asyncio.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return await original(*args, **kwargs)
            finally:
                SPENT[label] += time.perf_counter_ns() - start
                CALLS[label] += 1

        setattr(owner, name, wrapper)
        return

    @functools.wraps(original)
    def plain(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter_ns() - start
            CALLS[label] += 1

    setattr(owner, name, plain)


async def run(tmp: Path, fleet: harness.Fleet, redis_url: str, posts: int) -> None:
    port = 8123  # never listened on: the requests go to the app directly
    os.environ.update(harness.broker_env(fleet, redis_url, tmp / "data", port))
    import tearline.broker.api.deps as deps
    import tearline.broker.api.reports as reports
    import tearline.broker.ingest as ingest
    import tearline.broker.store as store
    from tearline.broker.app import create_app

    _timed(deps, "read_body_within", "read the body")
    _timed(reports, "authenticate_deferring_nonce", "authenticate (request signature)")
    _timed(ingest, "_check", "verify the envelope and decide")
    _timed(store.Store, "ingest", "store: one ingest script round trip")
    _timed(ingest, "sign_receipt", "sign the receipt")
    app = create_app()
    bodies = fleet.envelopes(5, posts)
    kid, private = signing_key_of(fleet.identities[harness.ORIGINATOR], datetime.now(UTC))
    url = f"http://127.0.0.1:{port}/v1/reports"
    requests = []
    for body in bodies:
        signed = sign_request(
            "POST", url, {}, body, key_id=kid, private_key=private,
            created=int(time.time()), nonce=secrets.token_urlsafe(16),
        )  # fmt: skip
        headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in signed.items()]
        requests.append((headers, body))

    async def post(headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/reports",
            "raw_path": b"/v1/reports", "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", port),
            "state": {},
        }  # fmt: skip
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        start = time.perf_counter_ns()
        await app(scope, receive, send)
        SPENT["the whole request"] += time.perf_counter_ns() - start
        CALLS["the whole request"] += 1
        return status[0]

    warm = min(300, posts // 4)
    async with app.router.lifespan_context(app):
        for headers, body in requests[:warm]:
            assert await post(headers, body) == 201
        SPENT.clear()
        CALLS.clear()
        cpu = time.process_time()
        for headers, body in requests[warm:]:
            assert await post(headers, body) == 201
        measured = posts - warm
        print(f"process CPU per post: {(time.process_time() - cpu) / measured * 1e6:,.0f} µs")
        for label, spent in SPENT.most_common():
            print(f"  {label:40s} {spent / CALLS[label] / 1000:8.1f} µs")


def main() -> None:
    posts = int(sys.argv[1]) if len(sys.argv) > 1 else 2_300
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        fleet = harness.Fleet(tmp / "policies", 25)
        with harness.bench_redis(tmp) as server:
            asyncio.run(run(tmp, fleet, server.url, posts))


if __name__ == "__main__":
    main()
