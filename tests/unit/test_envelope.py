"""The sealed envelope, wire format v1 (DESIGN §5): round trips, and every tampering refused.

Real keys (``tests.factories.identity``), real crypto, no mocks. Tampered envelopes are built by
hand: where a case must prove that the *parser* (not the signature) refuses, the header is
re-signed with the originator's real keys, so the signature is valid and only the bytes are bad.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest

from tearline.clients.errors import EnvelopeError, IdentityError, InputError
from tearline.clients.protocol import envelope
from tearline.clients.protocol.encoding import b64d, b64e, compact_json, is_uuid7, new_uuid7
from tearline.clients.protocol.identity import Identity, KeyRecord, Partner, Registry, Suite
from tearline.clients.protocol.label import Label, label_digest
from tests import factories
from tests.factories import NOW, SCHEME, label, partner

Json = dict[str, Any]

ORIGINATOR = "GBR"
RECIPIENTS = ("USA", "CAN")
ATTACKER = "MAL"  # a registered partner that turns hostile
OUTSIDER = "NZL"  # registered, entitled to nothing here
PARTIES = (ORIGINATOR, *RECIPIENTS, ATTACKER, OUTSIDER)
SUITES: tuple[Suite, ...] = ("classic", "pq-hybrid")
# 100 bytes: the ciphertext (12 + 100 + 16 = 128 bytes) then has spare bits and needs padding.
PAYLOAD = b'{"type":"bundle","id":"bundle--5d2f","objects":[]}'.ljust(100, b" ")
LABEL = label("RESTRICTED", RECIPIENTS, "AMBER", topics=["ransomware"])
OTHER_LABEL = label("CONFIDENTIAL", RECIPIENTS, "GREEN", topics=["apt"], caveats=["CYBER-OPS"])
OPAQUE = str(EnvelopeError("any reason"))
# Every key of a factories identity is valid from NOW - 30 days for 730 days.
KEYS_NOT_BEFORE = NOW - timedelta(days=30)
KEYS_NOT_AFTER = KEYS_NOT_BEFORE + timedelta(days=730)


# --- builders -------------------------------------------------------------------------------


def identity(pid: str, suite: Suite = "pq-hybrid") -> Identity:
    # Always pass the suite: factories.identity is cached on its arguments as given, so
    # identity("USA") and identity("USA", "pq-hybrid") would be two different key sets.
    return factories.identity(pid, suite)


@cache
def _registry() -> Registry:
    """Every party with pq-hybrid identities (which also hold the classic keys)."""
    return Registry(partner(p) for p in PARTIES)


def _registry_with(pid: str, change: Callable[[Json], None]) -> Registry:
    """The same registry, with ``change`` applied to each public key entry of ``pid``."""
    partners = []
    for p in PARTIES:
        entry = identity(p).public_entry()
        if p == pid:
            for key in entry["keys"]:
                change(key)
        partners.append(Partner.from_dict(entry))
    return Registry(partners)


def _revoke(alg: str) -> Callable[[], Registry]:
    def build() -> Registry:
        def change(key: Json) -> None:
            if key["alg"] == alg:
                key["revoked"] = True

        return _registry_with(ORIGINATOR, change)

    return build


def _enc_key(reg: Registry, pid: str, suite: str, now: datetime = NOW) -> KeyRecord:
    entry = reg.get(pid)
    assert entry is not None
    key = entry.enc_key(suite, now)
    assert key is not None
    return key


def _seal(
    suite: Suite = "classic",
    recipients: Iterable[str] = RECIPIENTS,
    lab: Label = LABEL,
    *,
    payload: bytes = PAYLOAD,
    now: datetime = NOW,
) -> bytes:
    reg = _registry()
    keys = [(p, _enc_key(reg, p, suite)) for p in recipients]
    return envelope.seal(payload, lab, keys, identity(ORIGINATOR), now=now, suite=suite)


@cache
def _base(suite: Suite = "classic") -> bytes:
    """GBR's report to USA and CAN."""
    return _seal(suite)


@cache
def _other(suite: Suite = "classic") -> bytes:
    """Another report from GBR to USA and CAN, under another label and id."""
    return _seal(suite, lab=OTHER_LABEL, payload=b"another report".ljust(100, b"."))


@cache
def _small() -> bytes:
    """A small classic envelope for one recipient: the one whose every JSON byte is flipped."""
    return _seal("classic", ["USA"], label("RESTRICTED", ["USA"], "AMBER"), payload=b"hi")


def _outer(env: bytes) -> Json:
    outer: Json = json.loads(env)
    return outer


def _header_bytes(env: bytes) -> bytes:
    return b64d(_outer(env)["header"])


def _header(env: bytes) -> Json:
    header: Json = json.loads(_header_bytes(env))
    return header


def _suite_of(env: bytes) -> str:
    suite: str = _header(env)["suite"]
    return suite


def _signatures(header_bytes: bytes, signer: str, suite: str) -> list[Json]:
    """Real signatures by ``signer`` over ``header_bytes``, as seal makes them."""
    to_sign = envelope.pae(header_bytes)
    return [
        {"kid": kid, "sig": b64e(key.sign(to_sign))}
        for kid, key in identity(signer).signing_keys(suite, NOW)
    ]


def _with_outer(env: bytes, edit: Callable[[Json], object]) -> bytes:
    outer = _outer(env)
    edit(outer)
    return compact_json(outer)


