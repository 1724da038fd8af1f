"""Identities, key records, the registry, identity files (DESIGN §2), and the strict encodings.

Real keys throughout (``tests.factories.identity``); files go to pytest's ``tmp_path``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tearline.clients import keyfile
from tearline.clients.errors import IdentityError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    b64d,
    b64e,
    compact_json,
    format_time,
    is_uuid7,
    new_uuid7,
    parse_time,
    strict_loads,
)
from tearline.clients.protocol.identity import Identity, KeyRecord, Partner, Registry, Suite
from tests import factories
from tests.factories import NOW

Json = dict[str, Any]
SUITES: tuple[Suite, ...] = ("classic", "pq-hybrid")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def identity(pid: str, suite: Suite = "pq-hybrid") -> Identity:
    # Always pass the suite: factories.identity is cached on its arguments as given.
    return factories.identity(pid, suite)


def _record(alg: str, pid: str = "GBR") -> KeyRecord:
    return next(k.record for k in identity(pid).keys if k.record.alg == alg)


def _entry(of: str = crypto.ED25519, /, **changes: object) -> Json:
    """The wire form of GBR's key of algorithm ``of``, with ``changes``."""
    return {**_record(of).to_dict(), **changes}


def _without(field: str) -> Json:
    return {k: v for k, v in _entry().items() if k != field}


# --- Identity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_identity_round_trips_through_to_dict_and_from_dict(suite: Suite) -> None:
    me = identity("GBR", suite)
    assert Identity.from_dict(me.to_dict()) == me
    assert Identity.from_dict(strict_loads(compact_json(me.to_dict()))) == me


@pytest.mark.parametrize(
    ("suite", "algs"),
    [
        ("classic", ["Ed25519", "X25519"]),
        ("pq-hybrid", ["Ed25519", "X25519", "ML-DSA-65", "ML-KEM-768+X25519"]),
    ],
)
def test_generate_makes_the_keys_of_the_suite_with_keygen_kids(
    suite: Suite, algs: list[str]
) -> None:
    me = Identity.generate("EE-CERT", suite, NOW, timedelta(days=10))
    assert [k.record.alg for k in me.keys] == algs
    kids = {k.record.alg: k.record.kid for k in me.keys}
    assert kids["Ed25519"] == "EE-CERT-sig-1"
    assert kids["X25519"] == "EE-CERT-enc-1"
    for key in me.keys:
        assert key.record.not_before == NOW
        assert key.record.not_after == NOW + timedelta(days=10)
        assert crypto.public_key_of(key.record.alg, key.private) == key.record.public
    assert Identity.generate("EE-CERT", suite, NOW).keys != me.keys  # fresh randomness


def test_identity_repr_never_shows_a_private_key() -> None:
    me = identity("GBR")
    shown = repr(me)
    for key in me.keys:
        assert b64e(key.private) not in shown
        assert repr(key.private) not in shown


@pytest.mark.parametrize("index", range(4), ids=["Ed25519", "X25519", "ML-DSA-65", "ML-KEM"])
def test_private_key_that_does_not_match_its_public_key_is_refused(index: int) -> None:
    data = identity("GBR").to_dict()
    data["keys"][index]["private"] = identity("USA").to_dict()["keys"][index]["private"]
    with pytest.raises(IdentityError, match=rf"keys\[{index}\]: private key does not match"):
        Identity.from_dict(data)


def _identity_with(change: Any) -> Json:
    data = identity("GBR", "classic").to_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "names"),
    [
        pytest.param(
            _identity_with(lambda d: d["keys"][0].update(private=b64e(b"\x01" * 31))),
            r"keys\[0\]\.private",
            id="private-wrong-length",
        ),
        pytest.param(
            _identity_with(lambda d: d["keys"][0].pop("private")),
            r"keys\[0\] must be an object with a private key",
            id="private-missing",
        ),
        pytest.param(
            _identity_with(lambda d: d["keys"][0].update(private=d["keys"][0]["private"] + "=")),
            r"keys\[0\]\.private",
            id="private-padded",
        ),
        pytest.param(_identity_with(lambda d: d.update(keys=[])), "keys", id="no-keys"),
        pytest.param(_identity_with(lambda d: d.update(partner="gbr")), "partner", id="bad-id"),
        pytest.param(_identity_with(lambda d: d.update(name="x")), "unknown", id="unknown-field"),
        pytest.param(
            _identity_with(lambda d: d["keys"][1].update(use="sig")),
            r"keys\[1\]\.use",
            id="key-record-invalid",
        ),
        pytest.param([], "must be an object", id="not-an-object"),
    ],
)
def test_malformed_identity_is_refused_naming_the_field(data: object, names: str) -> None:
    with pytest.raises(IdentityError, match=names):
        Identity.from_dict(data)


