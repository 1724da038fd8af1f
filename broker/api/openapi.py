"""What the OpenAPI document says about authentication, in one place (DESIGN §6).

The routers describe what each operation does; this module adds what they all share, to
``app.openapi()`` once, after FastAPI has built it:

- two security schemes, ``partnerSignature`` and ``operatorSignature``: RFC 9421 HTTP Message
  Signatures made with a ``sig`` key from ``partners.yaml`` or from ``operators.yaml``. OpenAPI
  has no scheme type for request signatures, so each is an ``apiKey`` in the ``Signature``
  header whose description says what else must be sent (``Signature-Input``,
  ``Content-Digest``) and what the signature must cover;
- on every operation of a signed router, its scheme, and the refusals any signed request can
  get whatever it asks: 401 (with ``WWW-Authenticate``), 408 and 413 (the body is read before
  the signature is checked), 421, 429 and 503 (with ``Retry-After``), each with the error body;
- on every operation, the 431 that :class:`broker.api.limits.HeaderLimits` answers before
  routing;
- the error body as one schema, ``#/components/schemas/Error``; FastAPI's own validation-error
  schemas go, because the broker never answers in that shape (``broker.api.errors``).

Public operations (``/healthz``, ``/readyz``) get no security requirement; ``/metrics`` is an
operator's (Prometheus scrapes its own listener, ``TEARLINE_METRICS_PORT``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Final

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from tearline.broker.api.reports import ERROR_SCHEMA
from tearline.broker.signatures import MAX_FUTURE_S
from tearline.clients.httpsig import ALGORITHM_ID, LABEL

PARTNER_SCHEME: Final = "partnerSignature"
OPERATOR_SCHEME: Final = "operatorSignature"
ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}

_HOW_TO_SIGN = f"""\
RFC 9421 HTTP Message Signatures with Ed25519, made with {{whose}}. No bearer tokens, no shared \
secrets: each request is signed afresh, and the broker verifies it against the public key.

A signed request carries one signature, labelled `{LABEL}`, in two fields:

- `Signature-Input: {LABEL}=("@method" "@target-uri" "content-digest");created=<Unix \
seconds>;keyid="<the key's kid>";alg="{ALGORITHM_ID}";nonce="<unique, 16 to 128 characters of \
[A-Za-z0-9._~+/=-]>"` (without `"content-digest"` for a request without a body)
- `Signature: {LABEL}=:<base64 of the Ed25519 signature over the signature base>:`

and, when the request has a body, `Content-Digest: sha-256=:<base64 of SHA-256(body)>:` \
(RFC 9530), which the signature must cover. The covered components are `@method`, `@target-uri` \
(the URL as the client addressed it: scheme, the broker's public host, the path and query \
exactly as sent) and, with a body, `content-digest`. The signature's `created` must lie within \
the broker's replay window (`TEARLINE_REPLAY_WINDOW_S`, at most 60 s, and at most \
{MAX_FUTURE_S} s ahead) and its nonce must not have been seen in it. A request that fails any \
of this is a 401 whose `error.code` says why \
(`signature_missing`, `signature_invalid`, `stale_signature`, `replayed_request`, \
`unknown_key`, `key_not_valid`, `partner_suspended`, `digest_mismatch`, ...); an address whose \
signatures keep failing, or a signer over its request budget, gets 429 with `Retry-After`. \
`clients.httpsig.sign_request` makes these signatures; any RFC 9421 library can."""

SECURITY_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    PARTNER_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": _HOW_TO_SIGN.format(
            whose="an active partner's `sig` key, as listed in `policies/partners.yaml` and "
            "published by `GET /v1/partners`"
        ),
    },
    OPERATOR_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": _HOW_TO_SIGN.format(
            whose="an operator's `sig` key, as listed in `policies/operators.yaml` (a "
            "partner's key is refused with 401)"
        ),
    },
}

_RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WWW_AUTHENTICATE: Final = {
    "WWW-Authenticate": {
        "description": 'the scheme to authenticate with: `Signature realm="tearline"`',
        "required": True,
        "schema": {"type": "string"},
    }
}
# What a signed request can be answered whatever it asks for, before its handler runs.
SIGNED_REFUSALS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "401": (
        "the request is not signed, or its signature is refused: `error.code` says why",
        _WWW_AUTHENTICATE,
    ),
    "408": ("the body did not arrive within the broker's deadline", {}),
    "413": (
        "the body is over the broker's size limit (`too_large`), refused before the signature "
        "is checked; or a label lists more than the protocol allows (`label_too_large`, "
        "`details`: field, count, limit)",
        {},
    ),
    "421": (
        "the request names a host that is not this broker, so `@target-uri` is not the one "
        "its signature was made for",
        {},
    ),
    "429": (
        "over a budget: the signer's tokens per second (`rate_limited`: a request costs one, "
        "plus one per `request_bytes_per_token` bytes of body), the failed signatures of the "
        "caller's address (`auth_rate_limited`), the long polls and streams a partner may hold "
        "open (`too_many_waiters`); for a report, a storage quota (`recipient_inbox_full`: a "
        "recipient's queued reports or bytes, `originator_quota_exceeded`: what the originator "
        "holds within the retention window; `details.partner` names whose), nothing stored",
        _RETRY_AFTER,
    ),
    "503": (
        "the broker's store is unreachable or the broker is starting (`store_unavailable`, "
        "`unavailable`), or, for a new report, the store is nearly full (`store_full`); "
        "nothing was changed",
        _RETRY_AFTER,
    ),
}
HEADERS_TOO_LARGE: Final = (
    "too many header lines or header bytes (`error.code` `headers_too_large`); refused before "
    "routing"
)
# FastAPI's schemas for its own validation errors: the broker answers 422 with the error body.
_FASTAPI_VALIDATION: Final = ("HTTPValidationError", "ValidationError")
_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _operations(routers: Iterable[APIRouter]) -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": dict(ERROR_REF)}},
    }
    if headers:
        response["headers"] = copy.deepcopy(headers)
    return response


def describe(
    document: dict[str, Any], *, partner: set[tuple[str, str]], operator: set[tuple[str, str]]
) -> dict[str, Any]:
    """``document`` with the signature schemes applied to the ``(path, method)`` operations
    that ``partner`` and ``operator`` keys sign, and the shared refusals documented."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(copy.deepcopy(SECURITY_SCHEMES))
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas["Error"] = copy.deepcopy(ERROR_SCHEMA)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema == ERROR_SCHEMA or _is_fastapi_validation(schema):
                    response["content"]["application/json"]["schema"] = dict(ERROR_REF)
                    if status == "422":
                        response["description"] = "the request does not match this schema"
            scheme = (
                PARTNER_SCHEME
                if (path, method) in partner
                else OPERATOR_SCHEME
                if (path, method) in operator
                else None
            )
            if scheme is not None:
                operation["security"] = [{scheme: []}]
                for status, (description, headers) in SIGNED_REFUSALS.items():
                    existing = responses.get(status)
                    if existing is None or existing.get("description") == "error":
                        responses[status] = _error(description, headers)
            responses.setdefault("431", _error(HEADERS_TOO_LARGE))
    return document


def _is_fastapi_validation(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("$ref", "").endswith(
        tuple(f"/{name}" for name in _FASTAPI_VALIDATION)
    )


def install(app: FastAPI, *, partner: Iterable[APIRouter], operator: Iterable[APIRouter]) -> None:
    """Make ``app.openapi()`` return the document :func:`describe` completes: the operations of
    ``partner`` routers are signed with partners' keys, those of ``operator`` routers with
    operators' keys, every other operation is public."""
    partner_ops, operator_ops = _operations(partner), _operations(operator)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(build(), partner=partner_ops, operator=operator_ops)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
