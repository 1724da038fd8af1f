"""Posting reports and asking who may receive one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from tearline.broker.api.deps import (
    Caller,
    State,
    authenticate_deferring_nonce,
    body_schema,
    failed_authentication,
    get_state,
    json_body,
    read_body,
    read_body_within,
)
from tearline.broker.api.errors import error_body, status_of
from tearline.broker.auth import remember_nonce
from tearline.broker.ingest import Accepted, accept_report, accept_reports
from tearline.broker.metrics import REPORTS
from tearline.clients.errors import (
    AuthenticationError,
    InputError,
    NotFoundError,
    TearlineError,
    UnsupportedMediaTypeError,
)
from tearline.clients.protocol.encoding import compact_json
from tearline.clients.protocol.label import Label

router = APIRouter(prefix="/v1", tags=["reports"])
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["header", "signatures", "ciphertext"],
    "additionalProperties": False,
    "properties": {
        "header": {"type": "string", "description": "base64url of the signed header bytes"},
        "signatures": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {
                "type": "object",
                "required": ["kid", "sig"],
                "properties": {"kid": {"type": "string"}, "sig": {"type": "string"}},
            },
        },
        "ciphertext": {"type": "string"},
    },
}
RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["receipt", "signature"],
    "properties": {
        "receipt": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "originator": {"type": "string"},
                "envelope_sha256": {"type": "string"},
                "accepted_at": {"type": "string", "format": "date-time"},
                "recipients": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "partner": {"type": "string"},
                            "agreement": {"type": "string"},
                            "position": {"type": "string"},
                        },
                    },
                },
            },
        },
        "signature": {
            "type": "object",
            "properties": {"kid": {"type": "string"}, "sig": {"type": "string"}},
        },
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "minLength": 1, "description": "machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {"description": "what the code is about, or null"},
            },
        }
    },
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"description": "error", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for s in statuses
    }


@router.post(
    "/reports",
    status_code=201,
    summary="Post a sealed report",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ENVELOPE_SCHEMA}},
        }
    },
    responses={
        201: {
            "description": "accepted; the broker's signed receipt (also for an identical re-post)",
            "content": {"application/json": {"schema": RECEIPT_SCHEMA}},
        },
        **errors(400, 401, 403, 409, 413, 503),
    },
    response_class=Response,
)
async def post_report(request: Request) -> Response:
    # The hot path: the same steps as the State, Body and Caller dependencies, called directly,
    # because FastAPI's dependency resolution cost a sixth of this endpoint's CPU (py-spy); the
    # nonce is recorded in the ingest script, so a post is one Redis round trip.
    state = await get_state(request)
    body = await read_body(request, state)
    caller = await authenticate_deferring_nonce(request, state, body)
    try:
        accepted = await accept_report(state, caller, body)
    except AuthenticationError as exc:
        failed_authentication(request, state, exc)
        raise
    except TearlineError as exc:
        REPORTS.labels(outcome=exc.code).inc()
        raise
    REPORTS.labels(outcome="replayed" if accepted.replayed else "accepted").inc()
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
    return Response(accepted.receipt, 201, headers=headers, media_type="application/json")


BATCH_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl")
BATCH_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "description": "one per envelope, in the order sent",
            "items": {
                "type": "object",
                "required": ["index", "status", "body"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "status": {
                        "type": "integer",
                        "description": "what POST /v1/reports would have answered for it alone",
                    },
                    "replayed": {"type": "boolean"},
                    "body": {
                        "description": "that answer's body: the receipt, or the error",
                        "oneOf": [RECEIPT_SCHEMA, ERROR_SCHEMA],
                    },
                },
            },
        }
    },
}


@router.post(
    "/reports:batch",
    status_code=200,
    summary="Post many sealed reports in one request",
    description=(
        "The body is newline-delimited JSON (`application/x-ndjson`): one envelope per line, "
        "each the exact bytes it would have as the body of `POST /v1/reports`. Each is "
        "verified, decided, stored and receipted on its own, all-or-nothing per report; the "
        "answer lists, in order, the status and body a single post would have got, so a "
        "report's receipt and idempotency are the same whichever way it was posted."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one envelope per line"}
                }
            },
        }
    },
    responses={
        200: {
            "description": "one result per envelope",
            "content": {"application/json": {"schema": BATCH_RESULT_SCHEMA}},
        },
        **errors(400, 401, 413, 415, 503),
    },
    response_class=Response,
)
async def post_batch(request: Request) -> Response:
    state = await get_state(request)
    settings = state.settings
    body = await read_body_within(request, state, settings.max_batch_bytes)
    caller = await authenticate_deferring_nonce(request, state, body)
    try:
        envelopes = _batch_lines(request, body, settings.max_batch_reports)
    except InputError:
        # Refused after authentication: the nonce is spent all the same, so the same request
        # cannot be replayed (for a post, the ingest script records it).
        await remember_nonce(state.store.redis, caller, settings.replay_window_s)
        raise
    try:
        outcomes = await accept_reports(state, caller, envelopes)
    except AuthenticationError as exc:
        failed_authentication(request, state, exc)
        raise
    parts = []
    for i, outcome in enumerate(outcomes):
        parts.append(_batch_result(i, outcome))
        if isinstance(outcome, TearlineError):
            REPORTS.labels(outcome=outcome.code).inc()
        else:
            REPORTS.labels(outcome="replayed" if outcome.replayed else "accepted").inc()
    return Response(b'{"results":[' + b",".join(parts) + b"]}", media_type="application/json")


def _batch_lines(request: Request, body: bytes, most: int) -> list[bytes]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in BATCH_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"a batch is newline-delimited JSON: send Content-Type: {BATCH_MEDIA_TYPES[0]}, "
            "one envelope per line"
        )
    lines = body.split(b"\n")
    if lines and lines[-1] in (b"", b"\r"):
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise InputError("the batch holds no envelopes", code="empty_batch")
    if len(lines) > most:
        raise InputError(
            f"a batch holds at most {most} envelopes; this one has {len(lines)}",
            code="batch_too_large",
        )
    return [line.removesuffix(b"\r") for line in lines]


def _batch_result(index: int, outcome: Accepted | TearlineError) -> bytes:
    if isinstance(outcome, Accepted):
        replayed = b"true" if outcome.replayed else b"false"
        return b'{"index":%d,"status":201,"replayed":%s,"body":%s}' % (
            index, replayed, outcome.receipt,
        )  # fmt: skip
    # As POST /v1/reports answers it: an envelope's refusal is opaque to the caller.
    body = compact_json(error_body(outcome.code, outcome.message, outcome.details))
    return b'{"index":%d,"status":%d,"body":%s}' % (index, status_of(outcome), body)


class PreviewRequest(BaseModel):
    label: dict[str, Any] = Field(description="a security label (DESIGN §3)")
    suite: Literal["classic", "pq-hybrid"] = "classic"


class KeyOut(BaseModel):
    kid: str
    use: str
    alg: str
    public: str
    not_before: str
    not_after: str
    revoked: bool


class PartnerDecision(BaseModel):
    decision: Literal["grant", "deny"]
    agreement: str | None = None
    reason: str | None = None
    keys: list[KeyOut] = Field(default_factory=list, description="enc keys to seal to (grants)")


class PreviewResponse(BaseModel):
    suite: str
    partners: dict[str, PartnerDecision]


async def read_preview_body(request: Request, state: State) -> bytes:
    """A preview's body holds one label: read within ``max_preview_bytes``, before the
    signature is checked (the Caller dependency then finds the body read)."""
    return await read_body_within(request, state, state.settings.max_preview_bytes)


PreviewBody = Annotated[bytes, Depends(read_preview_body)]


@router.post(
    "/releasability/preview",
    summary="Who would receive a report with this label, and why not the others",
    description=(
        "The body is at most `max_preview_bytes` (32 KiB by default), else 413 `too_large` "
        "before the signature is checked; a label list longer than the protocol's limits "
        "(64 `releasable_to`, 32 `caveats`, 64 `topics`) is 413 `label_too_large`."
    ),
    responses=errors(400, 401, 413, 422, 503),
    openapi_extra=body_schema(PreviewRequest),
)
async def preview(body: PreviewBody, state: State, caller: Caller) -> PreviewResponse:
    request = json_body(PreviewRequest, body)
    now = state.clock()
    policy = state.policy
    label = Label.from_dict(request.label)
    decisions = policy.decide(label, caller.partner, request.suite, now)
    out: dict[str, PartnerDecision] = {}
    for pid, decision in sorted(decisions.items()):
        if decision.reason is not None:
            out[pid] = PartnerDecision(decision="deny", reason=decision.reason.value)
            continue
        partner = policy.registry.get(pid)
        key = partner.enc_key(request.suite, now) if partner else None
        if key is None:  # pragma: no cover - the engine grants only partners with a key
            raise TearlineError("granted partner has no key", code="internal_error")
        out[pid] = PartnerDecision(
            decision="grant", agreement=decision.agreement, keys=[KeyOut(**key.to_dict())]
        )
    return PreviewResponse(suite=request.suite, partners=out)


class RecallResponse(BaseModel):
    report_id: str
    withdrawn: list[str] = Field(description="recipients whose undelivered copy was removed")
    notified: list[str] = Field(description="recipients that had it and get a recall notice")


@router.post(
    "/reports/{report_id}/recall",
    summary="Recall a report: withdraw undelivered copies, notify recipients that had it",
    description="Only the report's originator may recall it. To anyone else, a report that "
    "exists and one that does not get the same 404 `no_such_report`: the answer tells nobody "
    "but the originator whether an id is held.",
    responses=errors(401, 404, 503),
)
async def recall(
    report_id: Annotated[str, Path(pattern=UUID_PATTERN)], state: State, caller: Caller
) -> RecallResponse:
    routing = await state.store.report_routing(report_id)
    if routing is None or routing[0] != caller.partner:
        # One answer for "no such report" and "someone else's": a 403 for an id that exists
        # would tell whoever knows an id that the broker holds it (an existence oracle).
        raise NotFoundError(
            f"{caller.partner} has no report {report_id} held by this broker; only a report's "
            "originator may recall it",
            code="no_such_report",
        )
    originator, recipients = routing
    recalled = await state.store.recall(report_id, originator, recipients)
    return RecallResponse(
        report_id=report_id, withdrawn=list(recalled.withdrawn), notified=list(recalled.notified)
    )
