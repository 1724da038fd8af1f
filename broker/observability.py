"""What operators see of each request: a request id, a latency histogram per endpoint, and one
structured log line for every refusal (DESIGN §11: refusals are logged and counted).

A log line names the partner, the code and the request id, never a payload, key or ciphertext.
``tearline serve`` writes JSON lines when stderr is not a terminal (a container, a service
manager, a pipe), plain text when it is.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tearline.broker.metrics import REGISTRY

log = logging.getLogger("tearline.broker")

REQUEST_SECONDS = Histogram(
    "tearline_request_seconds",
    "Time to answer a request (to the end of the body; for a stream, its lifetime)",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REQUEST_ID_HEADER = b"x-request-id"


class RequestObserver:
    """ASGI middleware: gives each request an id (``X-Request-Id``, also in every log line about
    it) and times it into :data:`REQUEST_SECONDS` under its route's template, not its raw path,
    so a prober cannot mint a time series per URL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


def log_refusal(scope: Scope, status: int, code: str, message: str) -> None:
    """One line per refused request: who (if known), what, why, and the request id."""
    state = scope.get("state", {})
    log.warning(
        "refused %s %s: %d %s",
        scope.get("method"),
        scope.get("path"),
        status,
        code,
        extra={
            "event": "refused",
            "status": status,
            "code": code,
            "reason": message,
            "partner": state.get("partner"),
            "request_id": state.get("request_id"),
            "client": (scope.get("client") or ("unknown",))[0],
        },
    )


# Attributes every LogRecord has; anything else on a record came in through ``extra``
# (uvicorn's ``color_message`` is its message with terminal colours: not for a log file).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonLines(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # the "Z" below means it

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access record: (client, method, path, http version, status).
            client, method, path, _, status = record.args
            line |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_config(*, json_lines: bool | None = None) -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``tearline serve``: JSON lines off a terminal (each worker
    applies it), the broker's own loggers and uvicorn's through the same handler."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    formatter: dict[str, Any] = (
        {"()": "tearline.broker.observability.JsonLines"}
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": handler},
        "loggers": {
            "tearline": logger,
            "uvicorn": logger,
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": logger,
        },
    }
