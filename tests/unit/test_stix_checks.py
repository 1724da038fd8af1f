"""STIX 2.1 bundles checked before sealing (clients.stix): what is refused and why, markings
against the label's TLP, and stamping on receipt."""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stix2.v21.common
from misp_stix_converter.misp_stix_mapping import TLP2MarkingDefinitions

from tearline import Label, StixError
from tearline.clients.protocol.label import TLP_LEVELS
from tearline.clients.stix import (
    MAX_FINDINGS,
    OFFICIAL_TLP,
    RELEASABILITY_EXTENSION,
    RELEASABILITY_EXTENSION_ID,
    TEARLINE_IDENTITY,
    TLP1_MARKING_IDS,
    TLP2_EXTENSION_ID,
    TLP2_MARKING_IDS,
    check_bundle,
    mark_for_sharing,
    releasability_marking,
    stamp,
    stamp_report,
    tlp_of_object,
)
from tearline.clients.stix.check import is_stix_content_type
from tearline.clients.stix.markings import tlp_definitions

ROOT = Path(__file__).parents[2]
TS = "2026-01-01T00:00:00.000Z"
RED = TLP2_MARKING_IDS["RED"]
AMBER = TLP2_MARKING_IDS["AMBER"]
STRICT = TLP2_MARKING_IDS["AMBER+STRICT"]
CLEAR = TLP2_MARKING_IDS["CLEAR"]
TLP1_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"

IDENTITY = {
    "type": "identity",
    "spec_version": "2.1",
    "id": "identity--0b6f9e52-3c1d-4a8e-b7f2-6d4e1a9c8b75",
    "created": TS,
    "modified": TS,
    "name": "GBR-CERT",
    "identity_class": "organization",
}
INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": TS,
    "modified": TS,
    "name": "ransomware C2",
    "pattern": "[ipv4-addr:value = '198.51.100.1']",
    "pattern_type": "stix",
    "valid_from": "2026-01-01T00:00:00Z",
    "created_by_ref": IDENTITY["id"],
}
MALWARE = {
    "type": "malware",
    "spec_version": "2.1",
    "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
    "created": TS,
    "modified": TS,
    "name": "ExampleLocker",
    "is_family": True,
    "malware_types": ["ransomware"],
}
RELATIONSHIP = {
    "type": "relationship",
    "spec_version": "2.1",
    "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
    "created": TS,
    "modified": TS,
    "relationship_type": "indicates",
    "source_ref": INDICATOR["id"],
    "target_ref": MALWARE["id"],
}
IPV4 = {
    "type": "ipv4-addr",
    "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
    "value": "198.51.100.1",
}
CUSTOM_TYPE = {
    **INDICATOR,
    "type": "x-acme-sighting",
    "id": "x-acme-sighting--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
}
FORGED_TLP_DEFINITION = {
    "type": "marking-definition",
    "spec_version": "2.1",
    "id": "marking-definition--0e6b8a62-7bbb-4b0e-8f36-4fb5a1a1a1a1",
    "created": TS,
    "definition_type": "tlp",
    "definition": {"tlp": "red"},
}
AMBER_LABEL = Label("CONFIDENTIAL", ["USA", "EST"], "AMBER", topics=["ransomware"])


def bundle(*objects: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "bundle",
        "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8",
        "objects": list(objects),
        **extra,
    }


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def marked(obj: dict[str, Any], *refs: str) -> dict[str, Any]:
    return {**obj, "object_marking_refs": list(refs)}


def granular(obj: dict[str, Any], ref: str, selector: str = "name") -> dict[str, Any]:
    return {**obj, "granular_markings": [{"marking_ref": ref, "selectors": [selector]}]}


# --- what is not STIX 2.1 --------------------------------------------------------------------

