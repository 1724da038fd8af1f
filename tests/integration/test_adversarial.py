"""Hostile requests against a real broker over real HTTP and a real redis-server (DESIGN §5, §6).

Every refusal is checked twice: the answer (HTTP status and the machine-readable
``error.code``) and the absence of effects (no ``tl:report:*`` key, every inbox stream, pending
list, dead-letter stream and the audit stream exactly as before). Requests are crafted by hand
with ``clients.httpsig.sign_request``, the way a partner in another language would sign them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import pytest

from tearline import Label
from tearline.broker.store import AUDIT_KEY, GROUP, dead_key, inbox_key
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.partner import AsyncPartner
from tearline.clients.protocol.encoding import b64d, b64e, compact_json
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.identity import SUITE_KEM, KeyRecord
from tests.integration.conftest import PARTNERS, RunningBroker, me

BOUND_S: Final = 10.0
PAYLOAD: Final = (
    b'{"type":"bundle","id":"bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8","objects":[]}'
)
# GBR → USA under gbr-usa only (above the Baltic ceiling).
USA_ONLY: Final = Label("SECRET", ["USA"], "AMBER", topics=["apt"])
BALTIC: Final = Label("RESTRICTED", ["USA", "BALTIC", "DEU"], "AMBER", topics=["ransomware"])
CONFIDENTIAL_APT: Final = Label("CONFIDENTIAL", ["USA", "BALTIC"], "AMBER", topics=["apt"])
JSON: Final = {"content-type": "application/json"}
ANY: Final = object()  # the details of this refusal are not checked


# --- the attacker's toolbox -----------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def enc_key(partner: str, suite: str = "classic") -> KeyRecord:
    """The partner's public ``enc`` key for ``suite``, as the directory publishes it."""
    alg = SUITE_KEM[suite]
    return next(k.record for k in me(partner).keys if k.record.use == "enc" and k.record.alg == alg)


def envelope(
    recipients: tuple[str, ...] = ("USA",),
    label: Label = USA_ONLY,
    *,
    originator: str = "GBR",
    payload: bytes = PAYLOAD,
    age: timedelta = timedelta(0),
    keys: dict[str, KeyRecord] | None = None,
) -> bytes:
    """A genuine envelope, sealed with the real protocol code, for exactly ``recipients``."""
    slots = [(p, (keys or {}).get(p) or enc_key(p)) for p in recipients]
    return seal(payload, label, slots, me(originator), now=datetime.now(UTC) - age)


