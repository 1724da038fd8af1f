"""The node's client on an event loop of its own, in a thread: sealing, verifying and opening
reports costs CPU (hundreds of milliseconds for a large pq-hybrid report) that would otherwise
stall the loop serving TAXII requests. The HTTP side awaits it through :class:`NodePublisher`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tearline.clients.partner import AsyncPartner, Directory, Release
from tearline.clients.protocol.label import Label
from tearline.clients.protocol.receipt import Receipt

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` running on this thread's loop, from another loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self, timeout_s: float = 10.0) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            self.submit(cancel_all()).result(timeout=timeout_s)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            self.loop.close()


class NodePublisher:
    """The write side's :class:`~gateway.writer.Publisher`: the node's ``AsyncPartner``, run on
    its own loop."""

    def __init__(self, partner: AsyncPartner, node: LoopThread) -> None:
        self._partner = partner
        self._node = node

    async def release(self, label: Label) -> Release:
        return await self._node.run(self._partner.release(label))

    async def publish(self, payload: bytes, label: Label, release: Release) -> Receipt:
        return await self._node.run(self._partner.publish(payload, label, release=release))

    async def directory(self) -> Directory:
        return await self._node.run(self._partner.directory())
