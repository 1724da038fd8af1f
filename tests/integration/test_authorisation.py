"""Who may call what (DESIGN §6, §11): every route of ``create_app()``, called over real HTTP on
a real Redis by every kind of caller, against an explicit table of rules.

The routes come from the app itself, so a route added without a rule in :data:`RULES` fails
here until someone writes down who may call it. Each route is called by each of
:data:`CALLERS`: nobody (no signature), a forger (a signature of the right shape with the wrong
bytes), two active partners, a suspended partner, a partner whose signing keys are revoked and
an operator. A refusal must be a 401 with the precise ``error.code`` and leave Redis exactly
as it was, byte for byte (``DUMP`` of every key); an allowed caller must get past
authentication (a 404 or 422 for a made-up id is fine, a 401, 403, 429 or 5xx is not).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import fastapi.routing
import httpx
import pytest
import yaml
from fastapi import FastAPI
from starlette.routing import Route

from tearline import Label
from tearline.broker.app import create_app
from tearline.broker.reload import reload_now
from tearline.broker.settings import Settings
from tearline.clients.httpsig import sign_as
from tests.integration.conftest import (
    PARTNERS,
    UNLIMITED,
    RunningBroker,
    me,
    running_broker,
    write_policies,
)
from tests.integration.test_adversarial import envelope, flip_signature

Audience = Literal["public", "partners", "operators"]

#: Who may call each route, ``"METHOD /path"`` as the app declares it. Every route needs one.
RULES: Final[dict[str, Audience]] = {
    # Liveness, readiness and the API's own description: nothing about any partner.
    "GET /healthz": "public",
    "GET /readyz": "public",
    "GET /openapi.json": "public",
    "HEAD /openapi.json": "public",
    "GET /docs": "public",
    "HEAD /docs": "public",
    "GET /docs/oauth2-redirect": "public",
    "HEAD /docs/oauth2-redirect": "public",
    "GET /redoc": "public",
    "HEAD /redoc": "public",
    "GET /docs/assets/{name}": "public",  # Swagger UI and ReDoc files, served without a CDN
    "HEAD /docs/assets/{name}": "public",
    # What a partner does: signed with an active partner's valid sig key.
    "POST /v1/reports": "partners",
    "POST /v1/reports:batch": "partners",
    "POST /v1/releasability/preview": "partners",
    "POST /v1/reports/{report_id}/recall": "partners",
    "GET /v1/inbox": "partners",
    "GET /v1/inbox/stream": "partners",
    "POST /v1/inbox/ack": "partners",
    "GET /v1/partners": "partners",
    "GET /v1/agreements": "partners",
    # The governance documents and their log: what partners check the broker with.
    "GET /v1/governance": "partners",
    "GET /v1/log/head": "partners",
    "GET /v1/log/entries": "partners",
    "GET /v1/log/proofs/inclusion": "partners",
    "GET /v1/log/proofs/consistency": "partners",
    # What an operator does: signed with a key from operators.yaml.
    "GET /v1/audit": "operators",
    # How the traffic moves: not for partners (issue 16; Prometheus scrapes its own listener).
    "GET /metrics": "operators",
    "GET /v1/dead-letters": "operators",
    "GET /v1/dead-letters/{partner}/{dead_id}": "operators",
    "POST /v1/dead-letters/{partner}/{dead_id}/replay": "operators",
    "GET /v1/status": "operators",
}


@dataclass(frozen=True)
class Caller:
    name: str
    signer: str | None  # whose key signs the request; None: not signed
    # Signed with the key of someone the route admits (GBR's, or OPS-HQ's on operators'
    # routes), then one character of the signature changed: only the bytes are wrong.
    forged: bool = False


UNSIGNED: Final = Caller("unsigned", None)
FORGED: Final = Caller("forged", None, forged=True)
GBR: Final = Caller("GBR", "GBR")  # partner A
USA: Final = Caller("USA", "USA")  # partner B
SUSPENDED: Final = Caller("DEU (suspended)", "DEU")
REVOKED: Final = Caller("EST (sig keys revoked)", "EST")
OPERATOR: Final = Caller("OPS-HQ (operator)", "OPS-HQ")
CALLERS: Final = (UNSIGNED, FORGED, GBR, USA, SUSPENDED, REVOKED, OPERATOR)

#: For each audience, who gets through, and the ``error.code`` of everyone else's 401.
ALLOWED: Final[dict[Audience, frozenset[Caller]]] = {
    "public": frozenset(CALLERS),
    "partners": frozenset({GBR, USA}),
    "operators": frozenset({OPERATOR}),
}
REFUSED: Final[dict[Audience, dict[Caller, str]]] = {
    "public": {},
    "partners": {
        UNSIGNED: "signature_missing",
        FORGED: "signature_invalid",
        SUSPENDED: "partner_suspended",
        REVOKED: "key_not_valid",
        OPERATOR: "unknown_key",  # an operator's key is not a partner's
    },
    "operators": {
        UNSIGNED: "signature_missing",
        FORGED: "signature_invalid",
        GBR: "unknown_key",  # a partner's key is not an operator's, whatever its standing
        USA: "unknown_key",
        SUSPENDED: "unknown_key",
        REVOKED: "unknown_key",
    },
}

# What to send to each route: path parameters, a query, a body. Made-up ids are fine: an allowed
# caller then gets a 404, which still shows that it got past authentication.
PATH_PARAMS: Final = {
    "{report_id}": "0190a8e4-1b2c-7d3e-8f40-5a6b7c8d9e0f",
    "{partner}": "USA",
    "{dead_id}": "1-0",
    "{name}": "swagger-ui.css",
}
QUERIES: Final = {"/v1/dead-letters": {"partner": "USA"}}
PREVIEW: Final = {"label": Label("SECRET", ["USA"], "AMBER").to_dict(), "suite": "classic"}


def body_for(path: str, caller: Caller) -> bytes | None:
    if path == "/v1/reports:batch":
        return (body_for("/v1/reports", caller) or b"") + b"\n"
    if path == "/v1/reports":
        # A genuine envelope from the signer itself (GBR's for callers that are not partners):
        # what it would post if it were allowed to.
        who = caller.signer if caller.signer in PARTNERS else "GBR"
        to = "USA" if who != "USA" else "GBR"
        return envelope((to,), Label("SECRET", [to], "AMBER", topics=["apt"]), originator=who)
    if path == "/v1/releasability/preview":
        return json.dumps(PREVIEW).encode()
    if path == "/v1/inbox/ack":
        return b'{"ids": ["1-0"]}'
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path)`` the app serves. FastAPI ≥ 0.165 keeps included routers whole in
    ``app.routes`` and flattens them with ``iter_route_contexts``; before, they were flat."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: list[Any] = list(flatten(app.routes) if flatten else app.routes)
    found = []
    for route in routes:
        if not isinstance(getattr(route, "original_route", route), Route):
            # A mount or a websocket: nothing here knows how to call it; a rule is needed.
            found.append(("?", f"{type(route).__name__} {getattr(route, 'path', '')}"))
            continue
        for method in sorted(route.methods or ()):
            found.append((method, str(route.path)))
    return found


ROUTES: Final = routes_of(create_app(Settings(redis_url="redis://unused")))


def keyspace(r: Any) -> dict[bytes, bytes]:
    """Every key in Redis with its serialised value (``DUMP``): any change to anything shows."""
    return {key: r.dump(key) for key in sorted(r.scan_iter(count=1000))}


def write_partners(policies: Path, *, suspended: str, revoked: str) -> None:
    """partners.yaml with ``suspended`` suspended and every signing key of ``revoked`` revoked
    (the partner itself still active)."""
    entries = []
    for partner in PARTNERS:
        entry = me(partner).public_entry(status="suspended" if partner == suspended else "active")
        for key in entry["keys"]:
            key["revoked"] = partner == revoked and key["use"] == "sig"
        entries.append(entry)
    (policies / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """One broker for the whole matrix, with DEU suspended and EST's signing keys revoked, and
    budgets no caller meets; no background job writes to Redis while it runs."""
    folder = tmp_path_factory.mktemp("authorisation")
    write_policies(folder / "policies")
    with running_broker(
        redis_server.url,
        folder,
        **UNLIMITED,
        audit_checkpoint_s=3600,
        retention_check_s=3600,
        policy_poll_s=3600,
    ) as running:
        write_partners(running.policies, suspended="DEU", revoked="EST")
        assert running.run(reload_now(running.state)), running.state.policy_error
        yield running


def request_for(
    client: httpx.Client,
    broker: RunningBroker,
    route: tuple[str, str],
    audience: Audience,
    caller: Caller,
) -> httpx.Request:
    method, path = route
    concrete = path
    for name, value in PATH_PARAMS.items():
        concrete = concrete.replace(name, value)
    body = body_for(path, caller) if method == "POST" else None
    headers = {"content-type": "application/json"} if body is not None else {}
    if path.endswith(":batch"):
        headers["content-type"] = "application/x-ndjson"
    request = client.build_request(
        method, broker.url + concrete, params=QUERIES.get(path), content=body, headers=headers
    )
    signer = ("OPS-HQ" if audience == "operators" else "GBR") if caller.forged else caller.signer
    if signer is not None:
        url = str(request.url)
        request.headers.update(sign_as(me(signer), method, url, headers, body, now=_now()))
    if caller.forged:
        request.headers.update(flip_signature(request))
    return request


def call(client: httpx.Client, broker: RunningBroker, request: httpx.Request) -> httpx.Response:
    response = client.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response  # the stream was opened; that is all the matrix needs to know
        response.read()
        return response
    finally:
        response.close()
        # A stream ends on the broker's side within a heartbeat of the client leaving; until
        # then it reads the inbox, which would show as a change in the next cell.
        deadline = time.monotonic() + 10
        while broker.state.waiters.held and time.monotonic() < deadline:
            time.sleep(0.05)


def test_every_route_has_a_rule_and_every_rule_a_route() -> None:
    served = {f"{method} {path}" for method, path in ROUTES}
    assert sorted(served - RULES.keys()) == [], "say who may call these routes in RULES"
    assert sorted(RULES.keys() - served) == [], "these rules name routes the app does not serve"


def test_the_rules_place_every_caller() -> None:
    for audience in ALLOWED:
        assert ALLOWED[audience].isdisjoint(REFUSED[audience])
        assert ALLOWED[audience] | REFUSED[audience].keys() == set(CALLERS)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_caller_gets_what_the_rules_say(world: RunningBroker, route: tuple[str, str]) -> None:
    method, path = route
    audience = RULES.get(f"{method} {path}")
    assert audience is not None, f"{method} {path} has no rule in RULES: say who may call it"
    r = world.redis()
    wrong: list[str] = []
    seen: dict[str, int] = {}
    with httpx.Client(timeout=10) as client:
        for caller in CALLERS:
            request = request_for(client, world, route, audience, caller)
            before = keyspace(r)
            response = call(client, world, request)
            seen[caller.name] = response.status_code
            if caller in ALLOWED[audience]:
                if audience == "public" and response.status_code != 200:
                    wrong.append(f"{caller.name}: {response.status_code}, expected 200")
                elif response.status_code in (401, 403, 429) or response.status_code >= 500:
                    wrong.append(f"{caller.name}: {response.status_code} {response.text[:200]}")
                elif audience != "public" and keyspace(r) == before:
                    # The control: an accepted signature stores its nonce at least, so the
                    # snapshot does see a change when there is one.
                    wrong.append(f"{caller.name}: allowed, yet not even its nonce was stored")
                continue
            code = REFUSED[audience][caller]
            got = response.json().get("error", {}).get("code") if response.content else None
            if (response.status_code, got) != (401, code):
                wrong.append(f"{caller.name}: {response.status_code} {got}, expected 401 {code}")
            elif "signature" not in response.headers.get("www-authenticate", "").lower():
                wrong.append(f"{caller.name}: a 401 without WWW-Authenticate: Signature")
            if keyspace(r) != before:
                wrong.append(f"{caller.name}: refused, yet Redis changed")
    assert wrong == [], f"{method} {path} ({audience}): {seen}"


def test_the_openapi_document_says_who_signs_each_route(world: RunningBroker) -> None:
    document = httpx.get(f"{world.url}/openapi.json", timeout=10).json()
    schemes = {"partners": "partnerSignature", "operators": "operatorSignature"}
    documented = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            rule = RULES[f"{method.upper()} {path}"]
            documented.add(f"{method.upper()} {path}")
            expected: list[dict[str, list[str]]] | None = (
                [{schemes[rule]: []}] if rule in schemes else None
            )
            assert operation.get("security") == expected, f"{method.upper()} {path}"
    # Every signed route is in the document (the public ones may be left out: /docs, say).
    assert {k for k, v in RULES.items() if v != "public"} <= documented