def mutate(sealed: bytes, part: str) -> bytes:
    """Flip one byte of ``part`` (``header``, ``ciphertext`` or the first signature)."""
    outer = json.loads(sealed)
    if part == "signature":
        raw = bytearray(b64d(outer["signatures"][0]["sig"]))
        raw[len(raw) // 2] ^= 0x01
        outer["signatures"][0]["sig"] = b64e(bytes(raw))
    else:
        raw = bytearray(b64d(outer[part]))
        raw[len(raw) // 2] ^= 0x01
        outer[part] = b64e(bytes(raw))
    return compact_json(outer)


@dataclass
class World:
    broker: RunningBroker
    client: httpx.AsyncClient

    def url(self, path: str) -> str:
        return self.broker.url + path

    def unsigned(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] = JSON
    ) -> httpx.Request:
        return self.client.build_request(method, self.url(path), content=body, headers=headers)

    def signed(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        who: str = "GBR",
        created_offset_s: int = 0,
        nonce: str | None = None,
        key_id: str | None = None,
        private_key: bytes | None = None,
        signed_url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Request:
        """A request signed over the exact URL sent (or ``signed_url``), with knobs to break."""
        request = self.unsigned(method, path, body, {**JSON, **(headers or {})})
        now = datetime.now(UTC)
        kid, private = signing_key_of(me(who), now)
        request.headers.update(
            sign_request(
                method,
                signed_url or str(request.url),
                dict(request.headers),
                body,
                key_id=key_id or kid,
                private_key=private_key or private,
                created=int(now.timestamp()) + created_offset_s,
                nonce=nonce or secrets.token_urlsafe(16),
            )
        )
        return request

    def resend(
        self,
        request: httpx.Request,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        drop: tuple[str, ...] = (),
        replace: dict[str, str] | None = None,
    ) -> httpx.Request:
        """``request`` again with the same signature headers, optionally other body bytes."""
        skip = {"content-length", "transfer-encoding", *drop}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        headers.update(replace or {})
        body = request.content if content is None else content
        return self.client.build_request(request.method, request.url, content=body, headers=headers)


def flip_signature(request: httpx.Request) -> dict[str, str]:
    # Signature: sig1=:<base64>: — change one base64 character in the middle.
    value = request.headers["signature"]
    i = len(value) // 2
    return {"signature": value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]}


async def chunked(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def snapshot(r: Any) -> dict[str, Any]:
    """Everything an accepted or delivered report would change in Redis."""
    return {
        "reports": sorted(k.decode() for k in r.scan_iter("tl:report:*")),
        "inboxes": {p: [i.decode() for i, _ in r.xrange(inbox_key(p))] for p in PARTNERS},
        "pending": {
            p: int(r.xpending(inbox_key(p), GROUP)["pending"]) if r.exists(inbox_key(p)) else 0
            for p in PARTNERS
        },
        "dead": {p: int(r.xlen(dead_key(p))) for p in PARTNERS},
        "audit": int(r.xlen(AUDIT_KEY)),
    }


# --- the table ------------------------------------------------------------------------------

# Requests that must succeed first (a replay needs an original), then the attack.
Plan = tuple[list[httpx.Request], httpx.Request]


@dataclass(frozen=True)
class Attack:
    plan: Callable[[World], Plan]
    status: int
    code: str
    details: object = field(default=ANY)


def post_report(w: World, body: bytes | None = None, **knobs: Any) -> httpx.Request:
    return w.signed("POST", "/v1/reports", envelope() if body is None else body, **knobs)


def _replayed(w: World) -> Plan:
    first = post_report(w)
    return [first], w.resend(first)


def _replayed_read(w: World) -> Plan:
    first = w.signed("GET", "/v1/inbox")
    return [first], w.resend(first)


def _nonce_reused(w: World) -> Plan:
    nonce = secrets.token_urlsafe(16)
    return [post_report(w, nonce=nonce)], post_report(w, nonce=nonce)


def _tampered_body(w: World) -> Plan:
    signed = post_report(w)
    return [], w.resend(signed, content=envelope())  # another genuine envelope, same signature


def _suspended(w: World) -> Plan:
    body = envelope()
    w.broker.change_policies(suspended=("GBR",))
    return [], post_report(w, body)


def _slot_for_suspended(w: World) -> Plan:
    body = envelope(("EST", "USA"), BALTIC)
    w.broker.change_policies(suspended=("EST",))
    return [], post_report(w, body)


def _suspended_reads(w: World) -> Plan:
    w.broker.change_policies(suspended=("GBR",))
    return [], w.signed("GET", "/v1/inbox")


def _signature_altered(w: World) -> Plan:
    signed = post_report(w)
    return [], w.resend(signed, replace=flip_signature(signed))


def _oversized() -> bytes:
    # A genuine envelope whose base64 ciphertext alone is over the 1 MiB default limit.
    return envelope(payload=secrets.token_bytes(800 * 1024))


def _oversized_chunked(w: World) -> Plan:
    signed = post_report(w, _oversized())
    return [], w.resend(signed, content=chunked(signed.content))  # no Content-Length


def _oversized_preview_chunked(w: World) -> Plan:
    body = b"x" * (2 * 1024 * 1024)
    return [], w.resend(w.unsigned("POST", "/v1/releasability/preview"), content=chunked(body))


def only(request: httpx.Request) -> Plan:
    return [], request


AUTHENTICATION = [
    pytest.param(
        Attack(
            lambda w: only(w.unsigned("POST", "/v1/reports", envelope())), 401, "signature_missing"
        ),
        id="unsigned-report",
    ),
    pytest.param(
        Attack(lambda w: only(w.unsigned("GET", "/v1/inbox")), 401, "signature_missing"),
        id="unsigned-inbox-read",
    ),
    pytest.param(
        Attack(_signature_altered, 401, "signature_invalid"), id="signature-bytes-altered"
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, private_key=signing_key_of(me("USA"), _now())[1])),
            401,
            "signature_invalid",
        ),
        id="signed-with-another-partners-key-under-this-keyid",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, key_id="NOBODY-sig-1")), 401, "unknown_key"),
        id="unknown-keyid",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, key_id=enc_key("GBR").kid)), 401, "key_not_allowed"),
        id="keyid-of-an-encryption-key",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, created_offset_s=-120)), 401, "stale_signature"),
        id="created-older-than-the-replay-window",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, created_offset_s=120)), 401, "signature_from_future"),
        id="created-in-the-future",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, nonce="short")), 401, "params_invalid"),
        id="nonce-too-short",
    ),
    pytest.param(Attack(_replayed, 401, "replayed_request"), id="replayed-report-post"),
    pytest.param(Attack(_replayed_read, 401, "replayed_request"), id="replayed-inbox-read"),
    pytest.param(Attack(_nonce_reused, 401, "replayed_request"), id="nonce-reused-for-other-body"),
    pytest.param(Attack(_tampered_body, 401, "digest_mismatch"), id="body-tampered-after-signing"),
    pytest.param(
        Attack(
            lambda w: only(w.resend(post_report(w), drop=("content-digest",))),
            401,
            "digest_missing",
        ),
        id="content-digest-removed",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, signed_url=w.url("/v1/releasability/preview"))),
            401,
            "signature_invalid",
        ),
        id="signed-for-another-path",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, signed_url="http://broker.example/v1/reports")),
            401,
            "signature_invalid",
        ),
        id="signed-for-another-host",
    ),
    pytest.param(Attack(_suspended, 401, "partner_suspended"), id="suspended-partner-posts"),
    pytest.param(
        Attack(_suspended_reads, 401, "partner_suspended"), id="suspended-partner-reads-inbox"
    ),
    pytest.param(
        Attack(
            lambda w: only(w.unsigned("POST", "/v1/releasability/preview", b"{not json")),
            401,
            "signature_missing",
        ),
        id="unsigned-malformed-json-preview",
    ),
    pytest.param(
        Attack(
            lambda w: only(w.unsigned("POST", "/v1/inbox/ack", b"{not json")),
            401,
            "signature_missing",
        ),
        id="unsigned-malformed-json-ack",
    ),
]