@pytest.mark.parametrize("suite", SUITES)
def test_signing_keys_give_one_valid_key_per_algorithm_of_the_suite(suite: Suite) -> None:
    me = identity("GBR")
    kids = [kid for kid, _ in me.signing_keys(suite, NOW)]
    assert kids == {"classic": ["GBR-sig-1"], "pq-hybrid": ["GBR-sig-1", "GBR-sig-pq-1"]}[suite]


def test_signing_keys_refuse_a_suite_the_identity_cannot_sign() -> None:
    with pytest.raises(IdentityError, match="ML-DSA-65"):
        identity("GBR", "classic").signing_keys("pq-hybrid", NOW)
    expired = NOW + timedelta(days=700)
    with pytest.raises(IdentityError, match="no valid Ed25519"):
        identity("GBR").signing_keys("classic", expired)


# --- KeyRecord ---------------------------------------------------------------------------------


INVALID_KEYS = [
    pytest.param(_entry(kid=""), "key.kid", id="kid-empty"),
    pytest.param(_entry(kid="-GBR-sig-1"), "key.kid", id="kid-leading-dash"),
    pytest.param(_entry(kid="GBR sig 1"), "key.kid", id="kid-with-spaces"),
    pytest.param(_entry(kid="k" * 65), "key.kid", id="kid-too-long"),
    pytest.param(_entry(kid="GBR/sig"), "key.kid", id="kid-with-slash"),
    pytest.param(_entry(kid=7), "key.kid", id="kid-not-a-string"),
    pytest.param(_entry(alg="RSA-2048"), "key.alg", id="alg-unknown"),
    pytest.param(_entry(alg="ed25519"), "key.alg", id="alg-lowercase"),
    pytest.param(_entry(use="enc"), "key.use", id="ed25519-for-enc"),
    pytest.param(_entry(crypto.X25519, use="sig"), "key.use", id="x25519-for-sig"),
    pytest.param(_entry(crypto.ML_DSA_65, use="enc"), "key.use", id="ml-dsa-for-enc"),
    pytest.param(_entry(use="both"), "key.use", id="use-unknown"),
    pytest.param(_entry(public=b64e(b"\x00" * 31)), "key.public", id="public-too-short"),
    pytest.param(_entry(public=b64e(b"\x00" * 33)), "key.public", id="public-too-long"),
    pytest.param(
        _entry(crypto.ML_DSA_65, public=_record(crypto.ED25519).to_dict()["public"]),
        "key.public",
        id="public-of-another-alg",
    ),
    pytest.param(
        _entry(public=_record(crypto.ED25519).to_dict()["public"] + "="),
        "key.public",
        id="public-padded",
    ),
    pytest.param(
        _entry(public=base64.b64encode(b"\xfb" * 32).decode()),
        "key.public",
        id="public-standard-alphabet",
    ),
    pytest.param(
        _entry(not_after=_entry()["not_before"]), "not_before must be earlier", id="zero-length"
    ),
    pytest.param(
        _entry(not_before="2028-01-01T00:00:00Z", not_after="2026-01-01T00:00:00Z"),
        "not_before must be earlier",
        id="ends-before-it-starts",
    ),
    pytest.param(_entry(not_before="2026-01-01T00:00:00"), "key.not_before", id="naive-not-before"),
    pytest.param(_entry(not_after="2028-01-01T00:00:00"), "key.not_after", id="naive-not-after"),
    pytest.param(
        _entry(not_before=datetime(2026, 1, 1)),
        "key.not_before",
        id="naive-datetime-object",
    ),
    pytest.param(_entry(not_before="2026-01-01"), "key.not_before", id="date-only"),
    pytest.param(_entry(comment="rotated"), "unknown field(s): comment", id="unknown-field"),
    pytest.param(_without("public"), "missing field(s): public", id="missing-public"),
    pytest.param(_without("not_after"), "missing field(s): not_after", id="missing-not-after"),
    pytest.param(_entry(revoked="false"), "key.revoked", id="revoked-a-string"),
    pytest.param(_entry(revoked=0), "key.revoked", id="revoked-a-number"),
    pytest.param("GBR-sig-1", "must be an object", id="not-an-object"),
]


