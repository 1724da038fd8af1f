"""Regenerate ``request-signatures.json``: ``python tests/vectors/generate_request_signatures.py``.

Fixed test vectors for RFC 9421 request signatures as the broker checks them
(``broker.signatures``): one accepted request at least, and at least one request for every way
the broker refuses one, each with the method, URL, header field lines, body and the expected
outcome; the registry and the clock (``now``) they are checked against are at the top of the
file.

Everything is fixed — keys derived from public seeds (TEST ONLY), ``now``, ``created``, nonces —
and Ed25519 is deterministic, so a run rewrites the same bytes;
``tests/unit/test_request_signature_vectors.py`` checks that, and runs every vector through
:func:`broker.signatures.verify_request`.

The signature bases are built here by hand from RFC 9421 §2.5, not with the library the SDK and
the broker use, so the vectors check that library against the RFC's text too.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64e, format_time

HERE: Final = Path(__file__).parent
OUT: Final = HERE / "request-signatures.json"
NOW: Final = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
NOW_S: Final = int(NOW.timestamp())
REPLAY_WINDOW_S: Final = 60
MAX_FUTURE_S: Final = 5  # broker.signatures.MAX_FUTURE_S; the test checks they agree
NOT_BEFORE: Final = "2026-01-01T00:00:00Z"
NOT_AFTER: Final = "2028-01-01T00:00:00Z"

BROKER: Final = "https://broker.example"
REPORTS_URL: Final = f"{BROKER}/v1/reports"
INBOX_URL: Final = f"{BROKER}:8443/v1/inbox?wait=30&limit=10"
RECALL_URL: Final = f"{BROKER}/v1/reports/019de2a5-6e40-7c3a-9f1e-2b4d6a8c0e13/recall"
BODY: Final = '{"label":{"classification":"RESTRICTED","releasable_to":["USA"],"tlp":"GREEN"}}'
OTHER_BODY: Final = BODY.replace("GREEN", "CLEAR")
NONCE: Final = "tX3vQ9kR2mB7nW4pZ8yL1c"

COVERED_BODY: Final = ('"@method"', '"@target-uri"', '"content-digest"')
COVERED_NO_BODY: Final = ('"@method"', '"@target-uri"')


def _seed(kid: str, size: int) -> bytes:
    # The same derivation as generate.py: GBR-sig-1 here is GBR-sig-1 of the envelope vectors.
    return hashlib.shake_256(f"tearline TEST ONLY key {kid}".encode()).digest(size)


def _key(
    kid: str, alg: str, *, revoked: bool = False, not_after: str = NOT_AFTER
) -> dict[str, Any]:
    use = "sig" if alg in crypto.SIGNATURE_ALGORITHMS else "enc"
    private = _seed(kid, crypto.PRIVATE_KEY_BYTES[alg])
    return {
        "kid": kid,
        "use": use,
        "alg": alg,
        "public": b64e(crypto.public_key_of(alg, private)),
        "not_before": NOT_BEFORE,
        "not_after": not_after,
        "revoked": revoked,
    }


def registry() -> list[dict[str, Any]]:
    """The partners the vectors are checked against, as in ``policies/partners.yaml``."""
    return [
        {
            "id": "GBR",
            "name": "United Kingdom",
            "status": "active",
            "keys": [
                _key("GBR-sig-1", crypto.ED25519),
                _key("GBR-sig-0", crypto.ED25519, revoked=True),
                _key("GBR-enc-1", crypto.X25519),
            ],
        },
        {
            "id": "USA",
            "name": "United States",
            "status": "active",
            "keys": [_key("USA-sig-1", crypto.ED25519)],
        },
        {
            "id": "EST",
            "name": "Estonia",
            "status": "active",
            "keys": [_key("EST-sig-1", crypto.ED25519, not_after="2026-04-01T00:00:00Z")],
        },
        {
            "id": "CAN",
            "name": "Canada",
            "status": "suspended",
            "keys": [_key("CAN-sig-1", crypto.ED25519)],
        },
    ]


SIGNING_KIDS: Final = ("GBR-sig-1", "GBR-sig-0", "USA-sig-1", "EST-sig-1", "CAN-sig-1")


def content_digest(body: str) -> str:
    """RFC 9530 ``Content-Digest``: standard base64 (with padding) between colons."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + ":"