INVALID = [
    pytest.param(b"198.51.100.1 is a C2 server\n", "not JSON", id="a-text-file"),
    pytest.param(b"\x89PNG\r\n\x1a\n", "not JSON", id="binary"),
    pytest.param(b"", "not JSON", id="empty"),
    pytest.param(b'{"type": "bundle", "objects": [', "malformed JSON", id="truncated-json"),
    pytest.param(b'{"type": "bundle", "type": "x"}', "duplicate", id="duplicate-keys"),
    pytest.param(b"[]", "a JSON list", id="json-list"),
    pytest.param(raw(INDICATOR), "of type 'indicator'", id="json-object-not-a-bundle"),
    pytest.param(raw({"type": "bundle", "objects": []}), "no id", id="bundle-without-id"),
    pytest.param(raw(bundle(spec_version="2.0")), "that is STIX 2.0", id="stix-2.0-bundle"),
    pytest.param(raw(bundle(objects={})), "objects is not a list", id="objects-not-a-list"),
    pytest.param(raw(bundle("indicator")), "not a JSON object", id="object-not-an-object"),
    pytest.param(raw(bundle(without(INDICATOR, "id"))), "no id", id="object-without-id"),
    pytest.param(raw(bundle(without(INDICATOR, "type"))), "no type", id="object-without-type"),
    pytest.param(
        raw(bundle({**INDICATOR, "id": "indicator--42"})), "not of the form", id="id-not-a-uuid"
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "id": MALWARE["id"]})), "not of the form", id="id-of-other-type"
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "spec_version": "2.0"})), "'2.0', not 2.1", id="spec-version-2.0"
    ),
    pytest.param(
        raw(bundle(without(INDICATOR, "spec_version"))), "no spec_version", id="no-spec-version"
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "created": "yesterday"})), "timestamp", id="bad-timestamp"
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "created": "2026-01-01T00:00:00Z"})),
        "millisecond",
        id="timestamp-not-to-the-millisecond",
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "modified": "2025-01-01T00:00:00.000Z"})),
        "later than or equal to 'created'",
        id="modified-before-created",
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "pattern": "[ipv4-addr:value = "})),
        "Pattern failed to validate",
        id="pattern-does-not-parse",
    ),
    pytest.param(raw(bundle(without(MALWARE, "is_family"))), "is_family", id="missing-required"),
    pytest.param(
        raw(bundle(without(RELATIONSHIP, "target_ref"))), "target_ref", id="relationship-one-end"
    ),
    pytest.param(
        raw(bundle({**IPV4, "value": "not an address"})), "does not match", id="bad-ipv4-value"
    ),
    pytest.param(
        raw(bundle({**INDICATOR, "created_by_ref": "identity--zzz"})),
        "does not match the id format",
        id="bad-reference",
    ),
    pytest.param(
        raw(bundle(FORGED_TLP_DEFINITION)),
        "must match one of those defined",
        id="tlp-1.0-definition-under-another-id",
    ),
    pytest.param(
        raw(bundle(granular(INDICATOR, AMBER, "nothing_here"))),
        "not a valid selector",
        id="granular-selector-selects-nothing",
    ),
]


@pytest.mark.parametrize(("payload", "said"), INVALID)
def test_what_is_not_a_valid_stix_2_1_bundle_is_refused_with_its_findings(
    payload: bytes, said: str
) -> None:
    with pytest.raises(StixError) as info:
        check_bundle(payload, AMBER_LABEL)
    error = info.value
    assert error.code == "invalid_stix"
    findings = error.details["findings"]
    assert findings
    assert error.details["count"] >= len(findings)
    assert any(said in f for f in findings) or said in error.message, (error.message, findings)
    assert isinstance(error.message, str)
    assert "\n" not in error.message


VALID = [
    pytest.param(bundle(), id="empty-bundle"),
    pytest.param(without(bundle(), "objects"), id="bundle-without-objects"),
    pytest.param(bundle(IDENTITY, INDICATOR, MALWARE, RELATIONSHIP), id="sdos-and-an-sro"),
    pytest.param(bundle(IPV4), id="observable-without-spec-version"),
    pytest.param(bundle({**INDICATOR, "x_acme_score": 7}), id="custom-property-is-a-warning"),
    pytest.param(bundle(CUSTOM_TYPE), id="custom-object-type-is-a-warning"),
    pytest.param(
        bundle({**MALWARE, "malware_types": ["wiper-ish"]}), id="open-vocabulary-is-a-warning"
    ),
    pytest.param(bundle(INDICATOR, IDENTITY), id="a-reference-to-an-object-in-the-bundle"),
]


