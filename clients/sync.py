"""``Partner``: the synchronous twin of :class:`~clients.partner.AsyncPartner`.

It owns a private event loop and runs the async client on it, so both behave identically.
Not for use inside a running event loop: use ``AsyncPartner`` there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from clients.partner import AsyncPartner, Delivery, Directory, PreviewDecision, Recalled
from clients.protocol.envelope import STIX_CONTENT_TYPE
from clients.protocol.identity import Identity
from clients.protocol.label import Label
from clients.protocol.receipt import Receipt

T = TypeVar("T")


class Partner:
    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._node = AsyncPartner(base_url, identity, transport=transport, timeout_s=timeout_s)

    def _run(self, coro: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> Partner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._node.aclose())
            self._loop.close()

    def directory(self, *, refresh: bool = False) -> Directory:
        return self._run(self._node.directory(refresh=refresh))

    def preview(self, label: Label, *, suite: str = "classic") -> dict[str, PreviewDecision]:
        return self._run(self._node.preview(label, suite=suite))

    def publish(
        self,
        payload: bytes | str | Mapping[str, Any],
        label: Label,
        *,
        suite: str = "classic",
        content_type: str = STIX_CONTENT_TYPE,
        only: Iterable[str] | None = None,
    ) -> Receipt:
        return self._run(
            self._node.publish(payload, label, suite=suite, content_type=content_type, only=only)
        )

    def post_envelope(self, envelope: bytes) -> Receipt:
        return self._run(self._node.post_envelope(envelope))

    def inbox(
        self, *, limit: int = 10, wait_s: float = 0, consumer: str = "default"
    ) -> list[Delivery]:
        return self._run(self._node.inbox(limit=limit, wait_s=wait_s, consumer=consumer))

    def ack(self, entry_ids: Iterable[str]) -> int:
        return self._run(self._node.ack(entry_ids))

    def ack_report(self, report: Delivery) -> None:
        self._run(report.ack())

    def recall(self, report_id: str) -> Recalled:
        return self._run(self._node.recall(report_id))

    def subscribe(self, *, consumer: str = "default") -> Iterator[Delivery]:
        """Reports (and recall notices) as they arrive; acknowledge each with :meth:`ack_report`."""
        stream: AsyncIterator[Delivery] = self._node.subscribe(consumer=consumer)
        try:
            while True:
                yield self._run(anext(stream))
        finally:
            self._run(stream.aclose())  # type: ignore[attr-defined]
