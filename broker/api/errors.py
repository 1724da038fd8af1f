"""The one place where errors become HTTP responses: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from tearline.broker.observability import log_refusal
from tearline.clients.errors import (
    HTTP_STATUS,
    EnvelopeError,
    InputError,
    InternalError,
    TearlineError,
    UnavailableError,
)

log = logging.getLogger("tearline.broker")


class RequestShapeError(InputError):
    """A well-formed request whose JSON does not match the endpoint's schema (HTTP 422)."""

    code = "invalid_request"


# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[TearlineError], int]] = [(RequestShapeError, 422), *HTTP_STATUS]


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details}}


def status_of(exc: TearlineError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


async def _tearline_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TearlineError)
    # The operator's log gets the precise reason; for an envelope the caller learns only that
    # it failed (the reason stays here).
    why = exc.reason if isinstance(exc, EnvelopeError) else exc.message
    log_refusal(request.scope, status_of(exc), exc.code, why)
    return error_response(exc)


def error_response(exc: TearlineError) -> JSONResponse:
    status = status_of(exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Signature realm="tearline"'
    if exc.retry_after_s is not None and status in (429, 503):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status, headers=headers)


# Error replies that mean the store cannot take the request as it stands (a 503, to send again
# later), not a bug of ours (a 500).
OUTAGE_REPLIES: Final = (
    "MISCONF",
    "OOM",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "READONLY",
    "NOREPLICAS",
    "CLUSTERDOWN",
    # A Redis Cluster node in REDIS_URL: the store is unusable as configured (broker.app logs
    # why), and nothing was written (a script's keys are checked before it runs).
    "MOVED",
    "ASK",
    "CROSSSLOT",
)


def reply_code(exc: ResponseError) -> str:
    """The code of a Redis error reply (``READONLY``, ``OOM``, ...), also where Redis before 7
    wraps an error that a script's call met: ``[ERR ]Error running script (call to f_…):
    @user_script:1: @user_script: 1: -READONLY You can't write …``."""
    text = str(exc)
    # redis-py drops the reply's leading "ERR "; the ingest pipeline's own parser keeps it.
    if text.removeprefix("ERR ").startswith("Error running script"):
        _, wrapped, inner = text.rpartition(": -")
        if wrapped:
            text = inner
    return text.split(" ", 1)[0]


def redis_outage(exc: RedisError) -> TearlineError:
    """What a Redis failure means to a caller: an outage to retry, or (a script's bug) ours."""
    if isinstance(exc, ResponseError) and not isinstance(
        exc, BusyLoadingError | ReadOnlyError | AskError
    ):
        # A server that is full, cannot persist, or is (still) a replica refuses writes until
        # the operator acts or a failover ends; any other reply error is a bug of ours, never
        # the caller's. (The ingest pipeline's replies are plain ResponseErrors: redis-py's
        # subclasses such as ReadOnlyError are not made there.)
        if reply_code(exc) in OUTAGE_REPLIES:
            return UnavailableError("the broker's store refuses writes for now", code="store_busy")
        return InternalError("the broker failed; the operator's log says why")
    return UnavailableError(
        "the broker's store is unreachable; nothing was changed, try again shortly",
        code="store_unavailable",
    )


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RedisError)
    error = redis_outage(exc)
    log_refusal(request.scope, status_of(error), error.code, f"Redis: {exc!r}")
    return error_response(error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug: the operator's log gets the traceback (Starlette logs it), the caller a sentence.
    error = InternalError("the broker failed; the operator's log says why")
    log_refusal(request.scope, 500, error.code, repr(exc))
    return error_response(error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    message = "the request does not match the API's schema"
    log_refusal(request.scope, 422, "invalid_request", f"{message}: {details}")
    return JSONResponse(error_body("invalid_request", message, details), 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    log_refusal(request.scope, exc.status_code, code, str(exc.detail))
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(TearlineError, _tearline_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)
