"""Security labels (DESIGN §3): shape checks, scheme checks, the digest, group expansion, expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tearline.clients.errors import LabelError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    canonical_json,
    compact_json,
    strict_loads,
)
from tearline.clients.protocol.label import Label, Scheme, label_digest
from tests.factories import NOW, SCHEME

Json = dict[str, Any]

VALID: Json = {"classification": "RESTRICTED", "releasable_to": ["USA", "FVEY"], "tlp": "AMBER"}
FULL: Json = {
    "policy": "TEARLINE-TEST",
    "classification": "SECRET",
    "releasable_to": ["USA", "GBR", "EE-CERT"],
    "caveats": ["CYBER-OPS", "NUC"],
    "topics": ["ransomware", "apt29", "maritime.ports"],
    "tlp": "AMBER+STRICT",
    "expires": "2026-07-01T00:00:00Z",
}


def _with(**changes: object) -> Json:
    return {**VALID, **changes}


def _without(field: str) -> Json:
    return {k: v for k, v in FULL.items() if k != field}


# --- shape: Label.from_dict --------------------------------------------------------------------

INVALID_SHAPE = [
    pytest.param(["RESTRICTED"], "a label must be a JSON object", id="not-an-object"),
    pytest.param(_with(colour="red"), "unknown field(s): colour", id="unknown-field"),
    pytest.param(
        _without("classification"), "missing required field(s): classification", id="no-level"
    ),
    pytest.param(
        _without("releasable_to"), "missing required field(s): releasable_to", id="no-rel-to"
    ),
    pytest.param(_without("tlp"), "missing required field(s): tlp", id="no-tlp"),
    pytest.param(_with(classification="secret"), "label.classification", id="level-lowercase"),
    pytest.param(_with(classification=3), "label.classification", id="level-not-a-string"),
    pytest.param(_with(classification=""), "label.classification", id="level-empty"),
    pytest.param(_with(tlp="amber"), "label.tlp", id="tlp-lowercase"),
    pytest.param(_with(tlp="WHITE"), "label.tlp", id="tlp-1.0-white"),
    pytest.param(_with(tlp="AMBER-STRICT"), "label.tlp", id="tlp-misspelt"),
    pytest.param(_with(tlp=None), "label.tlp", id="tlp-null"),
    pytest.param(_with(releasable_to=[]), "label.releasable_to", id="rel-to-empty"),
    pytest.param(_with(releasable_to="USA"), "label.releasable_to", id="rel-to-a-string"),
    pytest.param(_with(releasable_to=["usa"]), "label.releasable_to", id="rel-to-lowercase"),
    pytest.param(_with(releasable_to=["U"]), "label.releasable_to", id="rel-to-too-short"),
    pytest.param(_with(releasable_to=[None]), "label.releasable_to", id="rel-to-null-entry"),
    pytest.param(
        _with(releasable_to=["USA", "GBR", "USA"]), "label.releasable_to", id="rel-to-twice"
    ),
    pytest.param(_with(caveats=["NUC", "NUC"]), "label.caveats", id="caveat-twice"),
    pytest.param(_with(caveats=["nuc"]), "label.caveats", id="caveat-lowercase"),
    pytest.param(_with(caveats=[1]), "label.caveats", id="caveat-not-a-string"),
    pytest.param(_with(caveats="NUC"), "label.caveats", id="caveats-a-string"),
    pytest.param(_with(topics=["apt", "apt"]), "label.topics", id="topic-twice"),
    pytest.param(_with(topics=["APT"]), "label.topics", id="topic-uppercase"),
    pytest.param(_with(topics=["a" * 65]), "label.topics", id="topic-too-long"),
    pytest.param(_with(expires="2026-07-01T00:00:00"), "label.expires", id="expires-naive"),
    pytest.param(_with(expires="2026-07-01"), "label.expires", id="expires-date-only"),
    pytest.param(_with(expires=1782864000), "label.expires", id="expires-a-number"),
    pytest.param(_with(expires="2026-02-30T00:00:00Z"), "label.expires", id="expires-no-such-day"),
    pytest.param(_with(policy="tearline"), "label.policy", id="policy-lowercase"),
    pytest.param(_with(policy=""), "label.policy", id="policy-empty"),
    pytest.param(_with(policy=7), "label.policy", id="policy-not-a-string"),
]


@pytest.mark.parametrize(("obj", "names"), INVALID_SHAPE)
def test_malformed_label_is_refused_naming_the_field(obj: object, names: str) -> None:
    with pytest.raises(LabelError) as caught:
        Label.from_dict(obj)
    assert names in str(caught.value)
    assert caught.value.code == "invalid_label"


def test_python_constructor_applies_the_same_checks_as_the_wire() -> None:
    with pytest.raises(LabelError, match=r"label\.releasable_to"):
        Label("SECRET", [], "RED")
    with pytest.raises(LabelError, match=r"label\.tlp"):
        Label("SECRET", ["USA"], "amber")
    with pytest.raises(LabelError, match=r"label\.topics"):
        Label("SECRET", ["USA"], "RED", topics=["apt", "apt"])


def test_python_constructor_refuses_a_naive_expiry_with_a_label_error() -> None:
    with pytest.raises(LabelError, match=r"label\.expires"):
        Label("SECRET", ["USA"], "AMBER", expires=datetime(2026, 7, 1))


def test_python_constructor_refuses_a_bare_string_for_a_list_field() -> None:
    with pytest.raises(LabelError, match=r"label\.topics"):
        Label("SECRET", ["USA"], "AMBER", topics="apt")


# --- meaning: Scheme.check ---------------------------------------------------------------------

REFUSED_BY_SCHEME = [
    pytest.param(_with(classification="TOP-SECRET"), "classification", id="unknown-level"),
    pytest.param(_with(caveats=["CYBER-OPS", "EYES-ONLY"]), "label.caveats", id="unknown-caveat"),
    pytest.param(
        _with(releasable_to=["USA", "FVEY"], tlp="RED"), "label.releasable_to", id="group-tlp-red"
    ),
    pytest.param(_with(policy="NATO-4774"), "label.policy", id="another-scheme"),
]


@pytest.mark.parametrize(("obj", "names"), REFUSED_BY_SCHEME)
def test_label_meaningless_under_the_scheme_is_refused_naming_the_field(
    obj: Json, names: str
) -> None:
    parsed = Label.from_dict(obj)  # well-formed
    with pytest.raises(LabelError) as caught:
        SCHEME.check(parsed)
    assert names in str(caught.value)


def test_unknown_level_error_names_the_scheme_and_its_levels() -> None:
    with pytest.raises(LabelError) as caught:
        SCHEME.check(Label.from_dict(_with(classification="TOP-SECRET")))
    message = str(caught.value)
    assert "TOP-SECRET" in message
    assert "TEARLINE-TEST" in message
    assert "SECRET" in message


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(FULL, id="every-field"),
        pytest.param(_with(releasable_to=["USA", "GBR"], tlp="RED"), id="red-to-partners"),
        pytest.param(_with(releasable_to=["FVEY"], tlp="CLEAR"), id="group-under-clear"),
        pytest.param(_with(policy="TEARLINE-TEST"), id="policy-of-this-scheme"),
        pytest.param(_with(releasable_to=["ZZZ"]), id="unknown-partner-is-policys-business"),
    ],
)
def test_scheme_accepts_a_meaningful_label_and_returns_it(obj: Json) -> None:
    parsed = Label.from_dict(obj)
    assert SCHEME.check(parsed) is parsed


def test_duplicate_keys_in_label_json_are_refused_by_the_strict_parser() -> None:
    # Labels arrive as JSON; the duplicate is caught while parsing, before Label sees a dict,
    # and it is an EncodingError (the envelope turns it into its opaque EnvelopeError).
    text = b'{"classification":"SECRET","releasable_to":["USA"],"tlp":"RED","tlp":"CLEAR"}'
    with pytest.raises(EncodingError, match="duplicate key 'tlp'"):
        strict_loads(text)
    # A lenient parser would have kept the last value and let the label through as TLP:CLEAR.
    assert Label.from_dict(json.loads(text)).tlp == "CLEAR"


def test_duplicate_keys_nested_in_a_document_holding_a_label_are_refused() -> None:
    with pytest.raises(EncodingError, match="duplicate key"):
        strict_loads(b'{"label":{"classification":"SECRET","classification":"UNCLASSIFIED"}}')


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(VALID, id="minimal"),
        pytest.param(FULL, id="every-field"),
        pytest.param(_with(expires="2026-07-01T02:00:00+02:00"), id="expires-with-offset"),
        pytest.param(_with(expires="2026-07-01T00:00:00.250Z"), id="expires-fractional"),
        pytest.param(_with(caveats=[], topics=[]), id="explicit-empty-lists"),
    ],
)
def test_valid_label_round_trips_through_to_dict_and_from_dict(obj: Json) -> None:
    parsed = Label.from_dict(obj)
    wire = parsed.to_dict()
    assert Label.from_dict(wire) == parsed
    assert Label.from_dict(strict_loads(compact_json(wire))) == parsed
    assert wire.keys() <= FULL.keys()
    assert all(value not in ([], None) for value in wire.values())  # empty optionals left out


def test_to_dict_writes_expiry_in_utc_with_z() -> None:
    parsed = Label.from_dict(_with(expires="2026-07-01T02:00:00+02:00"))
    assert parsed.to_dict()["expires"] == "2026-07-01T00:00:00Z"
    assert parsed.expires == datetime(2026, 7, 1, tzinfo=UTC)


def test_python_constructor_builds_the_same_label_as_the_wire() -> None:
    built = Label(
        "SECRET",
        ("USA", "GBR", "EE-CERT"),
        "AMBER+STRICT",
        caveats=["CYBER-OPS", "NUC"],
        topics=["ransomware", "apt29", "maritime.ports"],
        policy="TEARLINE-TEST",
        expires=datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert built == Label.from_dict(FULL)
    assert built.to_dict() == FULL


def test_label_is_immutable() -> None:
    parsed = Label.from_dict(VALID)
    with pytest.raises(AttributeError):
        parsed.tlp = "CLEAR"  # type: ignore[misc]


# --- digest ---------------------------------------------------------------------------------------


def test_label_digest_is_stable_under_key_order() -> None:
    reordered = dict(reversed(FULL.items()))
    assert list(reordered) != list(FULL)
    assert label_digest(reordered) == label_digest(FULL)
    assert label_digest(strict_loads(json.dumps(FULL, indent=3))) == label_digest(FULL)


def test_label_digest_is_sha256_of_the_canonical_json() -> None:
    assert canonical_json(VALID) == (
        b'{"classification":"RESTRICTED","releasable_to":["USA","FVEY"],"tlp":"AMBER"}'
    )
    assert label_digest(VALID) == crypto.sha256(canonical_json(VALID))
    assert len(label_digest(VALID)) == 32


@pytest.mark.parametrize(
    "changes",
    [
        {"classification": "SECRET"},
        {"releasable_to": ["USA"]},
        {"tlp": "GREEN"},
        {"caveats": ["NUC"]},
        {"expires": "2026-07-01T00:00:00Z"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_label_digest_changes_with_any_field(changes: Json) -> None:
    assert label_digest(_with(**changes)) != label_digest(VALID)


def test_label_digest_of_a_parsed_label_matches_its_wire_form() -> None:
    parsed = Label.from_dict(dict(reversed(FULL.items())))
    assert label_digest(parsed.to_dict()) == label_digest(FULL)


# --- scheme: expansion, order ------------------------------------------------------------------

GROUPS = Scheme(
    policy="TEARLINE-TEST",
    levels=("UNCLASSIFIED", "SECRET"),
    groups={
        "FVEY": frozenset({"AUS", "CAN", "GBR", "NZL", "USA"}),
        "NORDIC": frozenset({"EST", "FIN"}),
    },
)


@pytest.mark.parametrize(
    ("rel_to", "expected"),
    [
        (["FVEY"], {"AUS", "CAN", "GBR", "NZL", "USA"}),
        (["NORDIC", "DEU"], {"EST", "FIN", "DEU"}),
        (["FVEY", "USA", "NORDIC"], {"AUS", "CAN", "GBR", "NZL", "USA", "EST", "FIN"}),
        (["DEU", "FRA"], {"DEU", "FRA"}),
        ([], set()),
    ],
    ids=["one-group", "group-and-partner", "overlap", "partners-only", "empty"],
)
def test_scheme_expand_replaces_groups_with_their_members(
    rel_to: list[str], expected: set[str]
) -> None:
    assert GROUPS.expand(rel_to) == frozenset(expected)


def test_scheme_ranks_levels_lowest_first() -> None:
    ranks = [SCHEME.rank(level) for level in SCHEME.levels]
    assert ranks == sorted(ranks) == list(range(len(SCHEME.levels)))
    assert SCHEME.has_level("SECRET")
    assert not SCHEME.has_level("TOP-SECRET")
    with pytest.raises(LabelError, match="TOP-SECRET"):
        SCHEME.rank("TOP-SECRET")


@pytest.mark.parametrize("levels", [(), ("SECRET", "SECRET")], ids=["none", "twice"])
def test_scheme_refuses_empty_or_repeated_levels(levels: tuple[str, ...]) -> None:
    with pytest.raises(LabelError):
        Scheme(policy="X", levels=levels)


# --- expiry ------------------------------------------------------------------------------------


def test_label_is_expired_from_the_instant_of_expires() -> None:
    expires = NOW + timedelta(days=1)
    parsed = Label.from_dict(_with(expires="2026-06-02T12:00:00Z"))
    assert parsed.expires == expires
    assert not parsed.expired(expires - timedelta(microseconds=1))
    assert parsed.expired(expires)  # now == expires is expired
    assert parsed.expired(expires + timedelta(microseconds=1))


def test_label_expiry_compares_instants_across_time_zones() -> None:
    parsed = Label.from_dict(_with(expires="2026-06-02T14:00:00+02:00"))
    tokyo = timezone(timedelta(hours=9))
    assert parsed.expired(datetime(2026, 6, 2, 21, 0, tzinfo=tokyo))
    assert not parsed.expired(datetime(2026, 6, 2, 20, 59, 59, tzinfo=tokyo))


def test_label_without_expires_never_expires() -> None:
    assert not Label.from_dict(VALID).expired(datetime(9999, 12, 31, tzinfo=UTC))