@dataclass
class Case:
    """One request. Defaults make the accepted POST; each refusal changes one thing."""

    name: str
    description: str
    code: str | None  # None: accepted
    method: str = "POST"
    url: str = REPORTS_URL
    body: str = BODY
    components: Sequence[str] = COVERED_BODY
    created: int | None = NOW_S
    keyid: str | None = "GBR-sig-1"
    alg: str | None = "ed25519"
    nonce: str | None = NONCE
    extra_params: str = ""
    sign_with: str = "GBR-sig-1"
    signed_url: str | None = None  # the URL the client signed, when not the one the broker sees
    label: str = "sig1"
    digest_header: str | None = "auto"  # "auto": the body's; None: no Content-Digest field
    fields: list[tuple[str, str]] | None = None  # replaces the signature fields when given
    drop: tuple[str, ...] = ()  # signature field names to leave out
    notes: dict[str, Any] = field(default_factory=dict)

    def params(self) -> str:
        out = ""
        if self.created is not None:
            out += f";created={self.created}"
        if self.keyid is not None:
            out += f';keyid="{self.keyid}"'
        if self.alg is not None:
            out += f';alg="{self.alg}"'
        if self.nonce is not None:
            out += f';nonce="{self.nonce}"'
        return out + self.extra_params

    def signature_params(self) -> str:
        return "(" + " ".join(self.components) + ")" + self.params()

    def digest(self) -> str | None:
        if self.digest_header == "auto":
            return content_digest(self.body) if self.body else None
        return self.digest_header

    def signature_base(self) -> str:
        """RFC 9421 §2.5: one line per covered component, then ``@signature-params``."""
        digest = self.digest() or ""
        values = {
            '"@method"': self.method,
            '"@target-uri"': self.signed_url or self.url,
            '"content-digest"': digest,
            # a Dictionary member (RFC 9421 §2.1.2): the member's value, serialised
            '"content-digest";key="sha-256"': digest.partition("=")[2],
        }
        lines = [f"{c}: {values[c]}" for c in self.components]
        lines.append(f'"@signature-params": {self.signature_params()}')
        return "\n".join(lines)

    def signature(self) -> str:
        private = _seed(self.sign_with, 32)
        raw = crypto.SigningKey(crypto.ED25519, private).sign(self.signature_base().encode())
        return base64.b64encode(raw).decode()

    def headers(self) -> list[tuple[str, str]]:
        host = self.url.partition("://")[2].split("/")[0]
        out = [("Host", host)]
        if self.body:
            out.append(("Content-Type", "application/json"))
        digest = self.digest()
        if digest is not None:
            out.append(("Content-Digest", digest))
        if self.fields is not None:
            return out + self.fields
        signature_fields = [
            ("Signature-Input", f"{self.label}={self.signature_params()}"),
            ("Signature", f"{self.label}=:{self.signature()}:"),
        ]
        return out + [(n, v) for n, v in signature_fields if n not in self.drop]

    def to_json(self) -> dict[str, Any]:
        signed = self.fields is None and not self.drop
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "expect": (
                {"status": 401, "code": self.code}
                if self.code
                else {"status": 200, "partner": "GBR", "kid": "GBR-sig-1"}
            ),
            "method": self.method,
            "url": self.url,
            "headers": [list(h) for h in self.headers()],
            "body": self.body,
            "signature_base": self.signature_base() if signed else None,
            "signed_with": self.sign_with if signed else None,
        }
        return out | self.notes


def _two_signatures(case: Case, *, one_field: bool) -> list[tuple[str, str]]:
    first = ("sig1", case.signature_params(), case.signature())
    usa = Case("", "", None, keyid="USA-sig-1", sign_with="USA-sig-1")
    second = ("sig2", usa.signature_params(), usa.signature())
    if one_field:
        return [
            ("Signature-Input", f"{first[0]}={first[1]}, {second[0]}={second[1]}"),
            ("Signature", f"{first[0]}=:{first[2]}:, {second[0]}=:{second[2]}:"),
        ]
    return [
        ("Signature-Input", f"{first[0]}={first[1]}"),
        ("Signature", f"{first[0]}=:{first[2]}:"),
        ("Signature-Input", f"{second[0]}={second[1]}"),
        ("Signature", f"{second[0]}=:{second[2]}:"),
    ]