POLICY = [
    pytest.param(
        Attack(
            lambda w: only(
                post_report(
                    w, envelope(("GBR",), Label("SECRET", ["GBR"], "AMBER"), originator="USA")
                )
            ),
            403,
            "not_originator",
        ),
        id="envelope-originator-is-not-the-caller",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(("DEU", "EST", "FIN", "USA"), BALTIC))),
            403,
            "recipient_not_entitled",
            {"denied": {"DEU": "NO_AGREEMENT"}},
        ),
        id="slot-for-a-partner-with-no-agreement",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(("EST", "FIN", "USA"), CONFIDENTIAL_APT))),
            403,
            "recipient_not_entitled",
            {"denied": {"FIN": "CLASSIFICATION_ABOVE_CLEARANCE"}},
        ),
        id="slot-above-the-partners-clearance",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(("EST", "USA"), USA_ONLY))),
            403,
            "recipient_not_entitled",
            {"denied": {"EST": "NOT_RELEASABLE_TO"}},
        ),
        id="slot-for-a-partner-the-label-does-not-name",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(("GBR", "USA"), USA_ONLY))),
            403,
            "recipient_not_entitled",
            {"denied": {"GBR": "ORIGINATOR"}},
        ),
        id="slot-for-the-originator",
    ),
    pytest.param(
        Attack(
            _slot_for_suspended,
            403,
            "recipient_not_entitled",
            {"denied": {"EST": "PARTNER_SUSPENDED"}},
        ),
        id="slot-for-a-suspended-partner",
    ),
]

ENVELOPE = [
    pytest.param(
        Attack(
            lambda w: only(post_report(w, mutate(envelope(), "ciphertext"))),
            400,
            "envelope_rejected",
        ),
        id="ciphertext-byte-flipped",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, mutate(envelope(), "header"))), 400, "envelope_rejected"
        ),
        id="header-byte-flipped",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, mutate(envelope(), "signature"))),
            400,
            "envelope_rejected",
        ),
        id="envelope-signature-byte-flipped",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(age=timedelta(minutes=10)))),
            400,
            "envelope_rejected",
        ),
        id="envelope-created-too-long-ago",
    ),
    pytest.param(
        Attack(
            lambda w: only(
                post_report(w, envelope(("EST",), BALTIC, keys={"EST": enc_key("USA")}))
            ),
            400,
            "envelope_rejected",
        ),
        id="slot-wrapped-to-another-partners-key",
    ),
    pytest.param(
        Attack(
            lambda w: only(post_report(w, envelope(label=Label("TOP-SECRET", ["USA"], "AMBER")))),
            400,
            "envelope_rejected",
        ),
        id="envelope-label-with-unknown-level",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, b"{not json")), 400, "envelope_rejected"),
        id="malformed-json-report",
    ),
    pytest.param(
        Attack(lambda w: only(post_report(w, b'{"hello":"world"}')), 400, "envelope_rejected"),
        id="json-that-is-not-an-envelope",
    ),
]

