"""``Partner``: the synchronous twin of :class:`~clients.partner.AsyncPartner`.

It owns a private event loop and runs the async client on it, so both behave identically.
Not for use inside a running event loop: use ``AsyncPartner`` there.

Deliveries it hands out acknowledge synchronously: ``report.ack()`` returns once the broker has
the acknowledgement (it also returns an awaitable that is already done, the price of one
``Report`` type for both clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import signal
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from tearline.clients.errors import TearlineError
from tearline.clients.partner import (
    AsyncPartner,
    Delivery,
    Directory,
    PreviewDecision,
    Recalled,
    Release,
)
from tearline.clients.protocol.envelope import STIX_CONTENT_TYPE
from tearline.clients.protocol.identity import Identity
from tearline.clients.protocol.label import Label, Scheme
from tearline.clients.protocol.receipt import Receipt

if TYPE_CHECKING:  # imported where used, by AsyncPartner: see clients.partner
    from tearline.clients.governance.log import SignedTreeHead
    from tearline.clients.governance.node import Verified
    from tearline.clients.governance.trust import TrustedState

T = TypeVar("T")


class _Done:
    """An awaitable that is already complete: what a synchronous ``ack()`` returns."""

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_DONE = _Done()


class LoopRunner:
    """A private event loop that runs an async client's coroutines to completion, for a sync
    twin. Not for use inside a running event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on this client's loop.

        As a task held here, so that an interruption (Ctrl-C, or SIGTERM where the CLI maps it
        to Ctrl-C) can cancel it: the coroutine then unwinds where it stands, closing what it
        opened, and KeyboardInterrupt is raised once it has. While the loop runs, the signal
        only cancels the task, as ``asyncio.Runner`` does: a KeyboardInterrupt raised inside the
        loop's own machinery could drop a callback halfway (a lock never released, a future
        never woken) and leave the unwinding waiting for ever. A second interruption raises at
        once.
        """
        task = self._loop.create_task(coro)
        interrupted = False

        def cancel(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupted
            if interrupted or task.done():
                raise KeyboardInterrupt
            interrupted = True
            task.cancel()
            self._loop.call_soon_threadsafe(lambda: None)  # wake the loop if it sleeps

        try:
            with _interruptions_call(cancel):
                result = self._loop.run_until_complete(task)
        except BaseException as exc:
            if not task.done():
                task.cancel()
                self._loop.run_until_complete(asyncio.wait({task}))
            if not task.cancelled():
                task.exception()  # retrieved: asyncio would otherwise log it at exit
            if interrupted and isinstance(exc, asyncio.CancelledError):
                raise KeyboardInterrupt from None
            raise
        if interrupted:  # the coroutine caught the cancellation and returned: still stop
            raise KeyboardInterrupt
        return result


@contextlib.contextmanager
def _interruptions_call(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """While it lasts, a signal whose handler is Python's Ctrl-C one calls ``handler``
    instead. Only the main thread may set handlers; other threads leave them as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = {
        signum: signal.signal(signum, handler)
        for signum in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(signum) is signal.default_int_handler
    }
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


