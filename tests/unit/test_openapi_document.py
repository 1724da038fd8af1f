"""What the OpenAPI document says about authentication and refusals (DESIGN §6), read from
``create_app().openapi()``: the RFC 9421 signature schemes, which operation takes which, and
the 401, 429 and 503 (and the other refusals a signed request can get) with the error body.
``tests/integration/test_authorisation.py`` shows the broker does what this says."""

from __future__ import annotations

from typing import Any, Final

import jsonschema
import pytest
import schemathesis

from tearline.broker.api.errors import error_body
from tearline.broker.app import create_app
from tearline.broker.settings import Settings

PUBLIC: Final = frozenset({"GET /healthz", "GET /readyz"})
OPERATORS: Final = ("/v1/audit", "/v1/dead-letters", "/v1/status", "/metrics")
SIGNED_REFUSALS: Final = ("401", "408", "413", "421", "429", "503")
ERROR: Final = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(redis_url="redis://unused")).openapi()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema


def test_the_signature_schemes_describe_rfc_9421(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"partnerSignature", "operatorSignature"}
    for name, scheme in schemes.items():
        assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Signature")
        description = scheme["description"]
        for needed in ("RFC 9421", "Ed25519", "Signature-Input", "Content-Digest", "RFC 9530"):
            assert needed in description, (name, needed)
        for component in ('"@method"', '"@target-uri"', '"content-digest"'):
            assert component in description, (name, component)
        for parameter in ("created", "keyid", "nonce", 'alg="ed25519"'):
            assert parameter in description, (name, parameter)
    assert "partners.yaml" in schemes["partnerSignature"]["description"]
    assert "operators.yaml" in schemes["operatorSignature"]["description"]


def test_every_operation_but_health_requires_a_signature(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    assert ops.keys() >= PUBLIC
    for name, operation in ops.items():
        path = name.partition(" ")[2]
        if name in PUBLIC:
            assert "security" not in operation, name
        elif path.startswith(OPERATORS):
            assert operation["security"] == [{"operatorSignature": []}], name
        else:
            assert operation["security"] == [{"partnerSignature": []}], name
    assert document.get("security") is None  # no default: each operation says


def test_every_signed_operation_documents_the_refusals_with_the_error_body(
    document: dict[str, Any],
) -> None:
    for name, operation in operations(document).items():
        responses = operation["responses"]
        assert responses["431"]["content"]["application/json"]["schema"] == ERROR, name
        if name in PUBLIC:
            continue
        for status in SIGNED_REFUSALS:
            response = responses[status]
            assert response["content"]["application/json"]["schema"] == ERROR, (name, status)
            assert response["description"] != "error", (name, status)  # says when it happens
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"], name
        for status in ("429", "503"):
            assert responses[status]["headers"]["Retry-After"]["required"], (name, status)


def test_every_error_response_is_the_error_body(document: dict[str, Any]) -> None:
    # FastAPI's {"detail": [...]} schemas are gone: the broker never answers in that shape.
    assert not {"HTTPValidationError", "ValidationError"} & document["components"]["schemas"].keys()
    for name, operation in operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400 and "content" in response:
                assert response["content"] == {"application/json": {"schema": ERROR}}, (
                    name,
                    status,
                )


def test_the_error_schema_is_what_the_broker_sends(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Error"]
    jsonschema.validate(error_body("unknown_key", "no partner has a key with id 'x'"), schema)
    jsonschema.validate(error_body("invalid_request", "no", [{"field": "q"}]), schema)
    for wrong in ({}, {"error": {"code": "x"}}, {"detail": [{"msg": "no"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


def test_the_document_is_built_once() -> None:
    app = create_app(Settings(redis_url="redis://unused"))
    assert app.openapi() is app.openapi()
    assert app.openapi()["paths"]["/v1/inbox"]["get"]["security"] == [{"partnerSignature": []}]
