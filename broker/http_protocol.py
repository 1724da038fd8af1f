"""uvicorn's HTTP protocol with the bounds a hostile client must meet before the app runs.

uvicorn (httptools) puts no limit on how long a client may take to send its request headers,
nor on how many it sends: a client that opens a connection and trickles a byte every few
seconds holds it forever (slowloris), and a request with a million header lines is buffered
whole. Here, per connection:

- the request line and headers must be complete within ``header_timeout_s`` of the connection
  opening (or of the previous response, on a kept-alive connection), else it is closed;
- they may not exceed ``max_header_bytes`` or ``max_header_count`` lines: past that the
  client gets a 431 and the connection is closed, before anything is buffered further;
- a connection past ``max_connections_per_address`` or ``max_connections`` is reset as it is
  accepted (:mod:`broker.admission`).

``tearline serve`` runs uvicorn with this class (``--http broker.http_protocol:…``); the app's
own :class:`broker.api.limits.HeaderLimits` checks the same bounds again for any other server.
Tied to uvicorn's httptools protocol internals: the pin in pyproject.toml says which releases.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tearline.broker.admission import Admission, connection_limit
from tearline.broker.settings import Settings

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BODY_431 = (
    b'{"error":{"code":"headers_too_large","message":"the request headers are over this '
    b'broker\'s limit","details":null}}'
)


@cache
def _settings() -> Settings:
    # The same settings the app reads (environment), once per process.
    return Settings()


def _limits() -> tuple[float, int, int]:
    s = _settings()
    return s.header_timeout_s, s.max_header_bytes, s.max_header_count


# One count per server (uvicorn's ServerState), so brokers run side by side in one process (the
# tests' threads) do not share their connection bounds.
_ADMISSIONS: weakref.WeakKeyDictionary[Any, Admission] = weakref.WeakKeyDictionary()


def admission_of(server_state: Any) -> Admission:
    admission = _ADMISSIONS.get(server_state)
    if admission is None:
        s = _settings()
        admission = Admission(connection_limit(s), s.max_connections_per_address)
        _ADMISSIONS[server_state] = admission
    return admission


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s, self._max_header_bytes, self._max_header_count = _limits()
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._address: str | None = None  # set once the connection is admitted

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unix"
        if admission_of(self.server_state).admit(address) is not None:
            # Past a bound: reset at once (no FIN_WAIT, no parser, no timer), before uvicorn
            # knows of the connection; connection_lost then has nothing to undo.
            transport.abort()
            return
        self._address = address
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return  # refused at accept
        admission_of(self.server_state).release(self._address)
        self._address = None
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url), lines=0)
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools may call this several times for one long line; each call counts its bytes.
        self._count(len(name) + len(value), lines=1)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on this connection gets its own

    # --- how ---------------------------------------------------------------------------------

    def _count(self, size: int, *, lines: int) -> None:
        self._header_bytes += size
        self._header_count += lines
        over = (
            self._header_bytes > self._max_header_bytes
            or self._header_count > self._max_header_count
        )
        if over and not self._refused:
            self._refused = True
            self._disarm_header_deadline()
            self.transport.write(_431 % (len(_BODY_431), _BODY_431))
            self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self._header_timeout_s, self._too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        # No request is running on this connection (its headers never completed): nothing to
        # answer; the connection is simply closed.
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