SIZE = [
    pytest.param(
        Attack(lambda w: only(post_report(w, _oversized())), 413, "too_large"),
        id="oversized-report-with-content-length",
    ),
    pytest.param(
        Attack(_oversized_chunked, 413, "too_large"),
        id="oversized-report-chunked",
    ),
    pytest.param(
        Attack(_oversized_preview_chunked, 413, "too_large"),
        id="oversized-preview-chunked",
    ),
]


# The shape of a stream entry id, but its milliseconds do not fit Redis's unsigned 64 bits.
HUGE_ENTRY_ID: Final = "99999999999999999999-0"


def _ack(w: World, entry_id: str) -> httpx.Request:
    return w.signed("POST", "/v1/inbox/ack", json.dumps({"ids": [entry_id]}).encode())


def _preview(w: World, label: dict[str, Any], suite: str = "classic") -> Plan:
    body = json.dumps({"label": label, "suite": suite}).encode()
    return only(w.signed("POST", "/v1/releasability/preview", body))


PREVIEW_AND_INBOX = [
    pytest.param(
        Attack(
            lambda w: _preview(
                w, {"classification": "TOP-SECRET", "releasable_to": ["USA"], "tlp": "AMBER"}
            ),
            400,
            "invalid_label",
        ),
        id="preview-label-with-unknown-level",
    ),
    pytest.param(
        Attack(
            lambda w: _preview(
                w,
                {
                    "classification": "SECRET",
                    "releasable_to": ["USA"],
                    "tlp": "AMBER",
                    "caveats": ["NOFORN"],
                },
            ),
            400,
            "invalid_label",
        ),
        id="preview-label-with-unknown-caveat",
    ),
    pytest.param(
        Attack(
            lambda w: _preview(w, {"classification": "SECRET", "releasable_to": ["USA"]}),
            400,
            "invalid_label",
        ),
        id="preview-label-without-tlp",
    ),
    pytest.param(
        Attack(lambda w: _preview(w, USA_ONLY.to_dict(), "rot13"), 422, "invalid_request"),
        id="preview-unknown-suite",
    ),
    pytest.param(
        Attack(
            lambda w: only(w.signed("POST", "/v1/releasability/preview", b"{not json")),
            422,
            "invalid_request",
        ),
        id="preview-malformed-json",
    ),
    pytest.param(
        Attack(lambda w: only(_ack(w, "tl:inbox:{USA}")), 422, "invalid_request"),
        id="ack-of-something-that-is-not-an-entry-id",
    ),
    pytest.param(
        Attack(
            lambda w: only(
                w.signed("GET", "/v1/inbox/stream", headers={"last-event-id": "not-an-entry"})
            ),
            422,
            "invalid_request",
        ),
        id="stream-with-malformed-last-event-id",
    ),
    pytest.param(
        Attack(
            lambda w: only(w.signed("GET", "/v1/inbox?consumer=../USA")), 422, "invalid_request"
        ),
        id="inbox-with-malformed-consumer",
    ),
    pytest.param(
        Attack(lambda w: only(_ack(w, HUGE_ENTRY_ID)), 400, "invalid_stream_id"),
        id="ack-of-an-entry-id-beyond-64-bits",
    ),
    pytest.param(
        Attack(
            lambda w: only(
                w.signed("GET", "/v1/inbox/stream", headers={"last-event-id": HUGE_ENTRY_ID})
            ),
            400,
            "invalid_stream_id",
        ),
        id="stream-resuming-after-an-entry-id-beyond-64-bits",
    ),
]


@pytest.mark.parametrize("attack", AUTHENTICATION + POLICY + ENVELOPE + SIZE + PREVIEW_AND_INBOX)
async def test_a_refused_request_is_answered_with_its_code_and_changes_nothing(
    broker: RunningBroker, attack: Attack
) -> None:
    r = broker.redis()
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        accepted, request = attack.plan(World(broker, client))
        for prelude in accepted:
            assert (await client.send(prelude)).is_success
        before = snapshot(r)
        response = await client.send(request)

    assert response.status_code == attack.status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == attack.code
    assert isinstance(error["message"], str)
    assert error["message"]
    if attack.details is not ANY:
        assert error["details"] == attack.details
    assert snapshot(r) == before
    if not accepted:
        assert before["reports"] == []
        assert all(ids == [] for ids in before["inboxes"].values())