class Partner(LoopRunner):
    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
        rng: random.Random | None = None,
        trust: TrustedState | None = None,
    ) -> None:
        super().__init__()
        self._node = AsyncPartner(
            base_url,
            identity,
            transport=transport,
            timeout_s=timeout_s,
            reconnect_base_s=reconnect_base_s,
            reconnect_cap_s=reconnect_cap_s,
            rng=rng,
            trust=trust,
        )
        # Subscriptions not yet closed, so close() can finish them before the loop goes.
        self._streams: set[AsyncGenerator[Delivery, None]] = set()

    def __enter__(self) -> Partner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for stream in list(self._streams):
            self._close_stream(stream)
        # Any other async generator left on this loop would be finalised after the loop is
        # closed, and print "Event loop is closed" to stderr.
        self._run(self._loop.shutdown_asyncgens())
        self._run(self._node.aclose())
        self._loop.close()

    def directory(self, *, refresh: bool = False) -> Directory:
        return self._run(self._node.directory(refresh=refresh))

    def verify_governance(self, root: bytes | str, *, memory: Path | None = None) -> Verified:
        return self._run(self._node.verify_governance(root, memory=memory))

    def log_head(self, *, memory: Path | None = None) -> SignedTreeHead:
        return self._run(self._node.log_head(memory=memory))

    def log_consistency(self, first: int, second: int) -> list[bytes]:
        return self._run(self._node.log_consistency(first, second))

    def log_entries(self) -> tuple[SignedTreeHead, list[bytes]]:
        return self._run(self._node.log_entries())

    def agreements(self) -> list[dict[str, Any]]:
        return self._run(self._node.agreements())

    def preview(self, label: Label, *, suite: str = "classic") -> dict[str, PreviewDecision]:
        return self._run(self._node.preview(label, suite=suite))

    def releasability(self, label: Label, *, suite: str = "classic") -> dict[str, PreviewDecision]:
        """As :meth:`AsyncPartner.releasability`: with verified governance, this node's own."""
        return self._run(self._node.releasability(label, suite=suite))

    def scheme(self) -> Scheme | None:
        return self._node.scheme()

    def release(
        self, label: Label, *, suite: str = "classic", only: Iterable[str] | None = None
    ) -> Release:
        """As :meth:`AsyncPartner.release`: who it would reach, who not, and why."""
        return self._run(self._node.release(label, suite=suite, only=only))

    def publish(
        self,
        payload: bytes | str | Mapping[str, Any],
        label: Label,
        *,
        suite: str = "classic",
        content_type: str = STIX_CONTENT_TYPE,
        only: Iterable[str] | None = None,
        unsafe_skip_stix_checks: bool = False,
        require_all: bool = False,
        release: Release | None = None,
    ) -> Receipt:
        """As :meth:`AsyncPartner.publish`: STIX content is checked before anything is sent."""
        return self._run(
            self._node.publish(
                payload,
                label,
                suite=suite,
                content_type=content_type,
                only=only,
                unsafe_skip_stix_checks=unsafe_skip_stix_checks,
                require_all=require_all,
                release=release,
            )
        )

    def post_envelope(self, envelope: bytes) -> Receipt:
        return self._run(self._node.post_envelope(envelope))

    def post_envelopes(self, envelopes: Sequence[bytes]) -> list[Receipt | TearlineError]:
        return self._run(self._node.post_envelopes(envelopes))

    def inbox(
        self, *, limit: int = 10, wait_s: float = 0, consumer: str = "default"
    ) -> list[Delivery]:
        """As :meth:`AsyncPartner.inbox`; each delivery's ``ack()`` acknowledges at once."""
        deliveries = self._run(self._node.inbox(limit=limit, wait_s=wait_s, consumer=consumer))
        return [self._synchronous(d) for d in deliveries]

    def ack(self, entry_ids: Iterable[str]) -> int:
        return self._run(self._node.ack(entry_ids))

    def ack_report(self, report: Delivery) -> None:
        """The same as ``report.ack()``; kept for callers written before deliveries could
        acknowledge themselves synchronously."""
        self.ack([report.entry_id])

    def recall(self, report_id: str) -> Recalled:
        return self._run(self._node.recall(report_id))

    def subscribe(self, *, consumer: str = "default") -> Generator[Delivery, None, None]:
        """As :meth:`AsyncPartner.subscribe` (it reconnects on its own); acknowledge each
        delivery with ``delivery.ack()``. An interruption (Ctrl-C) while it waits ends it
        cleanly: the connection is closed, the generator finished."""
        stream = self._node.subscribe(consumer=consumer)
        assert isinstance(stream, AsyncGenerator)  # an async generator function's result
        self._streams.add(stream)
        try:
            while True:
                try:
                    delivery = self._run(_anext(stream))
                except StopAsyncIteration:
                    return
                yield self._synchronous(delivery)
        finally:
            self._close_stream(stream)

    def _synchronous(self, delivery: Delivery) -> Delivery:
        """The same delivery, its ``ack()`` now acknowledging on this client's loop at once."""
        return dataclasses.replace(delivery, _ack=self._ack_now)

    def _ack_now(self, entry_id: str) -> Awaitable[None]:
        self.ack([entry_id])
        return _DONE

    def _close_stream(self, stream: AsyncGenerator[Delivery, None]) -> None:
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        if not self._loop.is_closed():
            self._run(stream.aclose())


async def _anext(stream: AsyncIterator[T]) -> T:
    return await anext(stream)