def _resign(
    env: bytes, header_bytes: bytes, *, signer: str = ORIGINATOR, suite: str | None = None
) -> bytes:
    """``env`` with ``header_bytes`` as its header, validly signed by ``signer``."""
    outer = _outer(env)
    outer["header"] = b64e(header_bytes)
    outer["signatures"] = _signatures(header_bytes, signer, suite or _suite_of(env))
    return compact_json(outer)


def _edit_header(
    env: bytes,
    edit: Callable[[Json], object],
    *,
    signer: str | None = ORIGINATOR,
    suite: str | None = None,
) -> bytes:
    """Edit the decoded header; re-sign it as ``signer`` (``None``: keep the old signatures)."""
    header = _header(env)
    edit(header)
    header_bytes = compact_json(header)
    if signer is None:
        return _with_outer(env, lambda o: o.update(header=b64e(header_bytes)))
    if suite is None:  # sign for the suite the edited header declares, when it is a real one
        suite = header["suite"] if header.get("suite") in SUITES else _suite_of(env)
    return _resign(env, header_bytes, signer=signer, suite=suite)


def _sub(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data.count(old))
    return data.replace(old, new)


def _resign_raw(env: bytes, old: bytes, new: bytes) -> bytes:
    """Replace ``old`` by ``new`` in the header bytes and re-sign them as the originator."""
    return _resign(env, _sub(_header_bytes(env), old, new))


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def _spare_bits_set(text: str) -> str:
    """The same bytes under a non-canonical encoding: a spare bit of the last character set.

    Checks that a lenient decoder would still read the same bytes, so only strictness refuses.
    """
    data = b64d(text)
    assert len(data) % 3 != 0, "no spare bits to set"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bent = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    assert bent != text
    assert base64.urlsafe_b64decode(bent + "=" * (-len(bent) % 4)) == data
    return bent


def _padded(text: str) -> str:
    assert len(text) % 4, "already a multiple of 4 characters"
    return text + "=" * (-len(text) % 4)


def _verify(
    env: bytes,
    reg: Registry | None = None,
    *,
    now: datetime = NOW,
    max_age: timedelta | None = None,
) -> envelope.VerifiedEnvelope:
    return envelope.verify(env, reg or _registry(), SCHEME, now=now, max_age=max_age)


def _open(
    env: bytes | envelope.VerifiedEnvelope,
    pid: str,
    reg: Registry | None = None,
    *,
    now: datetime = NOW,
    me: Identity | None = None,
) -> envelope.OpenedReport:
    return envelope.open(env, me or identity(pid), reg or _registry(), SCHEME, now=now)


def _refusal(build: Callable[[], object]) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        build()
    return caught.value


def _verify_reason(env: bytes, reg: Registry | None = None) -> str | None:
    """The reason ``verify`` refuses ``env``, or None when it accepts it."""
    try:
        _verify(env, reg)
    except EnvelopeError as exc:
        return exc.reason
    return None


def _alg(reg: Registry, kid: str) -> str:
    owner = reg.key(kid)
    assert owner is not None
    return owner.record.alg


def _with_slot(
    verified: envelope.VerifiedEnvelope, index: int, wrapped_key: bytes
) -> envelope.VerifiedEnvelope:
    """A forged VerifiedEnvelope: lets ``open`` be tested against the crypto alone."""
    slots = list(verified.header.recipients)
    slots[index] = replace(slots[index], wrapped_key=wrapped_key)
    return replace(verified, header=replace(verified.header, recipients=tuple(slots)))


# --- round trips ----------------------------------------------------------------------------


@cache
def _crowd_registry(suite: Suite) -> Registry:
    return Registry(partner(p, suite) for p in (ORIGINATOR, OUTSIDER, *_crowd(50)))


def _crowd(n: int) -> list[str]:
    return [f"R{i:02d}" for i in range(1, n + 1)]


@pytest.mark.parametrize("count", [1, 2, 5, 20, 50])
@pytest.mark.parametrize("suite", SUITES)
def test_every_recipient_opens_the_exact_report(suite: Suite, count: int) -> None:
    reg = _crowd_registry(suite)
    members = _crowd(count)[::-1]  # not sorted: the slots must keep the sender's order
    lab = label("SECRET", members, "AMBER+STRICT", topics=["apt", "maritime"], caveats=["NUC"])
    envelope_id = new_uuid7(NOW)
    payload = bytes(range(256)) * 3 + b"\x00\xff not utf-8 \xc3"
    keys = [(p, _enc_key(reg, p, suite)) for p in members]
    content_type = "application/octet-stream"
    sealed = envelope.seal(
        payload,
        lab,
        keys,
        identity(ORIGINATOR, suite),
        now=NOW,
        suite=suite,
        content_type=content_type,
        envelope_id=envelope_id,
    )

    verified = envelope.verify(sealed, reg, SCHEME, now=NOW)
    header = verified.header
    assert header.recipient_ids == members
    assert [slot.kid for slot in header.recipients] == [key.kid for _, key in keys]
    assert (header.id, header.originator, header.suite) == (envelope_id, ORIGINATOR, suite)
    assert header.created == NOW
    assert header.label == lab
    assert header.label_digest == label_digest(lab.to_dict())
    signer_algs = {"classic": ["Ed25519"], "pq-hybrid": ["Ed25519", "ML-DSA-65"]}[suite]
    assert [_alg(reg, kid) for kid in verified.signer_kids] == signer_algs
    assert verified.header_bytes == _header_bytes(sealed)

    for pid in members:
        opened = envelope.open(sealed, identity(pid, suite), reg, SCHEME, now=NOW)
        assert opened.payload == payload
        assert opened.label == lab
        assert opened.originator == ORIGINATOR
        assert opened.id == envelope_id
        assert opened.content_type == content_type
        assert opened.created == NOW
        assert envelope.open(verified, identity(pid, suite), reg, SCHEME, now=NOW) == opened