def cases() -> list[Case]:
    accepted = Case(
        "accepted-post",
        "A POST with a body, signed by GBR-sig-1 over @method, @target-uri and content-digest.",
        None,
    )
    get_kw: dict[str, Any] = {"method": "GET", "url": INBOX_URL, "body": ""}
    get_kw["components"] = COVERED_NO_BODY
    out = [
        accepted,
        Case(
            "accepted-get-with-query",
            "A GET without a body: no Content-Digest, and content-digest is not covered. The "
            "@target-uri is byte for byte the URL sent, port and query included.",
            None,
            **get_kw,
        ),
        Case(
            "accepted-post-without-body",
            "A POST with an empty body is a request without a body: no Content-Digest needed.",
            None,
            url=RECALL_URL,
            body="",
            components=COVERED_NO_BODY,
        ),
        Case(
            "accepted-created-at-window-start",
            f"created = now - {REPLAY_WINDOW_S}: the oldest signature the window accepts.",
            None,
            created=NOW_S - REPLAY_WINDOW_S,
        ),
        Case(
            "accepted-created-ahead",
            f"created = now + {MAX_FUTURE_S}: the furthest ahead a signature may be.",
            None,
            created=NOW_S + MAX_FUTURE_S,
        ),
        Case(
            "accepted-without-alg",
            'alg is optional; when present it must be "ed25519".',
            None,
            alg=None,
        ),
        Case(
            "signature_missing",
            "No Signature-Input or Signature field.",
            "signature_missing",
            drop=("Signature-Input", "Signature"),
        ),
        Case(
            "signature_missing-no-signature-input",
            "A Signature field without its Signature-Input.",
            "signature_missing",
            drop=("Signature-Input",),
        ),
        Case(
            "digest_missing",
            "A body but no Content-Digest field (checked before the signature).",
            "digest_missing",
            digest_header=None,
            components=COVERED_NO_BODY,
        ),
        Case(
            "signature_ambiguous",
            "Two signature labels (sig1 by GBR, sig2 by USA) in one field each.",
            "signature_ambiguous",
        ),
        Case(
            "signature_ambiguous-two-field-lines",
            "Two Signature-Input and two Signature field lines, which combine (RFC 9110 §5.3) "
            "into fields with two labels.",
            "signature_ambiguous",
        ),
        Case(
            "signature_invalid-labels-differ",
            "Signature-Input labels its signature sig1, Signature labels it sig2.",
            "signature_invalid",
        ),
        Case(
            "signature_invalid-not-a-byte-sequence",
            "The Signature member is a token, not a byte sequence (:base64:).",
            "signature_invalid",
        ),
        Case(
            "signature_invalid-wrong-key",
            "Signed with USA-sig-1's private key under keyid GBR-sig-1.",
            "signature_invalid",
            sign_with="USA-sig-1",
        ),
        Case(
            "signature_invalid-target-uri-query-order",
            "The client signed the query in another order than it sent it: @target-uri is "
            "compared byte for byte.",
            "signature_invalid",
            signed_url=INBOX_URL.replace("wait=30&limit=10", "limit=10&wait=30"),
            **get_kw,
        ),
        Case(
            "signature_invalid-host-case",
            "The client signed an upper-case host; the broker's @target-uri has the Host "
            "lower-cased.",
            "signature_invalid",
            signed_url=REPORTS_URL.replace("broker.example", "Broker.Example"),
        ),
        Case(
            "signature_invalid-unknown-parameter",
            "A signature parameter other than created, expires, keyid, alg, nonce and tag.",
            "signature_invalid",
            extra_params=';context="x"',
        ),
        Case(
            "params_missing-nonce",
            "No nonce parameter.",
            "params_missing",
            nonce=None,
        ),
        Case(
            "params_missing-created",
            "No created parameter.",
            "params_missing",
            created=None,
        ),
        Case(
            "params_invalid-nonce-too-short",
            "A nonce of 15 characters; 16 to 128 are required.",
            "params_invalid",
            nonce=NONCE[:15],
        ),
        Case(
            "params_invalid-nonce-alphabet",
            "A nonce with a character outside [A-Za-z0-9._~+/=-].",
            "params_invalid",
            nonce=NONCE[:10] + "!" + NONCE[11:],
        ),
        Case(
            "params_invalid-alg",
            'alg is not "ed25519".',
            "params_invalid",
            alg="rsa-pss-sha512",
        ),
        Case(
            "components_missing-content-digest",
            "A body, and a Content-Digest field, but the signature does not cover it.",
            "components_missing",
            components=COVERED_NO_BODY,
        ),
        Case(
            "components_missing-target-uri",
            "The signature does not cover @target-uri.",
            "components_missing",
            components=('"@method"', '"content-digest"'),
        ),
        Case(
            "components_missing-parameterised-digest",
            'The signature covers "content-digest";key="sha-256", a member, not the field.',
            "components_missing",
            components=('"@method"', '"@target-uri"', '"content-digest";key="sha-256"'),
        ),
        Case(
            "stale_signature",
            f"created = now - {REPLAY_WINDOW_S + 1}: one second older than the replay window.",
            "stale_signature",
            created=NOW_S - REPLAY_WINDOW_S - 1,
        ),
        Case(
            "stale_signature-expired",
            "An expires parameter at or before now.",
            "stale_signature",
            created=NOW_S - 10,
            extra_params=f";expires={NOW_S}",
        ),
        Case(
            "signature_from_future",
            f"created = now + {MAX_FUTURE_S + 1}: one second further ahead than allowed.",
            "signature_from_future",
            created=NOW_S + MAX_FUTURE_S + 1,
        ),
        Case(
            "unknown_key",
            "keyid names no key in the registry.",
            "unknown_key",
            keyid="ZZZ-sig-1",
        ),
        Case(
            "key_not_allowed",
            "keyid names an X25519 enc key; requests are signed with an Ed25519 sig key.",
            "key_not_allowed",
            keyid="GBR-enc-1",
        ),
        Case(
            "key_not_valid-revoked",
            "keyid names a revoked key.",
            "key_not_valid",
            keyid="GBR-sig-0",
            sign_with="GBR-sig-0",
        ),
        Case(
            "key_not_valid-expired",
            "keyid names a key whose not_after (2026-04-01) is before now.",
            "key_not_valid",
            keyid="EST-sig-1",
            sign_with="EST-sig-1",
        ),
        Case(
            "partner_suspended",
            "A good signature by a key of a suspended partner.",
            "partner_suspended",
            keyid="CAN-sig-1",
            sign_with="CAN-sig-1",
        ),
        Case(
            "digest_mismatch",
            "A good signature over a Content-Digest of another body.",
            "digest_mismatch",
            digest_header=content_digest(OTHER_BODY),
        ),
        Case(
            "order-digest_missing-before-signature_ambiguous",
            "A body without Content-Digest and two signatures: the digest field is looked for "
            "before the signatures are parsed.",
            "digest_missing",
            digest_header=None,
            components=COVERED_NO_BODY,
        ),
        Case(
            "order-stale_signature-before-unknown_key",
            "A stale created and an unknown keyid: parameters are checked before the key.",
            "stale_signature",
            created=NOW_S - REPLAY_WINDOW_S - 1,
            keyid="ZZZ-sig-1",
        ),
        Case(
            "order-partner_suspended-before-signature_invalid",
            "A suspended partner's key and a signature that does not verify: the key is "
            "checked before the signature.",
            "partner_suspended",
            keyid="CAN-sig-1",
            sign_with="USA-sig-1",
        ),
        Case(
            "order-signature_invalid-before-digest_mismatch",
            "A signature that does not verify and a Content-Digest of another body: the "
            "signature is checked before the digest.",
            "signature_invalid",
            sign_with="USA-sig-1",
            digest_header=content_digest(OTHER_BODY),
        ),
    ]
    by_name = {c.name: c for c in out}
    base = Case("", "", None)
    by_name["signature_ambiguous"].fields = _two_signatures(base, one_field=True)
    by_name["signature_ambiguous-two-field-lines"].fields = _two_signatures(base, one_field=False)
    by_name["order-digest_missing-before-signature_ambiguous"].fields = _two_signatures(
        Case("", "", None, components=COVERED_NO_BODY, digest_header=None), one_field=True
    )
    by_name["signature_invalid-labels-differ"].fields = [
        ("Signature-Input", f"sig1={base.signature_params()}"),
        ("Signature", f"sig2=:{base.signature()}:"),
    ]
    by_name["signature_invalid-not-a-byte-sequence"].fields = [
        ("Signature-Input", f"sig1={base.signature_params()}"),
        ("Signature", "sig1=deadbeef"),
    ]
    return out


