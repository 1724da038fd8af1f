"""``POST /v1/reports:batch`` over real HTTP and a real redis-server: many envelopes in one
signed request, each verified, decided, stored and receipted on its own, all-or-nothing per
report; the answer for each is what ``POST /v1/reports`` would have given it alone.

Refusals of the whole batch are a table of named cases, each asserting the status, the code
and that nothing but the request's nonce was stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tearline import AsyncPartner, DeniedError, Label, Receipt
from tearline.broker.store import AUDIT_KEY, inbox_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.protocol.encoding import b64d, strict_loads
from tearline.clients.protocol.envelope import seal
from tests.integration.conftest import UNLIMITED, RunningBroker, me, running_broker
from tests.integration.test_adversarial import PAYLOAD, enc_key, envelope

MAX_REPORTS = 5
MAX_BATCH_BYTES = 64 * 1024
MAX_ENVELOPE_BYTES = 8 * 1024
USA_ONLY = Label("SECRET", ["USA"], "AMBER", topics=["apt"])
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(
        redis_server.url,
        tmp_path_factory.mktemp("batch"),
        **UNLIMITED,
        max_batch_reports=MAX_REPORTS,
        max_batch_bytes=MAX_BATCH_BYTES,
        max_envelope_bytes=MAX_ENVELOPE_BYTES,
    ) as running:
        yield running


def _post(
    world: RunningBroker,
    body: bytes,
    *,
    path: str = "/v1/reports:batch",
    content_type: str = NDJSON,
    signer: str | None = "GBR",
) -> httpx.Response:
    return _send(_request(world, body, path=path, content_type=content_type, signer=signer))


def _send(request: httpx.Request) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.send(request)


def _request(
    world: RunningBroker,
    body: bytes,
    *,
    path: str = "/v1/reports:batch",
    content_type: str = NDJSON,
    signer: str | None = "GBR",
) -> httpx.Request:
    url = world.url + path
    headers = {"content-type": content_type}
    if signer is not None:
        headers |= sign_as(me(signer), "POST", url, headers, body, now=datetime.now(UTC))
    return httpx.Request("POST", url, content=body, headers=headers)


def _id(sealed: bytes) -> str:
    report_id = strict_loads(b64d(strict_loads(sealed)["header"]))["id"]
    assert isinstance(report_id, str)
    return report_id


def _stored(world: RunningBroker) -> set[bytes]:
    """Every key but the nonces: what a refused batch must leave as it was."""
    return {k for k in world.redis().scan_iter(count=1000) if not k.startswith(b"tl:nonce:")}


def _inbox_ids(world: RunningBroker, partner: str) -> list[str]:
    entries = world.redis().xrange(inbox_key(partner))
    return [fields[b"report"].decode() for _, fields in entries]


def test_each_envelope_is_stored_and_receipted_on_its_own(world: RunningBroker) -> None:
    sealed = [envelope(("USA",), USA_ONLY) for _ in range(MAX_REPORTS)]
    response = _post(world, b"\n".join(sealed) + b"\n")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(MAX_REPORTS))
    assert {r["status"] for r in results} == {201}
    assert [r["body"]["receipt"]["id"] for r in results] == [_id(s) for s in sealed]
    assert [r["body"]["receipt"]["recipients"][0]["partner"] for r in results] == ["USA"] * 5
    assert set(_inbox_ids(world, "USA")) >= {_id(s) for s in sealed}
    # The same bytes posted alone get the same receipt: idempotency does not care how.
    alone = _post(world, sealed[2], path="/v1/reports", content_type="application/json")
    assert alone.status_code == 201
    assert alone.headers["idempotent-replayed"] == "true"
    assert alone.json() == results[2]["body"]


def test_a_refused_envelope_leaves_the_others_accepted(world: RunningBroker) -> None:
    good = envelope(("USA",), USA_ONLY)
    # DEU has no agreement with GBR: a slot for it refuses that report, and only that one.
    unentitled = envelope(("USA", "DEU"), Label("SECRET", ["USA", "DEU"], "AMBER", topics=["apt"]))
    garbage = b'{"header":"not base64!","signatures":[],"ciphertext":""}'
    first = envelope(("USA",), USA_ONLY)
    assert _post(world, first, path="/v1/reports", content_type="application/json").is_success
    # Another envelope under the id of one already accepted (fresh keys, so other bytes).
    conflict = seal(
        PAYLOAD, USA_ONLY, [("USA", enc_key("USA"))], me("GBR"), now=datetime.now(UTC),
        envelope_id=_id(first),
    )  # fmt: skip
    oversized = b" " * (MAX_ENVELOPE_BYTES + 1)
    before_usa = len(_inbox_ids(world, "USA"))
    body = b"\n".join([good, unentitled, garbage, conflict, oversized])
    response = _post(world, body)
    assert response.status_code == 200, response.text
    got = [
        (r["status"], r["body"].get("error", {}).get("code")) for r in response.json()["results"]
    ]
    assert got == [
        (201, None),
        (403, "recipient_not_entitled"),
        (400, "envelope_rejected"),
        (409, "id_conflict"),
        (413, "too_large"),
    ]
    assert len(_inbox_ids(world, "USA")) == before_usa + 1
    redis = world.redis()
    assert redis.exists(report_key(_id(good)))
    assert not redis.exists(report_key(_id(unentitled)))
    accepted = [f[b"report"].decode() for _, f in redis.xrange(AUDIT_KEY)]
    assert _id(unentitled) not in accepted


def _lines(n: int) -> bytes:
    return b"\n".join(envelope(("USA",), USA_ONLY) for _ in range(n))


# (name, body, content type, signer, status, code)
WHOLE_BATCH_REFUSALS: list[tuple[str, bytes, str, str | None, int, str]] = [
    ("unsigned", _lines(1), NDJSON, None, 401, "signature_missing"),
    ("json_instead_of_ndjson", _lines(1), "application/json", "GBR", 415, "unsupported_media_type"),
    ("no_envelopes", b"", NDJSON, "GBR", 400, "empty_batch"),
    ("one_envelope_too_many", _lines(MAX_REPORTS + 1), NDJSON, "GBR", 400, "batch_too_large"),
    ("over_the_batch_size", b"x" * (MAX_BATCH_BYTES + 1), NDJSON, "GBR", 413, "too_large"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "signer", "status", "code"),
    [c[1:] for c in WHOLE_BATCH_REFUSALS],
    ids=[c[0] for c in WHOLE_BATCH_REFUSALS],
)
def test_a_whole_batch_is_refused_and_nothing_is_stored(
    world: RunningBroker, body: bytes, content_type: str, signer: str | None, status: int, code: str
) -> None:
    before = _stored(world)
    inbox = _inbox_ids(world, "USA")
    response = _post(world, body, content_type=content_type, signer=signer)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert _stored(world) == before
    assert _inbox_ids(world, "USA") == inbox


def test_a_replayed_batch_request_is_refused_and_stores_nothing(world: RunningBroker) -> None:
    request = _request(world, _lines(2))
    assert _send(request).status_code == 200
    before = _stored(world)
    again = _send(_request_copy(request))
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "replayed_request"
    assert _stored(world) == before


def test_a_replayed_refused_batch_is_refused_as_a_replay(world: RunningBroker) -> None:
    # Refused after authentication (415): its nonce is spent all the same.
    request = _request(world, _lines(1), content_type="text/plain")
    assert _send(request).status_code == 415
    again = _send(_request_copy(request))
    assert (again.status_code, again.json()["error"]["code"]) == (401, "replayed_request")


def _request_copy(request: httpx.Request) -> httpx.Request:
    return httpx.Request(
        request.method, request.url, content=request.content, headers=request.headers
    )


def test_the_batch_is_in_the_openapi_document(world: RunningBroker) -> None:
    document = httpx.get(world.url + "/openapi.json").json()
    operation = document["paths"]["/v1/reports:batch"]["post"]
    assert set(operation["requestBody"]["content"]) == {NDJSON}
    assert {"200", "401", "413", "415"} <= set(operation["responses"])


async def test_the_sdk_posts_a_batch_and_checks_each_receipt(world: RunningBroker) -> None:
    good = envelope(("USA",), USA_ONLY)
    unentitled = envelope(("DEU",), Label("SECRET", ["DEU"], "AMBER", topics=["apt"]))
    async with AsyncPartner(world.url, me("GBR")) as node:
        receipt, refusal = await node.post_envelopes([good, unentitled])
    assert isinstance(receipt, Receipt)
    assert receipt.id == _id(good)
    assert isinstance(refusal, DeniedError)
    assert refusal.code == "recipient_not_entitled"
    assert not world.redis().exists(report_key(_id(unentitled)))