@pytest.mark.parametrize("size", [0, 1, 65_536])
def test_payloads_of_any_size_round_trip(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    sealed = _seal("classic", payload=payload)
    assert _open(sealed, "USA").payload == payload


def test_seal_defaults_to_a_stix_report_with_a_fresh_uuid7_id() -> None:
    header = _header(_base())
    assert header["content_type"] == envelope.STIX_CONTENT_TYPE
    assert is_uuid7(header["id"])
    assert uuid.UUID(header["id"]).int >> 80 == int(NOW.timestamp() * 1000)
    assert header["v"] == 1


def test_sealing_twice_uses_fresh_keys_and_ids() -> None:
    first, second = _outer(_seal()), _outer(_seal())
    assert first["ciphertext"] != second["ciphertext"]
    h1, h2 = _header(compact_json(first)), _header(compact_json(second))
    assert h1["id"] != h2["id"]
    assert h1["recipients"][0]["wrapped_key"] != h2["recipients"][0]["wrapped_key"]


def test_a_header_re_signed_unchanged_by_the_originator_still_opens() -> None:
    # The control for every re-signed case below: the tooling itself makes valid envelopes.
    for suite in SUITES:
        env = _base(suite)
        assert _header_bytes(env) == compact_json(_header(env))
        again = _resign(env, _header_bytes(env))
        assert _open(again, "USA").payload == PAYLOAD
    # Signed bytes are not re-serialised: trailing JSON whitespace, once signed, is fine.
    assert _open(_header_with_spare_bits(), "CAN").payload == PAYLOAD


def test_label_digest_ignores_key_order_so_a_reordered_label_still_opens() -> None:
    reordered = _edit_header(_base(), lambda h: h.update(label=dict(reversed(h["label"].items()))))
    assert _header_bytes(reordered) != _header_bytes(_base())
    assert _open(reordered, "CAN").label == LABEL


# --- tampering: verify refuses, and so does open for every recipient -------------------------


@dataclass(frozen=True)
class Refused:
    name: str
    build: Callable[[], bytes]
    reason: str  # a fragment of EnvelopeError.reason: the refusal happened for this cause
    now: datetime = NOW
    max_age: timedelta | None = None
    registry: Callable[[], Registry] = _registry
    recipients_cannot_open: bool = True


def _mal_ed25519_under_gbr_kid() -> bytes:
    env = _base()
    (entry,) = _signatures(_header_bytes(env), ATTACKER, "classic")
    return _with_outer(env, lambda o: o.update(signatures=[{**entry, "kid": "GBR-sig-1"}]))


def _swap_signature_kid(
    kid: object, index: int = 0, suite: Suite = "classic"
) -> Callable[[], bytes]:
    def build() -> bytes:
        def edit(outer: Json) -> None:
            outer["signatures"][index]["kid"] = kid

        return _with_outer(_base(suite), edit)

    return build


def _mixed_signers() -> bytes:
    env = _base("pq-hybrid")
    ours = _signatures(_header_bytes(env), ORIGINATOR, "pq-hybrid")
    theirs = _signatures(_header_bytes(env), ATTACKER, "pq-hybrid")
    return _with_outer(env, lambda o: o.update(signatures=[ours[0], theirs[1]]))


def _signature_list(pick: Callable[[list[Json]], object], suite: Suite = "classic") -> bytes:
    return _with_outer(_base(suite), lambda o: o.update(signatures=pick(o["signatures"])))


def _classic_with_both_signatures() -> bytes:
    env = _base("classic")
    return _resign(env, _header_bytes(env), suite="pq-hybrid")


def _swap_field(field: str, resign: bool) -> Callable[[], bytes]:
    """Envelope A with field ``field`` of envelope B's header (a re-assembled header)."""

    def build() -> bytes:
        theirs = _header(_other())[field]
        return _edit_header(
            _base(), lambda h: h.update({field: theirs}), signer=ORIGINATOR if resign else None
        )

    return build


def _swap_outer(field: str) -> Callable[[], bytes]:
    def build() -> bytes:
        theirs = _outer(_other())[field]
        return _with_outer(_base(), lambda o: o.update({field: theirs}))

    return build


def _append_to_outer(text: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        env = _base()
        assert env.endswith(b"}")
        return env[:-1] + text + b"}"

    return build


def _duplicate_ciphertext_key() -> bytes:
    ciphertext = _outer(_base())["ciphertext"]
    return _append_to_outer(b',"ciphertext":"' + ciphertext.encode() + b'"')()


def _duplicate_label_in_header() -> bytes:
    env = _base()
    hb = _header_bytes(env)
    return _resign(env, hb[:-1] + b',"label":' + compact_json(OTHER_LABEL.to_dict()) + b"}")


def _outer_field(field: str, value: Callable[[str], object]) -> Callable[[], bytes]:
    def build() -> bytes:
        return _with_outer(_base(), lambda o: o.update({field: value(o[field])}))

    return build


def _signature_field(value: Callable[[str], str]) -> Callable[[], bytes]:
    def build() -> bytes:
        def edit(outer: Json) -> None:
            outer["signatures"][0]["sig"] = value(outer["signatures"][0]["sig"])

        return _with_outer(_base(), edit)

    return build


def _header_with_spare_bits() -> bytes:
    """The base envelope re-signed with trailing JSON whitespace, so its base64 has spare bits."""
    env = _base()
    hb = _header_bytes(env)
    while len(hb) % 3 == 0:
        hb += b" "
    return _resign(env, hb)


def _header_text(value: Callable[[str], str]) -> Callable[[], bytes]:
    def build() -> bytes:
        return _with_outer(_header_with_spare_bits(), lambda o: o.update(header=value(o["header"])))

    return build


def _slot(index: int, **changes: object) -> Callable[[], bytes]:
    def build() -> bytes:
        def edit(header: Json) -> None:
            header["recipients"][index].update(changes)

        return _edit_header(_base(), edit)

    return build


def _wrapped_key(value: Callable[[str], str]) -> Callable[[], bytes]:
    def build() -> bytes:
        def edit(header: Json) -> None:
            slot = header["recipients"][0]
            slot["wrapped_key"] = value(slot["wrapped_key"])

        return _edit_header(_base(), edit)

    return build


def _header_field(**changes: object) -> Callable[[], bytes]:
    return lambda: _edit_header(_base(), lambda h: h.update(changes))


def _label_field(**changes: object) -> Callable[[], bytes]:
    return lambda: _edit_header(_base(), lambda h: h["label"].update(changes))


def _raw(old: bytes, new: bytes) -> Callable[[], bytes]:
    return lambda: _resign_raw(_base(), old, new)


def _header_bytes_replaced(header_bytes: bytes) -> Callable[[], bytes]:
    return lambda: _resign(_base(), header_bytes)


def _sealed_at(moment: datetime) -> Callable[[], bytes]:
    return lambda: _seal(now=moment)


def _without(field: str) -> Callable[[], bytes]:
    return lambda: _edit_header(_base(), lambda h: h.pop(field))


REFUSED = [
    # signatures: who signed, with which key, how many
    Refused(
        "other-partners-key-under-originators-kid", _mal_ed25519_under_gbr_kid, "does not verify"
    ),
    Refused("kid-of-another-partner", _swap_signature_kid("USA-sig-1"), "does not verify"),
    Refused(
        "partner-signs-a-header-naming-another-originator",
        lambda: _resign(_base(), _header_bytes(_base()), signer=ATTACKER),
        "originator is not the signer",
    ),
    Refused("signatures-from-two-partners", _mixed_signers, "more than one partner"),
    Refused("encryption-kid-as-signing-kid", _swap_signature_kid("GBR-enc-1"), "signing key"),
    Refused("unknown-kid", _swap_signature_kid("GBR-sig-9"), "unknown kid"),
    Refused("kid-not-a-string", _swap_signature_kid(7), "unknown kid"),
    Refused("no-signature", lambda: _signature_list(lambda s: []), "signatures"),
    Refused(
        "three-signatures",
        lambda: _signature_list(lambda s: [*s, s[0]], "pq-hybrid"),
        "signatures",
    ),
    Refused("signatures-not-a-list", lambda: _signature_list(lambda s: s[0]), "signatures"),
    Refused("same-signature-twice", lambda: _signature_list(lambda s: [s[0], s[0]]), "two"),
    Refused(
        "suite-downgrade-ml-dsa-signature-removed",
        lambda: _signature_list(lambda s: s[:1], "pq-hybrid"),
        "do not match",
    ),
    Refused(
        "suite-downgrade-ed25519-signature-removed",
        lambda: _signature_list(lambda s: s[1:], "pq-hybrid"),
        "do not match",
    ),
    Refused("classic-header-with-two-signatures", _classic_with_both_signatures, "do not match"),
    Refused(
        "pq-hybrid-header-re-signed-as-classic",
        lambda: _edit_header(_base("pq-hybrid"), lambda h: h.update(suite="classic")),
        "X25519",
    ),
    Refused("revoked-ed25519-key", _base, "revoked or not valid", registry=_revoke("Ed25519")),
    Refused(
        "revoked-ml-dsa-key",
        lambda: _base("pq-hybrid"),
        "revoked or not valid",
        registry=_revoke("ML-DSA-65"),
    ),
    Refused("signing-key-expired", _base, "not valid now", now=KEYS_NOT_AFTER),
    Refused(
        "signing-key-not-yet-valid",
        _base,
        "not valid now",
        now=KEYS_NOT_BEFORE - timedelta(seconds=1),
    ),
    # re-assembled from two envelopes, signatures left as they were
    Refused("labels-swapped-between-envelopes", _swap_field("label", False), "does not verify"),
    Refused("ids-swapped-between-envelopes", _swap_field("id", False), "does not verify"),
    Refused(
        "recipient-slots-swapped-between-envelopes",
        _swap_field("recipients", False),
        "does not verify",
    ),
    Refused("header-of-another-envelope", _swap_outer("header"), "does not verify"),
    Refused("signatures-of-another-envelope", _swap_outer("signatures"), "does not verify"),
    Refused("ciphertext-of-another-envelope", _swap_outer("ciphertext"), "digest"),
    # the strict parser, proved on validly signed bytes
    Refused("duplicate-key-in-envelope", _duplicate_ciphertext_key, "duplicate key"),
    Refused("duplicate-key-in-header", _duplicate_label_in_header, "duplicate key"),
    Refused(
        "duplicate-key-in-label", _raw(b'"label":{', b'"label":{"tlp":"CLEAR",'), "duplicate key"
    ),
    Refused(
        "duplicate-key-in-recipient-slot",
        _raw(b'{"partner":"USA"', b'{"partner":"NZL","partner":"USA"'),
        "duplicate key",
    ),
    Refused(
        "duplicate-key-in-signature-entry",
        lambda: _base().replace(b'[{"kid":', b'[{"kid":"MAL-sig-1","kid":'),
        "duplicate key",
    ),
    Refused("unknown-field-in-envelope", _append_to_outer(b',"note":"x"'), "fields"),
    Refused(
        "unknown-field-in-signature",
        lambda: _with_outer(_base(), lambda o: o["signatures"][0].update(alg="Ed25519")),
        "fields",
    ),
    Refused("unknown-field-in-header", _header_field(route_to="USA"), "fields"),
    Refused("unknown-field-in-recipient-slot", _slot(0, note="x"), "fields"),
    Refused("missing-field-in-header", _without("content_type"), "fields"),
    Refused("nan-in-header", _raw(b'"v":1', b'"v":NaN'), "non-finite"),
    Refused("infinity-in-header", _raw(b'"v":1', b'"v":Infinity'), "non-finite"),
    Refused("minus-infinity-in-header", _raw(b'"v":1', b'"v":-Infinity'), "non-finite"),
    Refused("version-true", _header_field(v=True), "header.v"),
    Refused("version-float", _header_field(v=1.0), "header.v"),
    Refused("version-2", _header_field(v=2), "header.v"),
    Refused("version-string", _header_field(v="1"), "header.v"),
    Refused("id-uuid4", _header_field(id=str(uuid.uuid4())), "header.id"),
    Refused("id-uppercase", lambda: _edit_header(_base(), _upper_id), "header.id"),
    Refused("id-without-hyphens", lambda: _edit_header(_base(), _hex_id), "header.id"),
    Refused("id-not-a-string", _header_field(id=7), "header.id"),
    # base64url: one encoding per value
    Refused("header-base64-spare-bits", _header_text(_spare_bits_set), "non-canonical"),
    Refused("header-base64-padded", _header_text(_padded), "base64"),
    Refused("signature-base64-spare-bits", _signature_field(_spare_bits_set), "non-canonical"),
    Refused("signature-base64-padded", _signature_field(_padded), "base64"),
    Refused(
        "ciphertext-base64-spare-bits", _outer_field("ciphertext", _spare_bits_set), "canonical"
    ),
    Refused("ciphertext-base64-padded", _outer_field("ciphertext", _padded), "base64"),
    Refused("wrapped-key-base64-spare-bits", _wrapped_key(_spare_bits_set), "non-canonical"),
    Refused("wrapped-key-base64-padded", _wrapped_key(_padded), "base64"),
    Refused(
        "ciphertext-digest-base64-spare-bits",
        lambda: _edit_header(
            _base(), lambda h: h.update(ciphertext_sha256=_spare_bits_set(h["ciphertext_sha256"]))
        ),
        "non-canonical",
    ),
    Refused("header-not-a-string", _outer_field("header", lambda _: 1), "base64"),
    # recipient slots
    Refused("slot-kid-of-another-partner", _slot(0, kid="CAN-enc-1"), "is not a key of"),
    Refused("slot-kid-unknown", _slot(0, kid="USA-enc-9"), "is not a key of"),
    Refused("slot-kid-of-a-signing-key", _slot(0, kid="USA-sig-1"), "X25519"),
    Refused(
        "same-partner-in-two-slots",
        lambda: _edit_header(_base(), lambda h: h["recipients"].__setitem__(1, h["recipients"][0])),
        "duplicate",
    ),
    Refused("slot-partner-not-a-string", _slot(0, partner=["USA"]), "recipients[0]"),
    Refused("slot-wrapped-key-truncated", _wrapped_key(lambda t: b64e(b64d(t)[:-1])), "length"),
    Refused("no-recipient-slots", _header_field(recipients=[]), "recipients"),
    # time
    Refused(
        "created-in-the-future-beyond-skew",
        _sealed_at(NOW + timedelta(minutes=5, seconds=1)),
        "future",
    ),
    Refused(
        "created-older-than-max-age",
        _sealed_at(NOW - timedelta(hours=1, seconds=1)),
        "too old",
        max_age=timedelta(hours=1),
        recipients_cannot_open=False,  # open() takes no max_age: only verify bounds the age
    ),
    Refused("created-naive-time", _header_field(created="2026-06-01T12:00:00"), "RFC 3339"),
    # other header fields
    Refused("originator-not-the-signer", _header_field(originator="USA"), "originator"),
    Refused("unknown-suite", _header_field(suite="pq-only"), "suite"),
    Refused("content-type-empty", _header_field(content_type=""), "content_type"),
    Refused("content-type-control-char", _header_field(content_type="text/plain\n"), "content"),
    Refused("label-unknown-level", _label_field(classification="TOP-SECRET"), "classification"),
    Refused(
        "label-tlp-red-with-a-group",
        _label_field(releasable_to=["FVEY"], tlp="RED"),
        "releasable_to",
    ),
    Refused("label-of-another-scheme", _label_field(policy="OTHER-SCHEME"), "policy"),
    Refused("label-unknown-field", _label_field(colour="red"), "unknown field"),
    Refused("label-unknown-caveat", _label_field(caveats=["EYES-ONLY"]), "caveat"),
    Refused("header-not-an-object", _header_bytes_replaced(b"[1,2]"), "not an object"),
    Refused("header-invalid-utf8", _header_bytes_replaced(b'{"v":"\xff"}'), "JSON"),
    Refused(
        "header-trailing-data", lambda: _resign(_base(), _header_bytes(_base()) + b"{}"), "JSON"
    ),
    # the outer object and the ciphertext
    Refused("envelope-empty", lambda: b"", "JSON"),
    Refused("envelope-not-json", lambda: b"header=abc", "JSON"),
    Refused("envelope-not-an-object", lambda: b"[]", "not an object"),
    Refused(
        "ciphertext-truncated",
        _outer_field("ciphertext", lambda t: b64e(b64d(t)[:-1])),
        "digest",
    ),
    Refused(
        "ciphertext-extended",
        _outer_field("ciphertext", lambda t: b64e(b64d(t) + b"\x00")),
        "digest",
    ),
]


def _upper_id(header: Json) -> None:
    header["id"] = header["id"].upper()


def _hex_id(header: Json) -> None:
    header["id"] = uuid.UUID(header["id"]).hex


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in REFUSED])
def test_tampered_envelope_is_refused(case: Refused) -> None:
    env = case.build()
    reg = case.registry()
    exc = _refusal(lambda: envelope.verify(env, reg, SCHEME, now=case.now, max_age=case.max_age))
    assert case.reason in exc.reason
    assert str(exc) == OPAQUE
    if case.recipients_cannot_open:
        for pid in RECIPIENTS:
            refused = _refusal(lambda: _open(env, pid, reg, now=case.now))  # noqa: B023
            assert refused.reason == exc.reason


