"""Bounds on request headers, checked before anything else reads them (DESIGN §11).

A plain ASGI middleware: one pass over the header list the server already parsed, so a request
with a hundred thousand header lines is refused (431) in linear time, before routing, body
reading or signature verification.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tearline.broker.api.errors import error_response
from tearline.broker.observability import log_refusal
from tearline.clients.errors import HeadersTooLargeError


class HeaderLimits:
    def __init__(self, app: ASGIApp, *, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = 0
            for name, value in headers:
                size += len(name) + len(value)
            if len(headers) > self.max_count or size > self.max_bytes:
                error = HeadersTooLargeError(
                    f"the request has {len(headers)} header lines, {size} bytes; this broker "
                    f"takes at most {self.max_count} lines and {self.max_bytes} bytes"
                )
                log_refusal(scope, 431, error.code, error.message)
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