# --- the envelope refusal says nothing about why ----------------------------------------------


async def test_every_rejected_envelope_gets_the_same_opaque_message(broker: RunningBroker) -> None:
    bodies = [
        mutate(envelope(), "ciphertext"),
        mutate(envelope(), "header"),
        mutate(envelope(), "signature"),
        envelope(age=timedelta(minutes=10)),
        b"{not json",
    ]
    errors = []
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        w = World(broker, client)
        for body in bodies:
            response = await client.send(post_report(w, body))
            assert response.status_code == 400
            errors.append(response.json()["error"])

    assert {e["code"] for e in errors} == {"envelope_rejected"}
    assert len({e["message"] for e in errors}) == 1
    assert all(e["details"] is None for e in errors)
    message = errors[0]["message"].lower()
    for reason_word in ("cipher", "digest", "signature", "header", "kid", "old", "json"):
        assert reason_word not in message


# --- nobody reads or acks another partner's inbox --------------------------------------------


async def test_no_inbox_endpoint_has_a_parameter_that_names_a_partner(
    broker: RunningBroker,
) -> None:
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        spec = (await client.get(f"{broker.url}/openapi.json")).json()
    inbox_paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/v1/inbox")}
    assert set(inbox_paths) == {"/v1/inbox", "/v1/inbox/stream", "/v1/inbox/ack"}
    names = {
        param["name"].lower()
        for ops in inbox_paths.values()
        for op in ops.values()
        for param in op.get("parameters", [])
    }
    assert names == {"wait", "limit", "consumer", "last-event-id"}
    ack = spec["paths"]["/v1/inbox/ack"]["post"]["requestBody"]["content"]["application/json"]
    schema = ack["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == {"ids"}


async def test_a_partner_reading_its_inbox_only_ever_gets_its_own_entries(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        for_usa = [(await gbr.publish(PAYLOAD, USA_ONLY)).id for _ in range(2)]
        for_gbr = (await usa.publish(PAYLOAD, Label("SECRET", ["GBR"], "AMBER"))).id

    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        w = World(broker, client)
        # Whatever the query says, the inbox is the signer's.
        response = await client.send(
            w.signed("GET", "/v1/inbox?limit=100&consumer=USA&partner=USA&inbox=USA")
        )
    assert response.status_code == 200
    entries = response.json()["entries"]
    assert [e["report_id"] for e in entries] == [for_gbr]
    assert {e["originator"] for e in entries} == {"USA"}
    # USA's entries are untouched: unread, not pending, and still delivered to USA.
    assert r.xpending(inbox_key("USA"), GROUP)["pending"] == 0
    async with AsyncPartner(broker.url, me("USA")) as usa:
        assert [rep.id for rep in await usa.inbox(limit=100)] == for_usa


async def test_acking_another_partners_entry_ids_acks_nothing_in_its_inbox(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(PAYLOAD, USA_ONLY)
        usa_entry = receipt.recipients[0].position
        assert await gbr.ack([usa_entry]) == 0  # before USA has read it

        (report,) = await usa.inbox()  # USA still receives it
        assert (report.id, report.entry_id) == (receipt.id, usa_entry)

        assert await gbr.ack([usa_entry]) == 0  # while it is pending for USA
        (pending,) = r.xpending_range(inbox_key("USA"), GROUP, min="-", max="+", count=10)
        assert pending["message_id"].decode() == usa_entry
        assert await usa.ack([usa_entry]) == 1  # only USA's own ack counts


# --- routes that do not exist ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/v1/nothing-here", 404, "not_found", id="unknown-path"),
        pytest.param("GET", "/v1/inbox/USA", 404, "not_found", id="inbox-path-naming-a-partner"),
        pytest.param("GET", "/v2/inbox", 404, "not_found", id="unknown-api-version"),
        pytest.param("GET", "/", 404, "not_found", id="root"),
        pytest.param("GET", "/v1/reports", 405, "method_not_allowed", id="wrong-method"),
    ],
)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
async def test_unknown_routes_answer_a_json_error_body(
    broker: RunningBroker, method: str, path: str, status: int, code: str, signed: bool
) -> None:
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        w = World(broker, client)
        request = w.signed(method, path) if signed else w.unsigned(method, path)
        response = await client.send(request)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