def test_the_refusal_table_covers_distinct_cases() -> None:
    names = [case.name for case in REFUSED]
    assert len(names) == len(set(names))


# --- signed by a partner, but the crypto binding makes open fail -----------------------------


def _partner_re_signs(lab: Label | None) -> Callable[[], bytes]:
    """MAL re-signs GBR's ciphertext and wrapped keys as its own report (optionally relabelled)."""

    def build() -> bytes:
        def edit(header: Json) -> None:
            header["originator"] = ATTACKER
            if lab is not None:
                header["label"] = lab.to_dict()

        return _edit_header(_base(), edit, signer=ATTACKER)

    return build


def _another_ciphertext() -> bytes:
    """The originator re-signs its header over the ciphertext of another of its envelopes."""
    theirs = _outer(_other())["ciphertext"]
    digest = _header(_other())["ciphertext_sha256"]
    env = _edit_header(_base(), lambda h: h.update(ciphertext_sha256=digest))
    return _with_outer(env, lambda o: o.update(ciphertext=theirs))


OPEN_REFUSED = [
    pytest.param(_partner_re_signs(None), ATTACKER, id="partner-re-signs-under-its-own-name"),
    pytest.param(
        _partner_re_signs(OTHER_LABEL), ATTACKER, id="partner-re-signs-with-a-changed-label"
    ),
    pytest.param(_swap_field("label", True), ORIGINATOR, id="label-swapped-and-re-signed"),
    pytest.param(_swap_field("id", True), ORIGINATOR, id="id-swapped-and-re-signed"),
    pytest.param(
        _swap_field("recipients", True), ORIGINATOR, id="recipient-slots-swapped-and-re-signed"
    ),
    pytest.param(_another_ciphertext, ORIGINATOR, id="ciphertext-swapped-and-re-signed"),
    pytest.param(
        _label_field(classification="UNCLASSIFIED", tlp="CLEAR"),
        ORIGINATOR,
        id="label-downgraded-and-re-signed",
    ),
]