@pytest.mark.parametrize("value", VALID)
def test_bundles_that_tools_write_pass_and_come_back_parsed(value: dict[str, Any]) -> None:
    assert check_bundle(raw(value), AMBER_LABEL) == value
    assert check_bundle(json.dumps(value), AMBER_LABEL) == value  # str as well as bytes


def test_findings_are_bounded_and_counted() -> None:
    objects = [
        {**INDICATOR, "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-{n:012x}", "created": "x"}
        for n in range(40)
    ]
    with pytest.raises(StixError) as info:
        check_bundle(raw(bundle(*objects)), AMBER_LABEL)
    assert len(info.value.details["findings"]) == MAX_FINDINGS
    assert info.value.details["count"] > MAX_FINDINGS
    assert "more finding(s)" in info.value.message


# --- markings against the label ----------------------------------------------------------------

CONFLICTS = [
    pytest.param(bundle(marked(INDICATOR, RED)), "AMBER", "TLP:RED", id="red-object-amber-report"),
    pytest.param(
        bundle(marked(INDICATOR, STRICT)), "AMBER", "TLP:AMBER+STRICT", id="strict-in-amber"
    ),
    pytest.param(bundle(granular(INDICATOR, RED)), "AMBER", "TLP:RED", id="granular-red"),
    pytest.param(bundle(marked(INDICATOR, TLP1_RED)), "AMBER", "TLP:RED", id="tlp-1.0-red-id"),
    pytest.param(
        bundle(marked(INDICATOR, AMBER)), "GREEN", "TLP:AMBER", id="amber-object-green-report"
    ),
    pytest.param(
        bundle(marked(INDICATOR, CLEAR, RED)), "AMBER", "TLP:RED", id="the-most-restrictive-counts"
    ),
    pytest.param(
        bundle(
            {
                "type": "marking-definition",
                "spec_version": "2.1",
                "id": "marking-definition--0e6b8a62-7bbb-4b0e-8f36-4fb5a1a1a1a1",
                "created": TS,
                "name": "our red",
                "extensions": {
                    TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "red"}
                },
            },
            marked(INDICATOR, "marking-definition--0e6b8a62-7bbb-4b0e-8f36-4fb5a1a1a1a1"),
        ),
        "GREEN",
        "TLP:RED",
        id="tlp-definition-of-its-own-in-the-bundle",
    ),
    pytest.param(
        bundle(
            {
                "type": "marking-definition",
                "spec_version": "2.1",
                "id": RED,
                "created": TS,
                "name": "TLP:CLEAR, it says",
                "extensions": {
                    TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "clear"}
                },
            },
            marked(INDICATOR, RED),
        ),
        "CLEAR",
        "TLP:RED",
        id="an-official-id-means-its-official-level",
    ),
]


@pytest.mark.parametrize(("value", "tlp", "marking"), CONFLICTS)
def test_an_object_marked_above_the_labels_tlp_is_refused_by_name(
    value: dict[str, Any], tlp: str, marking: str
) -> None:
    label = Label("CONFIDENTIAL", ["USA"], tlp)
    with pytest.raises(StixError) as info:
        check_bundle(raw(value), label)
    assert info.value.code == "stix_marking_conflict"
    assert info.value.details["objects"] == [{"id": INDICATOR["id"], "marking": marking}]
    assert f"TLP:{tlp}" in info.value.message
    assert INDICATOR["id"] in info.value.message


AGREEMENTS = [
    pytest.param(bundle(marked(INDICATOR, CLEAR)), "RED", id="clear-object-red-report"),
    pytest.param(bundle(marked(INDICATOR, AMBER)), "AMBER", id="same-level"),
    pytest.param(bundle(marked(INDICATOR, AMBER)), "AMBER+STRICT", id="strict-covers-amber"),
    pytest.param(bundle(marked(INDICATOR, TLP1_WHITE)), "CLEAR", id="tlp-1.0-white-is-clear"),
    pytest.param(bundle(granular(INDICATOR, CLEAR)), "GREEN", id="granular-below"),
    pytest.param(bundle(INDICATOR), "CLEAR", id="unmarked"),
    pytest.param(
        bundle(marked(INDICATOR, "marking-definition--34a3c3e5-7a4b-4c86-9c42-1f7e3b3b3b3b")),
        "CLEAR",
        id="a-marking-that-is-not-tlp",
    ),
]


