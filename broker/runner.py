"""Running the broker in a background thread: for ``tearline demo`` and the integration tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from tearline.broker.state import BrokerState

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ThreadedBroker:
    url: str
    app: FastAPI
    loop: asyncio.AbstractEventLoop

    @property
    def state(self) -> BrokerState:
        state: BrokerState = self.app.state.broker
        return state

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10) -> T:
        """Run a coroutine on the broker's own loop (its Redis connections live there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout_s)


@contextmanager
def broker_in_thread(app: FastAPI, port: int | None = None) -> Iterator[ThreadedBroker]:
    """A real uvicorn serving ``app`` on a loopback port until the block ends."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="tearline.broker.http_protocol:BoundedHttpToolsProtocol",  # as `tearline serve` runs
        proxy_headers=False,  # as `tearline serve` with no trusted proxies
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the broker did not start; see the log above")
        time.sleep(0.02)
    try:
        yield ThreadedBroker(f"http://127.0.0.1:{port}", app, loop)
    finally:
        state = getattr(app.state, "broker", None)
        if state is not None:  # what a SIGTERM tells a served app (broker.app._watch_shutdown)
            loop.call_soon_threadsafe(state.stopping.set)
        server.should_exit = True
        thread.join(timeout=15)
        # Tasks that outlived the server (an SSE stream's watcher) end here, not in a warning.
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(_cancel(pending))
        loop.close()


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