def build() -> dict[str, Any]:
    return {
        "description": (
            "Tearline RFC 9421 request signatures as the broker checks them (broker.signatures). "
            "Each vector is checked against `registry` at `now` with `replay_window_s`; "
            "`headers` lists the field lines in order (a name may repeat). TEST ONLY keys: "
            "never use them."
        ),
        "now": NOW_S,
        "now_rfc3339": format_time(NOW),
        "replay_window_s": REPLAY_WINDOW_S,
        "max_future_s": MAX_FUTURE_S,
        "registry": registry(),
        "private_keys": {kid: b64e(_seed(kid, 32)) for kid in SIGNING_KIDS},
        "vectors": [c.to_json() for c in cases()],
        "stateful": [
            {
                "name": "replayed_request",
                "description": (
                    "The same signed request twice within the replay window: the first is "
                    "accepted and its nonce remembered (per partner, for twice the window); the "
                    "second is refused. The nonce, not the signature, is what is remembered: "
                    "a request signed afresh with the same nonce is refused too."
                ),
                "requests": ["accepted-post", "accepted-post"],
                "expect": [
                    {"status": 200, "partner": "GBR", "kid": "GBR-sig-1"},
                    {"status": 401, "code": "replayed_request"},
                ],
            }
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> None:
    OUT.write_text(render())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