@pytest.mark.parametrize(("value", "tlp"), AGREEMENTS)
def test_markings_no_more_restrictive_than_the_label_pass(value: dict[str, Any], tlp: str) -> None:
    assert check_bundle(raw(value), Label("SECRET", ["USA"], tlp)) == value


def test_every_conflict_is_listed() -> None:
    value = bundle(marked(INDICATOR, RED), granular(MALWARE, STRICT), marked(IDENTITY, CLEAR))
    with pytest.raises(StixError) as info:
        check_bundle(raw(value), AMBER_LABEL)
    assert info.value.details == {
        "objects": [
            {"id": INDICATOR["id"], "marking": "TLP:RED"},
            {"id": MALWARE["id"], "marking": "TLP:AMBER+STRICT"},
        ],
        "count": 2,
    }


def test_the_marking_ids_are_the_ones_the_libraries_publish() -> None:
    """TLP 2.0 as misp-stix builds the OASIS objects, TLP 1.0 as the stix2 library has them."""
    for level, mid in TLP2_MARKING_IDS.items():
        official = TLP2MarkingDefinitions.by_uuid(mid)
        assert official is not None, level
        assert official.name == f"TLP:{level}"
    tlp1 = {
        stix2.v21.common.TLP_WHITE.id: "CLEAR",
        stix2.v21.common.TLP_GREEN.id: "GREEN",
        stix2.v21.common.TLP_AMBER.id: "AMBER",
        stix2.v21.common.TLP_RED.id: "RED",
    }
    assert dict(TLP1_MARKING_IDS) == tlp1
    assert set(TLP2_MARKING_IDS) == set(TLP_LEVELS)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(INDICATOR, None, id="unmarked"),
        pytest.param(marked(INDICATOR, AMBER), "AMBER", id="tlp-2.0"),
        pytest.param(marked(INDICATOR, TLP1_WHITE), "CLEAR", id="tlp-1.0-white"),
        pytest.param(granular(INDICATOR, STRICT), "AMBER+STRICT", id="granular"),
        pytest.param(granular(marked(INDICATOR, CLEAR), RED), "RED", id="most-restrictive"),
    ],
)
def test_tlp_of_object(obj: dict[str, Any], expected: str | None) -> None:
    assert tlp_of_object(obj) == expected
    assert tlp_of_object(obj, tlp_definitions([])) == expected


@pytest.mark.parametrize(
    ("content_type", "checked"),
    [
        ("application/stix+json;version=2.1", True),
        ("application/stix+json; version=2.1", True),
        ('Application/STIX+JSON; version="2.1"', True),
        ("application/stix+json", True),
        ("application/stix+json;version=2.0", False),
        ("application/json", False),
        ("text/plain", False),
    ],
)
def test_which_content_types_are_checked(content_type: str, checked: bool) -> None:
    assert is_stix_content_type(content_type) is checked


# --- stamping on receipt ---------------------------------------------------------------------

CREATED = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def stamped(value: dict[str, Any], label: Label = AMBER_LABEL) -> dict[str, Any]:
    return stamp(value, label=label, originator="GBR", report_id="r-0001", created=CREATED)


def test_a_stamped_bundle_marks_every_object_and_still_passes_the_checks() -> None:
    original = bundle(IDENTITY, marked(INDICATOR, CLEAR), MALWARE, RELATIONSHIP, IPV4)
    before = copy.deepcopy(original)
    out = stamped(original)
    assert original == before  # a new bundle; the one given is left as it was
    assert check_bundle(raw(out), AMBER_LABEL) == out
    by_id = {o["id"]: o for o in out["objects"]}
    (marking,) = [
        o for o in out["objects"] if RELEASABILITY_EXTENSION_ID in o.get("extensions", {})
    ]
    for obj in original["objects"]:
        refs = by_id[obj["id"]]["object_marking_refs"]
        assert refs == [AMBER, marking["id"]], obj["id"]  # CLEAR gave way to the label's AMBER
        assert tlp_of_object(by_id[obj["id"]]) == "AMBER"
    assert by_id[AMBER]["name"] == "TLP:AMBER"
    assert by_id[RELEASABILITY_EXTENSION_ID] == RELEASABILITY_EXTENSION
    assert by_id[TEARLINE_IDENTITY["id"]] == TEARLINE_IDENTITY
    assert marking["created"] == "2026-11-30T12:00:00.123Z"
    assert marking["extensions"][RELEASABILITY_EXTENSION_ID] == {
        "extension_type": "property-extension",
        "classification": "CONFIDENTIAL",
        "releasable_to": ["USA", "EST"],
        "topics": ["ransomware"],
        "tlp": "AMBER",
        "originator": "GBR",
        "report_id": "r-0001",
    }
    assert len(out["objects"]) == len(original["objects"]) + 4