@pytest.mark.parametrize(("build", "signer"), OPEN_REFUSED)
def test_signed_envelope_moved_under_another_name_label_or_id_cannot_be_opened(
    build: Callable[[], bytes], signer: str
) -> None:
    env = build()
    verified = _verify(env)  # it is validly signed: only the AAD / HPKE info binding catches it
    assert verified.header.originator == signer
    for pid in RECIPIENTS:
        exc = _refusal(lambda: _open(env, pid))  # noqa: B023
        assert exc.reason.startswith("CryptoFailure")
        assert str(exc) == OPAQUE


# --- every byte ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_byte_of_the_header_is_refused_by_the_signature(suite: Suite) -> None:
    env = _base(suite)
    outer = _outer(env)
    header_bytes = _header_bytes(env)
    reasons = []
    for i in range(len(header_bytes)):
        outer["header"] = b64e(_flip(header_bytes, i))
        reasons.append(_verify_reason(compact_json(outer)))
    # Every flip, even those that break the JSON, is caught by the signature: it comes first.
    assert set(reasons) == {"CryptoFailure: Ed25519 signature does not verify"}
    assert _open(env, "USA").payload == PAYLOAD  # and the untouched envelope is fine


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_byte_of_any_signature_is_refused(suite: Suite) -> None:
    env = _base(suite)
    outer = _outer(env)
    for index, entry in enumerate(_outer(env)["signatures"]):
        sig = b64d(entry["sig"])
        alg = _alg(_registry(), entry["kid"])
        reasons = set()
        for i in range(len(sig)):
            outer["signatures"] = [dict(e) for e in _outer(env)["signatures"]]
            outer["signatures"][index]["sig"] = b64e(_flip(sig, i))
            reasons.add(_verify_reason(compact_json(outer)))
        assert reasons == {f"CryptoFailure: {alg} signature does not verify"}


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_byte_of_the_ciphertext_is_refused(suite: Suite) -> None:
    env = _base(suite)
    outer = _outer(env)
    ciphertext = b64d(outer["ciphertext"])
    verified = _verify(env)
    for i in range(len(ciphertext)):
        flipped = _flip(ciphertext, i)
        outer["ciphertext"] = b64e(flipped)
        assert _verify_reason(compact_json(outer)) == "ciphertext does not match its digest"
        # Past the digest (a forged VerifiedEnvelope), the AEAD tag still refuses it.
        forged = replace(verified, ciphertext=flipped)
        assert _refusal(lambda: _open(forged, "USA")).reason.startswith("CryptoFailure")  # noqa: B023


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_byte_of_any_wrapped_key_is_refused(suite: Suite) -> None:
    env = _base(suite)
    header_bytes = _header_bytes(env)
    verified = _verify(env)
    for index, slot in enumerate(verified.header.recipients):
        text = b64e(slot.wrapped_key).encode()
        reasons = set()
        for i in range(len(slot.wrapped_key)):
            flipped = _flip(slot.wrapped_key, i)
            tampered = _sub(header_bytes, text, b64e(flipped).encode())
            reasons.add(_verify_reason(_with_outer(env, lambda o: o.update(header=b64e(tampered)))))  # noqa: B023
            # Past the signature (a forged VerifiedEnvelope), HPKE itself refuses the key.
            forged = _with_slot(verified, index, flipped)
            exc = _refusal(lambda: _open(forged, slot.partner))  # noqa: B023
            assert exc.reason.startswith("CryptoFailure: HPKE unwrap failed")
        assert reasons == {"CryptoFailure: Ed25519 signature does not verify"}