@pytest.mark.parametrize(("entry", "names"), INVALID_KEYS)
def test_malformed_key_record_is_refused_naming_the_field(entry: object, names: str) -> None:
    with pytest.raises(IdentityError) as caught:
        KeyRecord.from_dict(entry)
    assert names in str(caught.value)
    assert caught.value.code == "invalid_identity"


@pytest.mark.parametrize("alg", sorted(crypto.PUBLIC_KEY_BYTES))
def test_key_record_round_trips_for_every_algorithm(alg: str) -> None:
    record = _record(alg)
    assert KeyRecord.from_dict(record.to_dict()) == record
    assert len(record.public) == crypto.PUBLIC_KEY_BYTES[alg]


def test_key_record_defaults_to_not_revoked_and_takes_aware_datetimes() -> None:
    entry = _without("revoked")
    entry["not_before"] = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    record = KeyRecord.from_dict(entry)
    assert record.revoked is False
    assert record.not_before == datetime(2026, 1, 1, tzinfo=UTC)


def test_key_is_valid_from_not_before_up_to_but_excluding_not_after() -> None:
    record = _record(crypto.X25519)
    assert record.valid_at(record.not_before)
    assert record.valid_at(record.not_after - timedelta(microseconds=1))
    assert not record.valid_at(record.not_after)
    assert not record.valid_at(record.not_before - timedelta(microseconds=1))
    assert not KeyRecord.from_dict({**record.to_dict(), "revoked": True}).valid_at(NOW)


# --- Registry -----------------------------------------------------------------------------------


def test_registry_refuses_a_duplicate_partner_id() -> None:
    with pytest.raises(IdentityError, match="duplicate partner id 'GBR'"):
        Registry([factories.partner("GBR", "classic"), factories.partner("GBR", "classic")])


def test_registry_refuses_a_kid_used_by_two_partners() -> None:
    usa = identity("USA").public_entry()
    usa["keys"][0]["kid"] = "GBR-sig-1"
    with pytest.raises(IdentityError, match="duplicate key id 'GBR-sig-1'"):
        Registry([factories.partner("GBR", "pq-hybrid"), Partner.from_dict(usa)])


def test_registry_refuses_a_kid_used_twice_by_one_partner() -> None:
    gbr = identity("GBR").public_entry()
    gbr["keys"][1]["kid"] = gbr["keys"][0]["kid"]
    with pytest.raises(IdentityError, match="duplicate key id"):
        Registry([Partner.from_dict(gbr)])


def test_registry_maps_each_kid_to_its_owner_and_record() -> None:
    reg = Registry([factories.partner("GBR", "pq-hybrid"), factories.partner("USA", "classic")])
    assert reg.ids == ["GBR", "USA"]
    assert len(reg) == 2
    assert "USA" in reg
    assert "CAN" not in reg
    owner = reg.key("USA-enc-1")
    assert owner is not None
    assert owner.partner == "USA"
    assert owner.record.alg == crypto.X25519
    assert reg.key("USA-enc-pq-1") is None
    assert reg.verify_key("GBR-sig-pq-1") is reg.verify_key("GBR-sig-pq-1")  # parsed once


def test_registry_from_dicts_names_the_bad_entry() -> None:
    good = identity("GBR").public_entry()
    bad = {**identity("USA").public_entry(), "status": "retired"}
    with pytest.raises(IdentityError, match=r"partners\[1\]\.status"):
        Registry.from_dicts([good, bad])


# --- Partner.enc_key ---------------------------------------------------------------------------