def test_stamping_is_deterministic_and_idempotent() -> None:
    once = stamped(bundle(INDICATOR))
    assert stamped(bundle(INDICATOR)) == once
    assert stamped(once) == once
    other = stamp(bundle(INDICATOR), label=AMBER_LABEL, originator="GBR", report_id="r-0002")
    assert (
        other["objects"][0]["object_marking_refs"][1]
        != once["objects"][0]["object_marking_refs"][1]
    )


def test_stamping_never_lowers_a_marking() -> None:
    """A stricter object-level TLP (a sender that skipped the checks) stays beside the label's."""
    out = stamped(bundle(marked(INDICATOR, RED)))
    assert out["objects"][0]["object_marking_refs"][:2] == [RED, AMBER]
    assert tlp_of_object(out["objects"][0]) == "RED"


def test_every_label_field_is_carried_and_empty_lists_are_left_out() -> None:
    label = Label(
        "SECRET",
        ["USA"],
        "RED",
        caveats=["CYBER-OPS"],
        policy="TEARLINE-TEST",
        expires=datetime(2027, 1, 1, tzinfo=UTC),
    )
    out = stamped(bundle(INDICATOR), label)
    assert check_bundle(raw(out), label) == out
    marking = next(
        o for o in out["objects"] if o["id"] == out["objects"][0]["object_marking_refs"][1]
    )
    assert marking["extensions"][RELEASABILITY_EXTENSION_ID] == {
        "extension_type": "property-extension",
        "classification": "SECRET",
        "releasable_to": ["USA"],
        "caveats": ["CYBER-OPS"],
        "tlp": "RED",
        "originator": "GBR",
        "report_id": "r-0001",
        "policy": "TEARLINE-TEST",
        "expires": "2027-01-01T00:00:00Z",
    }
    assert (
        marking["name"] == "SECRET CYBER-OPS REL TO USA TLP:RED (Tearline report r-0001 from GBR)"
    )


def _json_blocks(markdown: str) -> list[Any]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", markdown, re.DOTALL)]


def test_the_document_shows_the_definitions_as_the_code_has_them() -> None:
    doc = (ROOT / "docs/stix-releasability.md").read_text()
    blocks = _json_blocks(doc)
    assert RELEASABILITY_EXTENSION in blocks
    assert TEARLINE_IDENTITY in blocks
    example = next(b for b in blocks if b.get("type") == "marking-definition")
    label = Label("CONFIDENTIAL", ["USA", "EST"], "AMBER", topics=["ransomware"])
    out = stamp(
        bundle(INDICATOR),
        label=label,
        originator="GBR",
        report_id="5b8f7d0e-3c2a-4e6f-9a1b-0c7d2e4f6a81",
        created=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    )
    assert example in out["objects"]
    fields = set(example["extensions"][RELEASABILITY_EXTENSION_ID]) | {"caveats", "policy"}
    for name in fields | {"expires"}:
        assert f"`{name}`" in doc, name
    assert set(OFFICIAL_TLP) >= set(TLP2_MARKING_IDS.values())


def test_without_the_cti_extra_the_shape_and_markings_are_still_checked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "stix2validator", None)  # import fails, as if not installed
    with pytest.raises(StixError) as info:
        check_bundle(raw(bundle(marked(INDICATOR, RED))), AMBER_LABEL)
    assert info.value.code == "stix_marking_conflict"
    lone = {**INDICATOR, "object_marking_refs": RED}  # not a list: the validator would say so
    with pytest.raises(StixError) as info:
        check_bundle(raw(bundle(lone)), AMBER_LABEL)
    assert info.value.code == "stix_marking_conflict"
    with pytest.raises(StixError):
        check_bundle(raw(bundle(without(INDICATOR, "id"))), AMBER_LABEL)
    bad_time = bundle({**INDICATOR, "created": "yesterday"})
    with caplog.at_level(logging.WARNING, logger="tearline.client"):
        assert check_bundle(raw(bad_time), AMBER_LABEL) == bad_time
    assert "pip install 'tearline[cti]'" in caplog.text


