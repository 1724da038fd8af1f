"""MISP events in (clients.stix.misp): converted with misp-stix to a checked STIX 2.1 bundle,
their TLP tags held to the label's TLP."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tearline import Label, StixError
from tearline.clients.stix import check_bundle, tlp_of_object
from tearline.clients.stix.markings import tlp_definitions
from tearline.clients.stix.misp import bundle_from_misp, event_tlp, tlp_of_tag

EVENT_FILE = Path(__file__).parents[1] / "vectors/misp/event-tlp-amber.json"
EVENT: dict[str, Any] = json.loads(EVENT_FILE.read_text())


def label(tlp: str) -> Label:
    return Label("CONFIDENTIAL", ["USA"], tlp)


def tagged(*event_tags: str, attribute_tags: tuple[str, ...] = ()) -> dict[str, Any]:
    event = copy.deepcopy(EVENT)
    event["Event"]["Tag"] = [{"name": t} for t in event_tags]
    if attribute_tags:
        event["Event"]["Attribute"][1]["Tag"] = [{"name": t} for t in attribute_tags]
    return event


def test_the_example_event_converts_to_a_checked_marked_bundle() -> None:
    bundle = bundle_from_misp(EVENT_FILE.read_bytes(), label("AMBER"))
    assert check_bundle(json.dumps(bundle), label("AMBER")) == bundle
    by_type: dict[str, list[dict[str, Any]]] = {}
    for obj in bundle["objects"]:
        by_type.setdefault(obj["type"], []).append(obj)
    patterns = sorted(i["pattern"] for i in by_type["indicator"])
    assert patterns == [
        "[domain-name:value = 'c2.example.invalid']",
        "[network-traffic:dst_ref.type = 'ipv4-addr' AND "
        "network-traffic:dst_ref.value = '198.51.100.23']",
    ]
    # The event's tlp:amber is on the grouping that stands for the event, as misp-stix marks it.
    (grouping,) = by_type["grouping"]
    assert tlp_of_object(grouping, tlp_definitions(bundle["objects"])) == "AMBER"
    assert grouping["name"] == EVENT["Event"]["info"]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(EVENT, id="dict"),
        pytest.param(EVENT["Event"], id="bare-event"),
        pytest.param(json.dumps(EVENT), id="str"),
        pytest.param(json.dumps(EVENT).encode(), id="bytes"),
    ],
)
def test_the_event_may_come_as_misp_exports_it_or_bare(given: Any) -> None:
    assert bundle_from_misp(given, label("RED"))["type"] == "bundle"


TAGS = [
    ("tlp:white", "CLEAR"),
    ("tlp:clear", "CLEAR"),
    ("tlp:green", "GREEN"),
    ("tlp:amber", "AMBER"),
    ("tlp:amber+strict", "AMBER+STRICT"),
    ("tlp:red", "RED"),
    ("TLP:RED", "RED"),
    (" tlp: amber ", "AMBER"),
    ('tlp:"red"', "RED"),
    ("tlp:ex:chr", None),
    ("tlp:unclear", None),
    ("ransomware", None),
    ('misp-galaxy:threat-actor="APT28"', None),
    ("", None),
]


@pytest.mark.parametrize(("tag", "level"), TAGS, ids=[t or "empty" for t, _ in TAGS])
def test_tlp_tags_map_to_tlp_levels(tag: str, level: str | None) -> None:
    assert tlp_of_tag(tag) == level


REFUSED = [
    pytest.param(tagged("tlp:red"), "AMBER", "TLP:RED", id="red-event-amber-label"),
    pytest.param(
        tagged("tlp:amber+strict"), "AMBER", "TLP:AMBER+STRICT", id="strict-event-amber-label"
    ),
    pytest.param(tagged("tlp:amber"), "GREEN", "TLP:AMBER", id="amber-event-green-label"),
    pytest.param(tagged("tlp:green"), "CLEAR", "TLP:GREEN", id="green-event-clear-label"),
    pytest.param(
        tagged("tlp:green", attribute_tags=("tlp:red",)),
        "AMBER",
        "TLP:RED",
        id="one-attribute-tagged-red",
    ),
    pytest.param(
        tagged("tlp:clear", "tlp:red"), "AMBER", "TLP:RED", id="the-most-restrictive-tag-counts"
    ),
]


@pytest.mark.parametrize(("event", "tlp", "marking"), REFUSED)
def test_a_label_less_restrictive_than_the_events_tags_is_refused(
    event: dict[str, Any], tlp: str, marking: str
) -> None:
    with pytest.raises(StixError) as info:
        bundle_from_misp(event, label(tlp))
    assert info.value.code == "stix_marking_conflict"
    assert marking in {o["marking"] for o in info.value.details["objects"]}
    assert f"TLP:{tlp}" in info.value.message
    assert event_tlp(event) == marking.removeprefix("TLP:")


ACCEPTED = [
    pytest.param(tagged("tlp:white"), "CLEAR", id="white-is-clear"),
    pytest.param(tagged("tlp:clear"), "CLEAR", id="clear"),
    pytest.param(tagged("tlp:amber"), "AMBER+STRICT", id="stricter-label"),
    pytest.param(tagged("tlp:amber+strict"), "AMBER+STRICT", id="amber-strict"),
    pytest.param(tagged("tlp:red"), "RED", id="red"),
    pytest.param(tagged(), "CLEAR", id="no-tlp-tag"),
    pytest.param(tagged("tlp:ex:chr"), "CLEAR", id="a-tlp-tag-beyond-the-five-levels"),
]


@pytest.mark.parametrize(("event", "tlp"), ACCEPTED)
def test_a_label_at_least_as_restrictive_as_the_tags_converts(
    event: dict[str, Any], tlp: str
) -> None:
    bundle = bundle_from_misp(event, label(tlp))
    assert check_bundle(json.dumps(bundle), label(tlp)) == bundle


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(b"Event: phishing wave\n", id="a-text-file"),
        pytest.param(b'{"Event": ', id="truncated-json"),
        pytest.param({"type": "bundle", "objects": []}, id="a-stix-bundle"),
        pytest.param([EVENT], id="a-list"),
    ],
)
def test_what_is_not_a_misp_event_is_refused(event: Any) -> None:
    with pytest.raises(StixError) as info:
        bundle_from_misp(event, label("RED"))
    assert info.value.code == "invalid_misp"
    assert info.value.details["findings"]


PUBLISHED_EXAMPLE = Path(__file__).parents[1] / "vectors/misp/misp-stix-event-with-tags.json"


def test_misp_stixs_published_event_with_tags_converts_with_its_tlp_white_marking() -> None:
    # tlp:white is TLP:CLEAR: any label is at least as restrictive, CLEAR itself included. The
    # event is not published, so misp-stix makes a grouping of it (its documentation shows a
    # report for this example, and a grouping for an unpublished event in the one before).
    bundle = bundle_from_misp(PUBLISHED_EXAMPLE.read_bytes(), label("CLEAR"))
    types = sorted(o["type"] for o in bundle["objects"])
    assert types == ["grouping", "identity", "marking-definition", "note"]
    (report,) = (o for o in bundle["objects"] if o["type"] == "grouping")
    assert report["name"] == "MISP-STIX-Converter test event"
    assert tlp_of_object(report, tlp_definitions(bundle["objects"])) == "CLEAR"
    assert 'misp-galaxy:mitre-attack-pattern="Code Signing - T1116"' in report["labels"]
    assert check_bundle(json.dumps(bundle), label("CLEAR")) == bundle