def _partner_with(*changes: tuple[str, Json]) -> Partner:
    """GBR (pq-hybrid) with ``changes`` applied to the key of each named algorithm."""
    entry = identity("GBR").public_entry()
    for alg, change in changes:
        next(k for k in entry["keys"] if k["alg"] == alg).update(change)
    return Partner.from_dict(entry)


@pytest.mark.parametrize(
    ("suite", "kid"), [("classic", "GBR-enc-1"), ("pq-hybrid", "GBR-enc-pq-1")]
)
def test_enc_key_picks_the_kem_of_the_suite(suite: Suite, kid: str) -> None:
    key = factories.partner("GBR", "pq-hybrid").enc_key(suite, NOW)
    assert key is not None
    assert key.kid == kid
    assert key.use == "enc"


def test_enc_key_is_none_when_the_partner_has_no_key_for_the_suite() -> None:
    assert factories.partner("GBR", "classic").enc_key("pq-hybrid", NOW) is None


@pytest.mark.parametrize(
    ("change", "now"),
    [
        pytest.param({"revoked": True}, NOW, id="revoked"),
        pytest.param({}, NOW + timedelta(days=700), id="expired-at-not-after"),
        pytest.param({}, NOW - timedelta(days=31), id="not-yet-valid"),
    ],
)
def test_enc_key_is_none_when_the_only_key_is_not_valid(change: Json, now: datetime) -> None:
    gbr = _partner_with((crypto.X25519, change), (crypto.ML_KEM_768_X25519, change))
    assert gbr.enc_key("classic", now) is None
    assert gbr.enc_key("pq-hybrid", now) is None


def test_enc_key_picks_the_newest_valid_key_when_keys_rotate() -> None:
    old = _record(crypto.X25519)
    new = KeyRecord.from_dict(
        {
            **_record(crypto.X25519, "USA").to_dict(),
            "kid": "GBR-enc-2",
            "not_before": format_time(NOW - timedelta(days=1)),
        }
    )
    gbr = Partner("GBR", "United Kingdom", "active", (new, old))
    assert gbr.enc_key("classic", NOW) == new
    assert gbr.enc_key("classic", NOW - timedelta(days=2)) == old  # before the new one starts
    revoked = Partner("GBR", "United Kingdom", "active", (old, replace(new, revoked=True)))
    assert revoked.enc_key("classic", NOW) == old


# --- identity files ------------------------------------------------------------------------------


def test_write_keypair_writes_a_private_file_with_mode_0600_and_a_public_entry(
    tmp_path: Path,
) -> None:
    me = identity("GBR")
    private, public = keyfile.write_keypair(me, tmp_path / "keys", "United Kingdom")
    assert private == tmp_path / "keys" / "GBR.identity.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert Identity.from_dict(json.loads(private.read_text())) == me
    entry = yaml.safe_load(public.read_text())
    assert entry == me.public_entry("United Kingdom")
    assert all(b64e(k.private) not in public.read_text() for k in me.keys)
    assert all("private" not in key for key in entry["keys"])
    assert Partner.from_dict(entry).keys == tuple(k.record for k in me.keys)


def test_write_keypair_refuses_to_overwrite_an_identity_file(tmp_path: Path) -> None:
    private, _ = keyfile.write_keypair(identity("GBR"), tmp_path)
    before = private.read_bytes()
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        keyfile.write_keypair(identity("GBR", "classic"), tmp_path)
    assert private.read_bytes() == before


def test_identity_load_reads_back_what_write_keypair_wrote(tmp_path: Path) -> None:
    me = identity("GBR")
    private, _ = keyfile.write_keypair(me, tmp_path)
    loaded = keyfile.Identity.load(private)
    assert isinstance(loaded, keyfile.Identity)
    assert loaded.partner == me.partner
    assert loaded.keys == me.keys
    assert keyfile.Identity.load(str(private)).to_dict() == me.to_dict()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_identity_load_refuses_a_file_others_can_read(tmp_path: Path, mode: int) -> None:
    private, _ = keyfile.write_keypair(identity("GBR"), tmp_path)
    os.chmod(private, mode)
    with pytest.raises(IdentityError, match="readable by other users"):
        keyfile.Identity.load(private)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"partner: GBR\n", id="yaml-not-json"),
        pytest.param(b'{"partner":"GBR"', id="truncated"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b'{"partner":"GBR","partner":"USA","keys":[]}', id="duplicate-key"),
        pytest.param(b'{"partner":"GBR","keys":[]}', id="no-keys"),
        pytest.param(b"[]", id="a-list"),
    ],
)
def test_identity_load_refuses_a_malformed_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "GBR.identity.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError):
        keyfile.Identity.load(path)