def test_flipping_any_byte_of_the_envelope_json_is_refused() -> None:
    env = _small()
    assert len(env) < 1000
    accepted = [i for i in range(len(env)) if _verify_reason(_flip(env, i)) is None]
    assert accepted == []


def test_flipping_the_top_bit_of_any_envelope_byte_is_refused() -> None:
    env = _small()
    accepted = [i for i in range(len(env)) if _verify_reason(_flip(env, i, 0x80)) is None]
    assert accepted == []


def test_truncated_envelope_json_is_refused() -> None:
    env = _base()
    header_end = env.index(b'","signatures"') + 1
    for cut in {0, 1, header_end, len(env) // 3, len(env) // 2, len(env) - 2, len(env) - 1}:
        truncated = env[:cut]
        assert _verify_reason(truncated) is not None, cut
        assert _refusal(lambda: _open(truncated, "USA")).reason  # noqa: B023


def test_truncated_ciphertext_is_refused() -> None:
    env = _base()
    outer = _outer(env)
    text = outer["ciphertext"]
    ciphertext = b64d(text)
    verified = _verify(env)
    for cut in (0, 1, 12, 27, 28, len(ciphertext) // 2, len(ciphertext) - 1):
        outer["ciphertext"] = b64e(ciphertext[:cut])
        assert _verify_reason(compact_json(outer)) == "ciphertext does not match its digest"
        forged = replace(verified, ciphertext=ciphertext[:cut])
        assert _refusal(lambda: _open(forged, "USA")).reason.startswith("CryptoFailure")  # noqa: B023
    for chars in (1, 2, 3):
        outer["ciphertext"] = text[:-chars]
        assert _verify_reason(compact_json(outer)) is not None


# --- validity windows: the boundaries ------------------------------------------------------


def test_signing_key_is_valid_until_just_before_not_after() -> None:
    last = KEYS_NOT_AFTER - timedelta(microseconds=1)
    assert _verify(_base(), now=last).header.originator == ORIGINATOR
    assert _refusal(lambda: _verify(_base(), now=KEYS_NOT_AFTER)).reason.endswith("not valid now")


def test_created_may_be_ahead_of_the_verifier_clock_by_the_skew() -> None:
    env = _seal(now=NOW + timedelta(minutes=5))
    assert _verify(env).header.created == NOW + timedelta(minutes=5)
    late = _seal(now=NOW + timedelta(minutes=5, microseconds=1))
    assert "future" in _refusal(lambda: _verify(late)).reason


def test_created_may_be_exactly_max_age_old_and_any_age_without_max_age() -> None:
    old = _seal(now=NOW - timedelta(hours=1))
    assert _verify(old, max_age=timedelta(hours=1)).header.created == NOW - timedelta(hours=1)
    ancient = _seal(now=NOW - timedelta(days=20))
    assert _verify(ancient).header.created == NOW - timedelta(days=20)
    assert "too old" in _refusal(lambda: _verify(ancient, max_age=timedelta(days=1))).reason


# --- who can open -------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", [OUTSIDER, ATTACKER, ORIGINATOR])
def test_recipient_outside_the_slots_cannot_open(pid: str) -> None:
    env = _base("pq-hybrid")
    exc = _refusal(lambda: _open(env, pid))
    assert exc.reason == f"{pid} has no recipient slot"


def test_identity_without_the_private_key_for_its_slot_cannot_open() -> None:
    me = identity("USA")
    without_enc = Identity(me.partner, tuple(k for k in me.keys if k.record.use != "enc"))
    exc = _refusal(lambda: _open(_base(), "USA", me=without_enc))
    assert exc.reason == "identity has no private key for USA-enc-1"


def test_identity_holding_only_the_other_suites_key_cannot_open() -> None:
    me = identity("USA")
    pq_only = Identity(me.partner, tuple(k for k in me.keys if k.record.alg != "X25519"))
    exc = _refusal(lambda: _open(_base("classic"), "USA", me=pq_only))
    assert exc.reason == "identity has no private key for USA-enc-1"
    assert _open(_base("pq-hybrid"), "USA", me=pq_only).payload == PAYLOAD


def test_a_different_private_key_under_the_right_kid_cannot_open() -> None:
    impostor = Identity.generate("USA", "pq-hybrid", KEYS_NOT_BEFORE)
    for suite in SUITES:
        exc = _refusal(lambda: _open(_base(suite), "USA", me=impostor))  # noqa: B023
        assert exc.reason.startswith("CryptoFailure: HPKE unwrap failed")


def test_every_failure_shows_the_same_opaque_message_and_keeps_its_reason_for_logs() -> None:
    errors = [
        _refusal(lambda: _verify(b"{")),
        _refusal(lambda: _verify(_mal_ed25519_under_gbr_kid())),
        _refusal(lambda: _verify(_duplicate_label_in_header())),
        _refusal(lambda: _verify(_base(), now=KEYS_NOT_AFTER)),
        _refusal(lambda: _verify(_outer_field("ciphertext", lambda t: t[:-2])())),
        _refusal(lambda: _open(_base(), OUTSIDER)),
        _refusal(lambda: _open(_partner_re_signs(None)(), "USA")),
        _refusal(lambda: _open(_another_ciphertext(), "USA")),
        _refusal(lambda: _open(_base(), "USA", me=Identity("USA", ()))),
    ]
    assert {str(e) for e in errors} == {OPAQUE}
    assert len({e.reason for e in errors}) == len(errors)
    for error in errors:
        assert error.code == "envelope_rejected"
        assert error.__cause__ is None
        assert error.__suppress_context__
        assert error.reason not in str(error)


@pytest.mark.parametrize("suite", [["classic"], {"classic": 1}], ids=["list", "object"])
def test_unhashable_suite_in_a_signed_header_is_refused(suite: object) -> None:
    env = _edit_header(_base(), lambda h: h.update(suite=suite), suite="classic")
    with pytest.raises(EnvelopeError):
        _verify(env)


# --- seal refuses bad arguments ----------------------------------------------------------------


def _usa(suite: str) -> KeyRecord:
    return _enc_key(_registry(), "USA", suite)


def _sig_key_of(pid: str) -> KeyRecord:
    entry = _registry().get(pid)
    assert entry is not None
    return next(k for k in entry.keys if k.use == "sig")


SEAL_REFUSED = [
    pytest.param({"recipients": []}, InputError, "no_recipients", id="zero-recipients"),
    pytest.param(
        {"recipients": [("USA", _usa("classic")), ("USA", _usa("classic"))]},
        InputError,
        "duplicate_recipient",
        id="duplicate-recipient",
    ),
    pytest.param(
        {"recipients": [("USA", _sig_key_of("USA"))]},
        IdentityError,
        "invalid_identity",
        id="signing-key-as-recipient-key",
    ),
    pytest.param(
        {"recipients": [("USA", _usa("classic"))], "suite": "pq-hybrid"},
        IdentityError,
        "invalid_identity",
        id="classic-x25519-key-for-pq-hybrid",
    ),
    pytest.param(
        {"recipients": [("USA", _usa("pq-hybrid"))], "suite": "classic"},
        IdentityError,
        "invalid_identity",
        id="pq-hybrid-key-for-classic",
    ),
    pytest.param({"suite": "rsa"}, InputError, "invalid_suite", id="unknown-suite"),
    pytest.param(
        {"envelope_id": str(uuid.uuid4())}, InputError, "invalid_id", id="uuid4-envelope-id"
    ),
    pytest.param(
        {"envelope_id": new_uuid7(NOW).upper()}, InputError, "invalid_id", id="uppercase-id"
    ),
    pytest.param(
        {"recipients": [("usa", _usa("classic"))]},
        IdentityError,
        "invalid_identity",
        id="malformed-recipient-id",
    ),
    pytest.param({"content_type": ""}, InputError, "invalid_input", id="empty-content-type"),
    pytest.param(
        {"identity": identity(ORIGINATOR, "classic"), "suite": "pq-hybrid"},
        IdentityError,
        "invalid_identity",
        id="pq-hybrid-without-an-ml-dsa-key",
    ),
]


@pytest.mark.parametrize(("changes", "error", "code"), SEAL_REFUSED)
def test_seal_refuses_bad_arguments(changes: Json, error: type[InputError], code: str) -> None:
    suite = changes.get("suite", "classic")
    args: Json = {
        "recipients": [("USA", _usa(suite if suite in SUITES else "classic"))],
        "identity": identity(ORIGINATOR),
        "suite": "classic",
        **changes,
    }
    with pytest.raises(error) as caught:
        envelope.seal(PAYLOAD, LABEL, now=NOW, **args)
    assert not isinstance(caught.value, EnvelopeError)
    assert caught.value.code == code
