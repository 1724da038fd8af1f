"""Crafted input against a real broker over real HTTP and a real redis-server: never a 500.

- A label whose ``expires`` names an instant outside what a datetime holds in UTC
  (``9999-12-31T23:59:59-23:59`` is year 10000 in UTC) is refused by the parser, in a preview,
  a post and a batch, where the envelopes beside it are accepted all the same.
- A stream id whose parts do not fit in 64 bits, or an exclusive ``after`` with nothing after
  it, is a 400 ``invalid_stream_id`` on every endpoint that takes one, and changes nothing.

Each refusal asserts the status and code, that nothing was stored or delivered, and that the
honest request beside it still works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import pytest

from tearline import Label
from tearline.broker.store import AUDIT_KEY, dead_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tearline.clients.protocol.encoding import b64d, b64e, compact_json, strict_loads
from tearline.clients.protocol.envelope import pae
from tests.integration.conftest import UNLIMITED, RunningBroker, me, running_broker
from tests.integration.test_adversarial import USA_ONLY, envelope, snapshot

U64_MAX: Final = (1 << 64) - 1
NDJSON: Final = "application/x-ndjson"


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(redis_server.url, tmp_path_factory.mktemp("crafted"), **UNLIMITED) as b:
        yield b


def send(
    world: RunningBroker,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    who: str = "GBR",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = world.url + path
    sent = {"content-type": content_type, **(headers or {})} if body is not None else {}
    sent |= headers or {}
    sent |= sign_as(me(who), method, url, sent, body, now=datetime.now(UTC))
    return httpx.request(method, url, content=body, headers=sent, timeout=10)


def with_label(sealed: bytes, label: dict[str, Any], *, signer: str = "GBR") -> bytes:
    """A genuine envelope whose header now carries ``label``, validly re-signed by its
    originator: what a hostile partner builds, since the broker checks only the signature
    and the header (the label digest bound into the ciphertext is the recipients' concern)."""
    outer = strict_loads(sealed)
    header = strict_loads(b64d(outer["header"]))
    header["label"] = label
    header_bytes = compact_json(header)
    signatures = [
        {"kid": kid, "sig": b64e(key.sign(pae(header_bytes)))}
        for kid, key in me(signer).signing_keys(header["suite"], datetime.now(UTC))
    ]
    return compact_json(
        {"header": b64e(header_bytes), "signatures": signatures, "ciphertext": outer["ciphertext"]}
    )


def report_id(sealed: bytes) -> str:
    value = strict_loads(b64d(strict_loads(sealed)["header"]))["id"]
    assert isinstance(value, str)
    return value


# --- item 8: an expiry whose UTC instant overflows ------------------------------------------

# Each a time that datetime.fromisoformat accepts but whose UTC instant is out of range.
OVERFLOWING_EXPIRIES = [
    pytest.param("9999-12-31T23:59:59-23:59", id="year-10000-in-utc"),
    pytest.param("9999-12-31T23:00:00-01:00", id="one-hour-past-9999"),
    pytest.param("0001-01-01T00:00:00+00:01", id="before-year-1-in-utc"),
]


def crafted_label(expires: str) -> dict[str, Any]:
    return {**USA_ONLY.to_dict(), "expires": expires}


@pytest.mark.parametrize("expires", OVERFLOWING_EXPIRIES)
def test_expires_overflow_attack_is_a_400_and_spares_the_batch(
    world: RunningBroker, expires: str
) -> None:
    r = world.redis()
    crafted = with_label(envelope(), crafted_label(expires))
    honest = [envelope() for _ in range(3)]

    # The preview parses the label as the label it is: 400 invalid_label.
    preview = send(
        world, "POST", "/v1/releasability/preview",
        json.dumps({"label": crafted_label(expires)}).encode(),
    )  # fmt: skip
    assert preview.status_code == 400, preview.text
    assert preview.json()["error"]["code"] == "invalid_label"

    # Alone, the envelope is refused as every bad envelope is (opaque on purpose, §5).
    before = snapshot(r)
    alone = send(world, "POST", "/v1/reports", crafted)
    assert alone.status_code == 400, alone.text
    assert alone.json()["error"]["code"] == "envelope_rejected"
    assert snapshot(r) == before
    assert not r.exists(report_key(report_id(crafted)))

    # In a batch, between honest envelopes: only it is refused, they are stored and routed.
    body = b"\n".join([honest[0], crafted, honest[1], honest[2]])
    request_url = world.url + "/v1/reports:batch"
    headers = {"content-type": NDJSON}
    headers |= sign_as(me("GBR"), "POST", request_url, headers, body, now=datetime.now(UTC))
    batch = httpx.post(request_url, content=body, headers=headers, timeout=10)
    assert batch.status_code == 200, batch.text
    got = [(x["status"], x["body"].get("error", {}).get("code")) for x in batch.json()["results"]]
    assert got == [(201, None), (400, "envelope_rejected"), (201, None), (201, None)]
    assert not r.exists(report_key(report_id(crafted)))
    assert all(r.exists(report_key(report_id(h))) for h in honest)
    audited = {f[b"report"].decode() for _, f in r.xrange(AUDIT_KEY)}
    assert report_id(crafted) not in audited
    # The batch's nonce was spent: the same signed request again is a replay, storing nothing.
    again = httpx.post(request_url, content=body, headers=headers, timeout=10)
    assert (again.status_code, again.json()["error"]["code"]) == (401, "replayed_request")


async def test_an_honest_far_expiry_is_still_accepted_and_delivered(world: RunningBroker) -> None:
    # The latest expiry that is in range in UTC: accepted and delivered as any other.
    label = Label.from_dict(crafted_label("9999-12-31T23:59:59Z"))
    async with AsyncPartner(world.url, me("GBR")) as gbr:
        receipt = await gbr.publish(b"{}", label, content_type="text/plain")
    assert [d.partner for d in receipt.recipients] == ["USA"]
    async with AsyncPartner(world.url, me("USA")) as usa:
        received = []
        for _ in range(5):
            received += [x.id for x in await usa.inbox(wait_s=1, limit=100)]
            if receipt.id in received:
                break
    assert receipt.id in received


# --- item 9: stream ids beyond 64 bits, and nothing after the largest ------------------------

MAX_ID: Final = f"{U64_MAX}-{U64_MAX}"
OVER_MS: Final = f"{U64_MAX + 1}-0"
OVER_SEQ: Final = f"0-{U64_MAX + 1}"


def _ack(ids: list[str]) -> tuple[str, str, bytes | None, str, dict[str, str]]:
    return ("POST", "/v1/inbox/ack", json.dumps({"ids": ids}).encode(), "GBR", {})


# (method, path, body, signer, extra headers)
STREAM_ID_ATTACKS = [
    pytest.param(
        ("GET", f"/v1/dead-letters?partner=USA&after={MAX_ID}", None, "OPS-HQ", {}),
        id="dead-letters-after-the-largest-id",
    ),
    pytest.param(
        ("GET", f"/v1/dead-letters?partner=USA&after={OVER_MS}", None, "OPS-HQ", {}),
        id="dead-letters-after-milliseconds-beyond-64-bits",
    ),
    pytest.param(
        ("GET", f"/v1/dead-letters?partner=USA&after={OVER_SEQ}", None, "OPS-HQ", {}),
        id="dead-letters-after-sequence-beyond-64-bits",
    ),
    pytest.param(
        ("GET", f"/v1/dead-letters/USA/{OVER_MS}", None, "OPS-HQ", {}),
        id="dead-letter-id-beyond-64-bits",
    ),
    pytest.param(
        ("POST", f"/v1/dead-letters/USA/{OVER_SEQ}/replay", None, "OPS-HQ", {}),
        id="replay-of-a-dead-letter-id-beyond-64-bits",
    ),
    pytest.param(_ack([OVER_MS]), id="ack-of-an-id-beyond-64-bits"),
    pytest.param(_ack(["1-1", OVER_SEQ]), id="ack-of-a-good-id-and-one-beyond-64-bits"),
    pytest.param(
        ("GET", "/v1/inbox/stream", None, "GBR", {"last-event-id": OVER_MS}),
        id="stream-resuming-after-an-id-beyond-64-bits",
    ),
]


@pytest.mark.parametrize("attack", STREAM_ID_ATTACKS)
def test_stream_id_overflow_attack_is_a_400(
    world: RunningBroker, attack: tuple[str, str, bytes | None, str, dict[str, str]]
) -> None:
    method, path, body, who, headers = attack
    r = world.redis()
    before = snapshot(r)
    response = send(world, method, path, body, who=who, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_stream_id"
    assert "64" in error["message"] or "after" in error["message"]
    assert snapshot(r) == before


def test_the_largest_stream_ids_are_still_served_where_they_make_sense(
    world: RunningBroker,
) -> None:
    # The honest neighbours of the refusals: the largest id itself is a valid id everywhere
    # it is not the exclusive start of a range, and every part up to 2^64 - 1 is accepted.
    r = world.redis()
    r.xadd(dead_key("USA"), {"entry": "1-0", "report": "", "originator": "GBR", "kind": "gap",
                             "reason": "test", "lost": "1", "before": "1-0"})  # fmt: skip
    listed = send(world, "GET", "/v1/dead-letters?partner=USA", who="OPS-HQ")
    assert listed.status_code == 200, listed.text
    (first,) = listed.json()["dead_letters"]
    after_max_ms = send(
        world, "GET", f"/v1/dead-letters?partner=USA&after={U64_MAX}-0", who="OPS-HQ"
    )
    assert (after_max_ms.status_code, after_max_ms.json()["dead_letters"]) == (200, [])
    after_first = send(world, "GET", "/v1/dead-letters?partner=USA&after=0-0", who="OPS-HQ")
    assert [d["id"] for d in after_first.json()["dead_letters"]] == [first["id"]]
    unknown = send(world, "GET", f"/v1/dead-letters/USA/{MAX_ID}", who="OPS-HQ")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "no_such_dead_letter")
    acked = send(world, "POST", "/v1/inbox/ack", json.dumps({"ids": [MAX_ID]}).encode())
    assert (acked.status_code, acked.json()) == (200, {"acked": 0})