def test_identity_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read identity file"):
        keyfile.Identity.load(tmp_path / "nobody.identity.json")


# --- encoding: base64url -------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(10))
def test_b64e_and_b64d_round_trip_without_padding(size: int) -> None:
    data = os.urandom(size)
    text = b64e(data)
    assert "=" not in text
    assert b64d(text) == data


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("AA==", id="padding-two"),
        pytest.param("AAA=", id="padding-one"),
        pytest.param("AAAA====", id="padding-extra"),
        pytest.param("A", id="one-char-group"),
        pytest.param("AAAAA", id="five-chars"),
        pytest.param("ab+c", id="standard-plus"),
        pytest.param("ab/c", id="standard-slash"),
        pytest.param("AA AA", id="space"),
        pytest.param("AAAA\n", id="newline"),
        pytest.param("AAé", id="non-ascii"),
        pytest.param("AA.A", id="dot"),
        pytest.param("AB", id="spare-bits-of-one-byte"),
        pytest.param("AAB", id="spare-bits-of-two-bytes"),
    ],
)
def test_b64d_refuses_anything_but_canonical_unpadded_base64url(text: str) -> None:
    with pytest.raises(EncodingError):
        b64d(text)


@pytest.mark.parametrize(
    "value", [b"AAAA", None, 0, ["AAAA"]], ids=["bytes", "none", "int", "list"]
)
def test_b64d_refuses_non_strings(value: object) -> None:
    with pytest.raises(EncodingError):
        b64d(value)  # type: ignore[arg-type]


def test_b64d_accepts_a_last_character_only_when_its_spare_bits_are_zero() -> None:
    for char in ALPHABET:
        index = ALPHABET.index(char)
        # "A" + char encodes 1 byte: 4 spare bits; "AA" + char encodes 2 bytes: 2 spare bits.
        for prefix, spare in (("A", 0b1111), ("AA", 0b11)):
            text = prefix + char
            if index & spare:
                with pytest.raises(EncodingError, match="non-canonical"):
                    b64d(text)
            else:
                assert b64e(b64d(text)) == text


# --- encoding: JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a":1,"a":1}', id="same-value"),
        pytest.param('{"a":1,"b":{"c":2,"c":3}}', id="nested"),
        pytest.param('[{"x":1},{"y":1,"y":2}]', id="in-a-list"),
        pytest.param('{"a":1,"\\u0061":2}', id="escaped"),
    ],
)
def test_strict_loads_refuses_duplicate_keys(text: str) -> None:
    with pytest.raises(EncodingError, match="duplicate key"):
        strict_loads(text)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_strict_loads_refuses_non_finite_numbers(token: str) -> None:
    with pytest.raises(EncodingError, match="non-finite"):
        strict_loads(f'{{"v":{token}}}')
    with pytest.raises(EncodingError, match="non-finite"):
        strict_loads(f"[1,{token}]".encode())


@pytest.mark.parametrize("token", ["1e999", "-1e999"])
def test_strict_loads_refuses_numbers_that_overflow_to_infinity(token: str) -> None:
    with pytest.raises(EncodingError):
        strict_loads(f'{{"v":{token}}}')


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":"\xff"}', id="invalid-utf8"),
        pytest.param(b'{"a":1}{}', id="trailing-data"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{'a':1}", id="single-quotes"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="too-deep"),
    ],
)
def test_strict_loads_refuses_what_is_not_json(data: bytes) -> None:
    with pytest.raises(EncodingError):
        strict_loads(data)


def test_strict_loads_reads_ordinary_json_from_bytes_or_text() -> None:
    doc = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
    assert strict_loads(compact_json(doc)) == doc
    assert strict_loads(compact_json(doc).decode()) == doc