# --- what stamping and sharing leave out (pure; the gateway's attack tests run them end to end) --


#: A TLP:CLEAR marking-definition of the sender's own (the STIX 2.1 form, under its own id).
LAX_TLP_DEFINITION: dict[str, Any] = {
    **FORGED_TLP_DEFINITION,
    "id": "marking-definition--6d2f1c1e-3b7a-4c8e-9f10-2a3b4c5d6e7f",
    "definition": {"tlp": "white"},
}


def _forged_releasability() -> dict[str, Any]:
    label = Label("UNCLASSIFIED", ["USA", "EST", "DEU"], "CLEAR")
    return releasability_marking(label=label, originator="GBR", report_id="r-forged")


@pytest.mark.parametrize(
    ("objects", "codes"),
    [
        pytest.param([granular(INDICATOR, CLEAR, "pattern")], [], id="granular-clear"),
        pytest.param(
            [granular(INDICATOR, "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9")],
            [],
            id="granular-tlp1-white",
        ),
        pytest.param(
            [marked(INDICATOR, _forged_releasability()["id"]), _forged_releasability()],
            ["tearline_marking"],
            id="forged-releasability",
        ),
        pytest.param(
            [granular(INDICATOR, LAX_TLP_DEFINITION["id"]), LAX_TLP_DEFINITION],
            ["superseded_marking"],
            id="own-definition-of-a-laxer-tlp",
        ),
        pytest.param(
            [marked(INDICATOR, "marking-definition--00000000-0000-4000-8000-000000000000")],
            [],
            id="reference-to-an-undefined-marking",
        ),
        pytest.param(
            [{**MALWARE, "object_marking_refs": 5}, INDICATOR],
            ["malformed_markings"],
            id="malformed-refs-left-out-alone",
        ),
        pytest.param(
            [{**MALWARE, "granular_markings": [{"selectors": ["name"]}]}, INDICATOR],
            ["malformed_markings"],
            id="malformed-granular-left-out-alone",
        ),
        pytest.param(["indicator--x", INDICATOR], ["not_an_object"], id="not-an-object"),
    ],
)
def test_stamping_keeps_only_what_the_label_allows(objects: list[Any], codes: list[str]) -> None:
    out = stamp_report(bundle(*objects), label=AMBER_LABEL, originator="GBR", report_id="r-0001")
    assert [r.code for r in out.removed] == codes
    genuine = releasability_marking(label=AMBER_LABEL, originator="GBR", report_id="r-0001")
    (stamped_indicator,) = [o for o in out.bundle["objects"] if o["id"] == INDICATOR["id"]]
    assert stamped_indicator["object_marking_refs"] == [AMBER, genuine["id"]]
    assert "granular_markings" not in stamped_indicator
    ids = {o["id"] for o in out.bundle["objects"] if isinstance(o, dict)}
    assert MALWARE["id"] not in ids  # only ever in the malformed cases: left out
    assert _forged_releasability()["id"] not in ids
    assert LAX_TLP_DEFINITION["id"] not in ids
    assert check_bundle(raw(out.bundle), AMBER_LABEL) == out.bundle
    shared = mark_for_sharing(bundle(*objects), AMBER_LABEL)
    (to_share,) = [o for o in shared.bundle["objects"] if o["id"] == INDICATOR["id"]]
    assert to_share["object_marking_refs"] == [AMBER]
    assert {o["id"] for o in shared.bundle["objects"]} <= {INDICATOR["id"], AMBER}


def test_a_stricter_granular_marking_stays() -> None:
    out = stamp_report(
        bundle(granular(INDICATOR, RED, "pattern")),
        label=AMBER_LABEL,
        originator="GBR",
        report_id="r-0001",
    )
    assert out.bundle["objects"][0]["granular_markings"] == [
        {"marking_ref": RED, "selectors": ["pattern"]}
    ]
    assert tlp_of_object(out.bundle["objects"][0]) == "RED"
