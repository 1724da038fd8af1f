"""A partner's inbox: long poll, Server-Sent Events, acknowledgements. Only ever the caller's."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from pydantic import AfterValidator, BaseModel, Field
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from tearline.broker.api.deps import Body, Caller, State, body_schema, json_body
from tearline.broker.api.errors import error_body, redis_outage
from tearline.broker.api.reports import errors
from tearline.broker.delivery import Delivered, next_batch
from tearline.broker.metrics import DELIVERIES
from tearline.broker.settings import LONG_POLL_LIMIT_S
from tearline.broker.signatures import Authenticated
from tearline.broker.state import BrokerState
from tearline.clients.errors import InputError, TearlineError

router = APIRouter(prefix="/v1/inbox", tags=["inbox"])

ENTRY_ID = r"^\d{1,20}-\d{1,20}$"
_U64_MAX = (1 << 64) - 1


class StreamIdError(InputError):
    """A stream entry id that Redis would refuse (HTTP 400)."""

    code = "invalid_stream_id"


def check_stream_id(value: str) -> str:
    """Redis stream ids are two unsigned 64-bit numbers; the pattern alone admits larger, and
    its ``\\d`` (like ``int()``) admits non-ASCII digits ("١-١"), which Redis refuses.

    Raises :class:`StreamIdError` (400 ``invalid_stream_id``), not ValueError: pydantic lets it
    through as it is, so a query, a path, a header and a JSON body refuse it alike."""
    if not value.isascii():
        raise StreamIdError(f"{value} is not a stream entry id: use ASCII digits only")
    ms, _, seq = value.partition("-")
    if int(ms) > _U64_MAX or int(seq) > _U64_MAX:
        raise StreamIdError(
            f"{value} is not a stream entry id: each of its two parts is at most {_U64_MAX} "
            "(64 bits)"
        )
    return value


def check_after_id(value: str) -> str:
    """A stream id to list *after* (exclusive): also refused when nothing can follow it, since
    Redis computes the next id to start from and refuses one past the largest."""
    ms, _, seq = check_stream_id(value).partition("-")
    if int(ms) == int(seq) == _U64_MAX:
        raise StreamIdError(
            f"nothing comes after {value}, the largest stream entry id; pass the last id you "
            "were given, or leave `after` out to start from the beginning"
        )
    return value


EntryId = Annotated[str, Field(pattern=ENTRY_ID), AfterValidator(check_stream_id)]
CONSUMER = r"^[A-Za-z0-9._-]{1,64}$"
ConsumerQuery = Annotated[
    str,
    Query(pattern=CONSUMER, description="subscriber session; each gets its own deliveries"),
]


class GapInfo(BaseModel):
    lost: int = Field(description="entries dropped by retention before you acknowledged them")
    before: str = Field(description="they were older than this entry id")


class Entry(BaseModel):
    entry_id: str
    kind: Literal["report", "recall", "gap"] = Field(
        description="a report; a notice that its originator recalled one you received; or a "
        "notice that retention dropped entries you never acknowledged"
    )
    report_id: str
    originator: str
    deliveries: int
    envelope: str | None = Field(description="the envelope's exact bytes, as posted (reports)")
    gap: GapInfo | None = None


class InboxPage(BaseModel):
    entries: list[Entry]


@router.get(
    "",
    summary="Long poll the caller's inbox",
    description=f"Waits up to `wait` seconds (at most {LONG_POLL_LIMIT_S}) for a first entry. "
    "A partner may hold a few long polls and streams open at once; past that, 429. A page holds "
    "at most `limit` entries and stops before the one whose envelope would take it past "
    "`max_inbox_page_bytes` (4 MiB by default); it always holds at least one, and the entries "
    "left out come first in the next page.",
    responses=errors(401, 422, 429, 503),
)
async def inbox(
    state: State,
    caller: Caller,
    wait: Annotated[
        float,
        Query(ge=0, le=LONG_POLL_LIMIT_S, description="seconds to wait for a first entry"),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    consumer: ConsumerQuery = "default",
) -> InboxPage:
    wait = min(wait, state.settings.long_poll_max_s)
    with state.waiters.admit(caller.partner) if wait > 0 else contextlib.nullcontext():
        batch = await next_batch(state, caller.partner, consumer, limit=limit, wait_s=wait)
    DELIVERIES.inc(len(batch))
    return InboxPage(entries=[Entry(**d.to_dict()) for d in batch])


@router.get(
    "/stream",
    summary="Server-Sent Events from the caller's inbox; resumes from Last-Event-ID",
    description="Events `report`, `recall` and `gap` carry an entry (the `id` is its entry id); "
    "comments are heartbeats. The stream ends, to be resumed with `Last-Event-ID`, when the "
    "broker shuts down, loses its store, or the caller's key or standing is withdrawn.",
    responses={200: {"content": {"text/event-stream": {}}}, **errors(400, 401, 422, 429, 503)},
)
async def stream(
    request: Request,
    state: State,
    caller: Caller,
    consumer: ConsumerQuery = "default",
    last_event_id: Annotated[str | None, Header(pattern=ENTRY_ID)] = None,
) -> EventSourceResponse:
    if last_event_id is not None:
        check_stream_id(last_event_id)
    state.waiters.check(caller.partner)  # refuse with 429 now, not after a 200
    await state.store.ping()  # an outage is a 503 now, not a stream that dies at once

    async def events() -> AsyncIterator[ServerSentEvent]:
        after = last_event_id
        # Past its lifetime a stream ends; the client reconnects with a fresh signature.
        ends_at = time.monotonic() + state.settings.stream_max_lifetime_s
        try:
            with state.waiters.admit(caller.partner):
                while (
                    not state.stopping.is_set()
                    and time.monotonic() < ends_at
                    and not await request.is_disconnected()
                ):
                    if not _still_entitled(state, caller):
                        return  # suspended, removed or key withdrawn since the stream opened
                    batch = await next_batch(
                        state,
                        caller.partner,
                        consumer,
                        limit=10,
                        wait_s=min(state.settings.sse_heartbeat_s, ends_at - time.monotonic()),
                        after=after,
                    )
                    after = None
                    if batch and not _still_entitled(state, caller):
                        # Withdrawn while the read waited: these stay pending, and come back
                        # after the visibility timeout to a subscriber that may have them.
                        return
                    DELIVERIES.inc(len(batch))
                    for delivered in batch:
                        yield entry_event(delivered)
        except (TearlineError, RedisError) as exc:
            # The response has started: no status to send. Say why and end the stream; the
            # client resumes from its last event id (entries not acked come back).
            yield error_event(exc)

    return EventSourceResponse(events(), ping=state.settings.sse_heartbeat_s)


def entry_event(delivered: Delivered) -> ServerSentEvent:
    """An inbox entry as an SSE event: its kind as the event type, its entry id as the id, the
    entry (as in a long-poll page) as the data (docs/protocol.md, "Server-Sent Events")."""
    return ServerSentEvent(
        data=json.dumps(delivered.to_dict()), id=delivered.entry_id, event=delivered.kind
    )


def error_event(exc: TearlineError | RedisError) -> ServerSentEvent:
    """The last event of a stream the broker ends on a failure: the usual error body as data,
    ``retry:`` the least delay before reconnecting, in milliseconds."""
    error = exc if isinstance(exc, TearlineError) else redis_outage(exc)
    body = error_body(error.code, error.message)
    return ServerSentEvent(
        data=json.dumps(body), event="error", retry=1000 * (error.retry_after_s or 5)
    )


def _still_entitled(state: BrokerState, caller: Authenticated) -> bool:
    """What the stream's opening request proved must still hold: an active partner whose
    signing key is still valid (not revoked, not expired)."""
    partner = state.policy.registry.get(caller.partner)
    owner = state.policy.registry.key(caller.kid)
    return (
        partner is not None
        and partner.active
        and owner is not None
        and owner.partner == caller.partner
        and owner.record.valid_at(state.clock())
    )


class AckRequest(BaseModel):
    ids: list[EntryId] = Field(min_length=1, max_length=1000)


class AckResponse(BaseModel):
    acked: int


@router.post(
    "/ack",
    summary="Acknowledge entries of the caller's inbox",
    responses=errors(400, 401, 413, 422),
    openapi_extra=body_schema(AckRequest),
)
async def ack(state: State, caller: Caller, body: Body) -> AckResponse:
    request = json_body(AckRequest, body)
    return AckResponse(acked=await state.store.ack(caller.partner, request.ids))
