"""The OpenAPI document is accurate: property-based requests from it, signed as a partner signs
them, never get a 5xx, and every answer matches the documented responses (schemathesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from clients.httpsig import sign_as
from tests.integration.conftest import RunningBroker, me

# Operator endpoints are signed with the operator's key, so the fuzz reaches their handlers
# instead of stopping at the 401 a partner's key gets.
OPERATOR_PATHS = ("/v1/audit", "/v1/dead-letters", "/v1/status")


class PartnerSignature(requests.auth.AuthBase):
    """Signs each prepared request exactly as the SDK does (RFC 9421): GBR's key, or the
    operator OPS-HQ's for operator endpoints."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = request.body
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else None
        path = urlsplit(str(request.url)).path
        signer = me("OPS-HQ") if path.startswith(OPERATOR_PATHS) else me("GBR")
        request.headers.update(
            sign_as(
                signer, str(request.method), str(request.url), dict(request.headers),
                body or None, now=datetime.now(UTC),
            )
        )  # fmt: skip
        return request


def test_signed_requests_generated_from_the_openapi_document_match_it(
    broker: RunningBroker,
) -> None:
    schema = schemathesis.openapi.from_url(f"{broker.url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
    # The event stream never ends by design; the SSE tests cover it.
    operations = [op for op in operations if op.path != "/v1/inbox/stream"]
    assert {op.path for op in operations} >= {
        "/v1/reports",
        "/v1/releasability/preview",
        "/v1/inbox/ack",
        "/v1/dead-letters",
        "/v1/dead-letters/{partner}/{dead_id}",
        "/v1/dead-letters/{partner}/{dead_id}/replay",
        "/v1/status",
    }
    auth = PartnerSignature()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if case.path == "/v1/inbox":
                case.query = {**(case.query or {}), "wait": 0}  # no long polls in a fuzz run
            # A schema-valid envelope or label is still refused when its cryptography or its
            # policy says no; that check would demand otherwise, so it is left out.
            case.call_and_validate(
                base_url=broker.url, auth=auth, excluded_checks=[positive_data_acceptance]
            )

        check()