# --- encoding: time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-06-01T12:00:00", id="naive"),
        pytest.param("2026-06-01T12:00:00.5", id="naive-fractional"),
        pytest.param("2026-06-01", id="date-only"),
        pytest.param("2026-06-01 12:00:00Z", id="space-separator"),
        pytest.param("2026-06-01T12:00Z", id="no-seconds"),
        pytest.param("2026-06-01T12:00:00+0200", id="offset-without-colon"),
        pytest.param("2026-02-30T12:00:00Z", id="no-such-day"),
        pytest.param("2026-06-01T24:00:00Z", id="hour-24"),
        pytest.param("2026-06-01T12:00:00+24:00", id="offset-too-large"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_time_refuses_naive_or_malformed_times(text: str) -> None:
    with pytest.raises(EncodingError):
        parse_time(text)


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 6, 1, 12, tzinfo=UTC), 1780315200, None],
    ids=["datetime", "int", "none"],
)
def test_parse_time_refuses_non_strings(value: object) -> None:
    with pytest.raises(EncodingError):
        parse_time(value)


@pytest.mark.parametrize(
    "text",
    ["2026-06-01T12:00:00Z", "2026-06-01T14:00:00+02:00", "2026-06-01T07:30:00-04:30"],
)
def test_parse_time_reads_the_instant_with_its_offset(text: str) -> None:
    parsed = parse_time(text)
    assert parsed.tzinfo is not None
    assert parsed == NOW
    assert format_time(parsed) == "2026-06-01T12:00:00Z"


def test_format_time_refuses_naive_datetimes() -> None:
    with pytest.raises(EncodingError, match="naive"):
        format_time(datetime(2026, 6, 1, 12))


# --- encoding: UUIDv7 -----------------------------------------------------------------------------


def test_new_uuid7_gives_version_7_ids_carrying_the_millisecond() -> None:
    for moment in (NOW, NOW + timedelta(microseconds=999), datetime(1970, 1, 1, tzinfo=UTC)):
        text = new_uuid7(moment)
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert is_uuid7(text)
        assert str(parsed) == text
        assert parsed.int >> 80 == int(moment.timestamp() * 1000)


def test_new_uuid7_ids_sort_by_time() -> None:
    moments = [NOW + timedelta(milliseconds=ms) for ms in (0, 1, 2, 999, 1000, 86_400_000)]
    moments += [NOW + timedelta(days=365 * 30), NOW - timedelta(days=365 * 30)]
    ids = [new_uuid7(m) for m in moments]
    assert sorted(ids) == [new for _, new in sorted(zip(moments, ids, strict=True))]


def test_new_uuid7_ids_within_one_millisecond_differ() -> None:
    ids = {new_uuid7(NOW) for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(str(uuid.uuid4()), id="uuid4"),
        pytest.param(str(uuid.uuid1()), id="uuid1"),
        pytest.param(new_uuid7(NOW).upper(), id="uppercase"),
        pytest.param(uuid.UUID(new_uuid7(NOW)).hex, id="no-hyphens"),
        pytest.param("{" + new_uuid7(NOW) + "}", id="braces"),
        pytest.param("urn:uuid:" + new_uuid7(NOW), id="urn"),
        pytest.param(
            str(uuid.UUID(int=uuid.UUID(new_uuid7(NOW)).int | 1 << 62 | 1 << 63)), id="variant"
        ),
        pytest.param("", id="empty"),
    ],
)
def test_is_uuid7_refuses_anything_but_a_canonical_version_7_id(text: str) -> None:
    assert not is_uuid7(text)


@pytest.mark.parametrize("value", [None, 7, uuid.UUID(int=7 << 76 | 2 << 62)], ids=str)
def test_is_uuid7_refuses_non_strings(value: object) -> None:
    assert not is_uuid7(value)


def test_identity_file_with_a_mismatched_private_key_is_refused(tmp_path: Path) -> None:
    me = identity("GBR", "classic")
    data = me.to_dict()
    data["keys"][0]["private"] = identity("USA", "classic").to_dict()["keys"][0]["private"]
    path = tmp_path / "GBR.identity.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="does not match its public key"):
        keyfile.Identity.load(path)
