"""Attacks on the gateway (issue 16, items 10 and 12 to 15), against real gateways in front of a
real broker (tests/gateway/conftest.py), read with taxii2-client or plain HTTP: a ``next``
cursor past SQLite's integers, markings that claim more than the verified label (a granular
TLP:CLEAR, a forged Tearline releasability marking), one malformed object in a report, the
recall of one of two reports that hold an object, and a ``Host`` the gateway is not.

Each asserts the refusal or the result, and that nothing was stored or served that should not
be: what the recipient's gateway serves, what the sender's gateway keeps as its local copy, and
the raw report a recipient without a gateway (EST) opens."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from taxii2client.v21 import Collection, Status

from tearline.broker.runner import broker_in_thread
from tearline.clients.partner import Report
from tearline.clients.protocol.label import Label
from tearline.clients.stix import (
    RELEASABILITY_EXTENSION,
    RELEASABILITY_EXTENSION_ID,
    TEARLINE_IDENTITY,
    TEARLINE_IDENTITY_ID,
    TLP1_MARKING_IDS,
    TLP2_EXTENSION_ID,
    TLP2_MARKING_IDS,
    releasability_marking,
)
from tearline.clients.stix.markings import tlp2_marking_definition
from tearline.clients.sync import Partner
from tearline.gateway.app import create_app
from tearline.gateway.taxii import MAX_SEQ, MEDIA_TYPE_TAXII, Filter, collection_id
from tests.gateway.conftest import (
    PASSWORD,
    SHARE_EST,
    SHARE_USA,
    Gateways,
    bundle,
    gateway_config,
    indicator,
    manifest_ids,
    wait_for,
)
from tests.integration.conftest import PARTNERS, me

TAXII = {"Accept": MEDIA_TYPE_TAXII}
TO_USA = Label("RESTRICTED", ["USA"], "GREEN", topics=["apt"])
CLEAR = TLP2_MARKING_IDS["CLEAR"]
RED = TLP2_MARKING_IDS["RED"]
WHITE = next(r for r, level in TLP1_MARKING_IDS.items() if level == "CLEAR")
#: The Tearline objects that are not marked themselves.
UNMARKED = {"marking-definition", "extension-definition"}


# --- helpers ----------------------------------------------------------------------------------


def objects_url(gw: Gateways, partner: str, name: str) -> str:
    return f"{gw.root(partner)}collections/{collection_id(partner, name)}/objects/"


def served(gw: Gateways, partner: str, name: str, object_id: str) -> dict[str, Any] | None:
    """The object as the gateway serves it (its latest version), or None when it is not."""
    with httpx.Client(auth=("siem", PASSWORD), timeout=10) as client:
        r = client.get(f"{objects_url(gw, partner, name)}{object_id}/", headers=TAXII)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    (obj,) = r.json()["objects"]
    assert isinstance(obj, dict)
    return obj


def every_object(gw: Gateways, partner: str, name: str = "received") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    with httpx.Client(auth=("siem", PASSWORD), timeout=10) as client:
        while True:
            r = client.get(objects_url(gw, partner, name), params=params, headers=TAXII)
            r.raise_for_status()
            body = r.json()
            out += body.get("objects", [])
            if not body["more"]:
                return out
            params = {"next": body["next"]}


def post(gw: Gateways, name: str, objects: list[Any]) -> Status:
    """A local user (siem) adds ``objects`` to GBR's writable collection ``name``."""
    url = f"{gw.root('GBR')}collections/{collection_id('GBR', name)}/"
    status = Collection(url, user="siem", password=PASSWORD).add_objects(
        {"objects": objects}, wait_for_completion=False
    )
    assert status.status == "complete", status._raw
    return status


def report_of(status: Status) -> str:
    """The report id the status names for what was published."""
    found = re.search(r"published in report (\S+) to ", status.successes[0]["message"])
    assert found is not None, status._raw
    return found.group(1)


def publish_direct(gw: Gateways, objects: list[Any], label: Label = TO_USA,
                   *, unchecked: bool = False) -> str:  # fmt: skip
    """GBR's own SDK straight to the broker, past GBR's gateway: what another partner's node
    may send whatever its gateway would have done."""
    with Partner(gw.broker.url, me("GBR")) as gbr:
        return gbr.publish(bundle(objects), label, unsafe_skip_stix_checks=unchecked).id


def marking_id(label: Label, report_id: str) -> str:
    """The id of the genuine releasability marking of GBR's report ``report_id``."""
    return str(releasability_marking(label=label, originator="GBR", report_id=report_id)["id"])


def arrived(gw: Gateways, partner: str, object_id: str, name: str = "received") -> None:
    wait_for(lambda: object_id in manifest_ids(gw, partner, name), what=f"{object_id} at {partner}")


def est_opens(gw: Gateways, report_id: str) -> dict[str, Any]:
    """The bundle of GBR's report ``report_id`` as EST (no gateway) opens it, unstamped: what
    GBR's gateway actually sent."""
    found: dict[str, Any] = {}
    with Partner(gw.broker.url, me("EST")) as est:

        def look() -> bool:
            for item in est.inbox(wait_s=1, limit=50):
                if isinstance(item, Report) and item.id == report_id:
                    found.update(item.stix(stamped=False))
                item.ack()
            return bool(found)

        wait_for(look, what=f"report {report_id} at EST")
    return found


def assert_label_only(obj: dict[str, Any] | None, label: Label, report_id: str) -> None:
    """Marked with exactly the label's TLP and the report's genuine releasability marking."""
    assert obj is not None
    assert obj["object_marking_refs"] == [TLP2_MARKING_IDS[label.tlp], marking_id(label, report_id)]
    assert "granular_markings" not in obj


def assert_shared_with_label_only(raw: dict[str, Any], target: str, label: Label) -> None:
    """The raw report as sent: the target marked with the label's TLP only, no Tearline object
    and no TLP marking-definition but the label's."""
    by_id = {o["id"]: o for o in raw["objects"]}
    assert by_id[target]["object_marking_refs"] == [TLP2_MARKING_IDS[label.tlp]]
    assert "granular_markings" not in by_id[target]
    for obj in raw["objects"]:
        assert obj["id"] not in (TEARLINE_IDENTITY_ID, RELEASABILITY_EXTENSION_ID)
        assert obj.get("created_by_ref") != TEARLINE_IDENTITY_ID
        assert RELEASABILITY_EXTENSION_ID not in obj.get("extensions", {})
        if obj["type"] == "marking-definition":
            assert obj == tlp2_marking_definition(label.tlp)


def granular(obj: dict[str, Any], ref: str, *selectors: str) -> dict[str, Any]:
    marks = [*obj.get("granular_markings", []), {"marking_ref": ref, "selectors": list(selectors)}]
    return {**obj, "granular_markings": marks}


# --- 10: a cursor past SQLite's integers -----------------------------------------------------


def _next(seq: str, endpoint: str, cid: str, object_id: str = "") -> str:
    from tearline.clients.protocol.encoding import b64e

    return b64e(f"{seq}.{Filter().fingerprint(f'{endpoint}:{cid}:{object_id}')}".encode())


#: (endpoint, the parameter, its value or a cursor to put in a valid-looking token, status).
CURSOR_CASES = [
    pytest.param("objects", "next", "9223372036854775808", 400, id="next-2^63"),
    pytest.param("objects", "next", "18446744073709551615", 400, id="next-2^64-1"),
    pytest.param("objects", "next", "1" + "0" * 30, 400, id="next-10^30"),
    pytest.param("manifest", "next", "9223372036854775808", 400, id="manifest-next-2^63"),
    pytest.param("object", "next", "9223372036854775808", 400, id="object-next-2^63"),
    pytest.param("versions", "next", "9223372036854775808", 400, id="versions-next-2^63"),
    pytest.param("objects", "next", "-1", 400, id="next-negative"),
    pytest.param("objects", "next", "+5", 400, id="next-plus-sign"),
    pytest.param("objects", "next", "1_000", 400, id="next-underscore"),
    pytest.param("objects", "next", str(MAX_SEQ), 200, id="next-2^63-1-is-the-last-cursor"),
    pytest.param("objects", "limit", str(2**63), 400, id="limit-2^63"),
    pytest.param("objects", "limit", "1" + "0" * 30, 400, id="limit-10^30"),
    pytest.param(
        "objects",
        "added_after",
        "9999-12-31T23:59:59.999999999Z",
        200,
        id="added_after-the-last-instant",
    ),
    pytest.param("objects", "added_after", "0000-01-01T00:00:00Z", 400, id="added_after-year-0"),
    pytest.param(
        "objects", "added_after", "99999-01-01T00:00:00Z", 400, id="added_after-five-digit-year"
    ),
    pytest.param(
        "objects",
        "match[version]",
        "9999-12-31T23:59:59.999999Z",
        200,
        id="match-version-the-last-instant",
    ),
    pytest.param(
        "objects",
        "match[version]",
        "0001-01-01T00:00:00Z",
        200,
        id="match-version-the-first-instant",
    ),
    pytest.param(
        "objects", "match[version]", "2026-13-01T00:00:00Z", 400, id="match-version-month-13"
    ),
]


@pytest.fixture(scope="module")
def at_usa(gateways: Gateways) -> dict[str, Any]:
    """An object in USA's ``received``."""
    obj = indicator("cursor")
    publish_direct(gateways, [obj])
    arrived(gateways, "USA", obj["id"])
    return obj


@pytest.mark.parametrize(("endpoint", "name", "value", "status"), CURSOR_CASES)
def test_cursor_overflow_attack_is_a_400(
    gateways: Gateways, at_usa: dict[str, Any], endpoint: str, name: str, value: str, status: int
) -> None:
    obj = at_usa
    cid = collection_id("USA", "received")
    path = {"objects": "objects/", "manifest": "manifest/", "object": f"objects/{obj['id']}/",
            "versions": f"objects/{obj['id']}/versions/"}[endpoint]  # fmt: skip
    url = f"{gateways.root('USA')}collections/{cid}/{path}"
    one = obj["id"] if endpoint in ("object", "versions") else ""
    sent = _next(value, endpoint, cid, one) if name == "next" else value
    with httpx.Client(auth=("siem", PASSWORD), timeout=10) as client:
        r = client.get(url, params={name: sent}, headers=TAXII)
        control = client.get(url, headers=TAXII)
    assert control.status_code == 200  # the same request without it is served
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE_TAXII
    body = r.json()
    if status == 400:  # a TAXII error message, with a code, naming what to do; nothing served
        assert body["http_status"] == "400"
        assert body["error_code"] in ("invalid_next", "invalid_parameter")
        assert "Traceback" not in r.text
        assert "objects" not in body
        assert "versions" not in body
    else:  # past every row: an empty page, not an error
        assert body["more"] is False
        assert obj["id"] not in r.text or name == "match[version]"


# --- 12: markings that claim more than the verified label --------------------------------------


def _own_clear_definition() -> dict[str, Any]:
    """A TLP:CLEAR marking-definition under an id of the sender's own (the TLP 2.0 shape)."""
    return {
        "type": "marking-definition", "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}", "created": "2026-01-01T00:00:00.000Z",
        "name": "TLP:CLEAR",
        "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension",
                                           "tlp_2_0": "clear"}},
    }  # fmt: skip


def _granular_tlp2_clear() -> list[Any]:
    return [granular(indicator(), CLEAR, "pattern"), tlp2_marking_definition("CLEAR")]


def _granular_tlp1_white() -> list[Any]:
    return [granular(indicator(), WHITE, "pattern")]


def _granular_own_clear() -> list[Any]:
    own = _own_clear_definition()
    return [granular(indicator(), own["id"], "pattern", "name"), own]


def _granular_and_object_level_clear() -> list[Any]:
    obj = {**indicator(), "object_marking_refs": [CLEAR]}
    return [granular(granular(obj, CLEAR, "pattern"), WHITE, "name")]


GRANULAR_CASES = [
    pytest.param(_granular_tlp2_clear, id="granular-tlp2-clear-on-pattern"),
    pytest.param(_granular_tlp1_white, id="granular-tlp1-white-on-pattern"),
    pytest.param(_granular_own_clear, id="granular-clear-of-its-own-definition"),
    pytest.param(_granular_and_object_level_clear, id="granular-and-object-level-clear"),
]


@pytest.mark.parametrize("build", GRANULAR_CASES)
def test_granular_clear_marking_downgrade_attack(
    gateways: Gateways, build: Callable[[], list[Any]]
) -> None:
    # 1. A local user posts it to GBR's gateway, to a collection shared as TLP:GREEN: the
    #    indicator is shared (with the label's TLP only), the CLEAR definition is not.
    objs = build()
    target = objs[0]["id"]
    status = post(gateways, "share-usa", objs)
    assert [s["id"] for s in status.successes] == [target]
    for failure in status.failures:  # only definitions the label's TLP supersedes
        assert failure["message"].startswith("superseded_marking: TLP:CLEAR"), failure
    rid = report_of(status)
    arrived(gateways, "USA", target)
    assert_label_only(served(gateways, "USA", "received", target), SHARE_USA, rid)
    assert_label_only(served(gateways, "GBR", "share-usa", target), SHARE_USA, rid)
    at_usa = manifest_ids(gateways, "USA")
    for definition in objs[1:]:
        if definition["id"] not in TLP2_MARKING_IDS.values():  # ones of the sender's own
            assert definition["id"] not in at_usa

    # 2. What GBR's gateway sends, as a recipient with no gateway opens it (TLP:AMBER).
    objs = build()
    rid = report_of(post(gateways, "share-est", objs))
    assert_shared_with_label_only(est_opens(gateways, rid), objs[0]["id"], SHARE_EST)

    # 3. A node that sends it past any gateway (the SDK's checks refuse only stricter
    #    markings): USA's gateway keeps only what the verified label says.
    objs = build()
    rid = publish_direct(gateways, objs)
    arrived(gateways, "USA", objs[0]["id"])
    assert_label_only(served(gateways, "USA", "received", objs[0]["id"]), TO_USA, rid)
    for definition in objs[1:]:
        if definition["id"] not in TLP2_MARKING_IDS.values():
            assert definition["id"] not in manifest_ids(gateways, "USA")


@pytest.fixture(scope="module")
def genuine(gateways: Gateways) -> dict[str, Any]:
    """The releasability marking of a genuine report GBR sent USA, as USA's gateway serves it."""
    obj = indicator("genuine")
    rid = publish_direct(gateways, [obj])
    arrived(gateways, "USA", obj["id"])
    found = served(gateways, "USA", "received", marking_id(TO_USA, rid))
    assert found is not None
    return found


def _forgery(marking_id: str | None = None) -> dict[str, Any]:
    """A Tearline releasability marking as a sender can write one: REL TO everyone, TLP:CLEAR,
    originator GBR."""
    label = Label("UNCLASSIFIED", sorted(PARTNERS), "CLEAR")
    forged = releasability_marking(label=label, originator="GBR", report_id=str(uuid.uuid4()))
    return {**forged, "id": marking_id} if marking_id else forged


def _forged_definition_and_ref(genuine: dict[str, Any]) -> list[Any]:
    forged = _forgery()
    return [{**indicator(), "object_marking_refs": [forged["id"]]}, forged]


def _forged_definition_on_pattern(genuine: dict[str, Any]) -> list[Any]:
    forged = _forgery()
    return [granular(indicator(), forged["id"], "pattern"), forged]


def _forgery_under_a_genuine_id(genuine: dict[str, Any]) -> list[Any]:
    forged = _forgery(genuine["id"])
    return [{**indicator(), "object_marking_refs": [forged["id"]]}, forged]


def _reference_to_another_reports_marking(genuine: dict[str, Any]) -> list[Any]:
    return [{**indicator(), "object_marking_refs": [genuine["id"]]}]


def _statement_by_the_tearline_identity(genuine: dict[str, Any]) -> list[Any]:
    statement = {
        "type": "marking-definition", "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}", "created": "2026-01-01T00:00:00.000Z",
        "created_by_ref": TEARLINE_IDENTITY_ID, "definition_type": "statement",
        "definition": {"statement": "Tearline: REL TO everyone, TLP:CLEAR"},
    }  # fmt: skip
    return [{**indicator(), "object_marking_refs": [statement["id"]]}, statement]


def _forged_tearline_objects(genuine: dict[str, Any]) -> list[Any]:
    forged = _forgery()
    return [
        {**indicator(), "object_marking_refs": [forged["id"]]},
        forged,
        {**RELEASABILITY_EXTENSION, "description": "REL TO everyone, whatever the label says"},
        {**TEARLINE_IDENTITY, "description": "Tearline says: share freely"},
    ]


FORGED_CASES = [
    pytest.param(_forged_definition_and_ref, id="forged-definition-and-reference"),
    pytest.param(_forged_definition_on_pattern, id="forged-definition-as-granular-marking"),
    pytest.param(_forgery_under_a_genuine_id, id="forgery-under-a-genuine-markings-id"),
    pytest.param(_reference_to_another_reports_marking, id="reference-to-another-reports-marking"),
    pytest.param(_statement_by_the_tearline_identity, id="statement-by-the-tearline-identity"),
    pytest.param(_forged_tearline_objects, id="forged-extension-and-identity"),
]


def _nothing_forged_at_usa(gw: Gateways, objs: list[Any], genuine: dict[str, Any]) -> None:
    """No forged definition stored; the genuine marking, extension and identity unchanged."""
    held = manifest_ids(gw, "USA")
    for obj in objs[1:]:
        if obj["id"] not in (genuine["id"], TEARLINE_IDENTITY_ID, RELEASABILITY_EXTENSION_ID):
            assert obj["id"] not in held
    assert served(gw, "USA", "received", genuine["id"]) == genuine
    assert served(gw, "USA", "received", TEARLINE_IDENTITY_ID) == TEARLINE_IDENTITY
    assert served(gw, "USA", "received", RELEASABILITY_EXTENSION_ID) == RELEASABILITY_EXTENSION


@pytest.mark.parametrize("build", FORGED_CASES)
def test_forged_releasability_marking_attack(
    gateways: Gateways, genuine: dict[str, Any], build: Callable[[dict[str, Any]], list[Any]]
) -> None:
    # 1. Posted by a local user to GBR's gateway: the indicator is shared, the Tearline
    #    objects are not (each a failure naming why), and USA serves the genuine marking only.
    objs = build(genuine)
    target = objs[0]["id"]
    status = post(gateways, "share-usa", objs)
    assert [s["id"] for s in status.successes] == [target]
    assert {f["id"] for f in status.failures} == {o["id"] for o in objs[1:]}
    for failure in status.failures:
        assert failure["message"].startswith("tearline_marking: "), failure
    rid = report_of(status)
    arrived(gateways, "USA", target)
    assert_label_only(served(gateways, "USA", "received", target), SHARE_USA, rid)
    assert_label_only(served(gateways, "GBR", "share-usa", target), SHARE_USA, rid)
    _nothing_forged_at_usa(gateways, objs, genuine)

    # 2. What GBR's gateway sends: no Tearline marking at all.
    objs = build(genuine)
    rid = report_of(post(gateways, "share-est", objs))
    assert_shared_with_label_only(est_opens(gateways, rid), objs[0]["id"], SHARE_EST)

    # 3. Sent past any gateway (it passes the sender's SDK checks): USA's gateway stamps the
    #    verified label's marking and drops the forgery.
    objs = build(genuine)
    rid = publish_direct(gateways, objs)
    arrived(gateways, "USA", objs[0]["id"])
    assert_label_only(served(gateways, "USA", "received", objs[0]["id"]), TO_USA, rid)
    _nothing_forged_at_usa(gateways, objs, genuine)


# --- 13: one malformed object in a report ----------------------------------------------------


MALFORMED_CASES = [
    pytest.param({**indicator(), "object_marking_refs": 5}, id="refs-a-number"),
    pytest.param({**indicator(), "object_marking_refs": {"tlp": RED}}, id="refs-an-object"),
    pytest.param({**indicator(), "object_marking_refs": RED}, id="refs-a-lone-string"),
    pytest.param({**indicator(), "object_marking_refs": [RED, 5]}, id="refs-holding-a-number"),
    pytest.param({**indicator(), "granular_markings": "pattern"}, id="granular-a-string"),
    pytest.param(
        {**indicator(), "granular_markings": [{"selectors": ["pattern"]}]},
        id="granular-without-marking-ref-or-lang",
    ),
    pytest.param(
        {**indicator(), "granular_markings": [{"marking_ref": RED, "selectors": [1]}]},
        id="granular-selectors-not-strings",
    ),
    pytest.param({**indicator(), "granular_markings": [RED]}, id="granular-entry-a-string"),
    pytest.param(f"indicator--{uuid.uuid4()}", id="an-id-instead-of-an-object"),
    pytest.param({"type": "indicator", "id": [f"indicator--{uuid.uuid4()}"]}, id="id-a-list"),
]


@pytest.mark.parametrize("malformed", MALFORMED_CASES)
def test_one_malformed_object_does_not_unmark_the_report(
    gateways: Gateways, malformed: Any
) -> None:
    good = [indicator("m1"), indicator("m2")]
    rid = publish_direct(gateways, [good[0], malformed, good[1]], unchecked=True)
    for obj in good:
        arrived(gateways, "USA", obj["id"])
        assert_label_only(served(gateways, "USA", "received", obj["id"]), TO_USA, rid)
        assert_label_only(served(gateways, "USA", "from-GBR", obj["id"]), TO_USA, rid)
    if isinstance(malformed, dict) and isinstance(malformed.get("id"), str):
        assert served(gateways, "USA", "received", malformed["id"]) is None  # dropped, alone
    # Nothing the gateway holds is unmarked: every object carries a TLP 2.0 marking and a
    # releasability marking the collection defines (but the definitions and Tearline's identity).
    everything = every_object(gateways, "USA")
    releasability = {
        o["id"] for o in everything if RELEASABILITY_EXTENSION_ID in o.get("extensions", {})
    }
    for obj in everything:
        if obj["type"] in UNMARKED or obj["id"] == TEARLINE_IDENTITY_ID:
            continue
        refs = obj["object_marking_refs"]
        assert set(refs) & set(TLP2_MARKING_IDS.values()), obj["id"]
        assert set(refs) & releasability, obj["id"]


# --- 14: a recall of one of two reports holding an object --------------------------------------


def _to_usa(tlp: str) -> Label:
    return Label("RESTRICTED", ["USA"], tlp, topics=["apt"])


RECALL_CASES = [
    pytest.param("CLEAR", "RED", 0, id="clear-then-red-recall-clear"),
    pytest.param("RED", "CLEAR", 1, id="red-then-clear-recall-clear"),
    pytest.param("CLEAR", "RED", 1, id="clear-then-red-recall-red"),
    pytest.param("AMBER", "AMBER", 0, id="amber-twice-recall-the-first"),
]


@pytest.mark.parametrize(("first", "second", "recalled"), RECALL_CASES)
def test_recall_does_not_leave_a_shared_object_with_the_recalled_marking(
    gateways: Gateways, first: str, second: str, recalled: int
) -> None:
    shared = indicator("shared")  # the same id and version in both reports
    only = [indicator("only-first"), indicator("only-second")]
    labels = [_to_usa(first), _to_usa(second)]
    rids = [publish_direct(gateways, [shared, only[n]], labels[n]) for n in (0, 1)]
    for n in (0, 1):
        arrived(gateways, "USA", only[n]["id"])
    # Served as the most restrictive holder stamped it, the first among equals.
    strictest = 1 if labels[1].tlp == "RED" and labels[0].tlp != "RED" else 0
    assert_label_only(
        served(gateways, "USA", "received", shared["id"]), labels[strictest], rids[strictest]
    )
    with Partner(gateways.broker.url, me("GBR")) as gbr:
        gbr.recall(rids[recalled])
    gone = marking_id(labels[recalled], rids[recalled])
    wait_for(lambda: gone not in manifest_ids(gateways, "USA"), what="the recall at USA")
    kept = 1 - recalled
    for name in ("received", "from-GBR"):
        now = served(gateways, "USA", name, shared["id"])
        assert_label_only(now, labels[kept], rids[kept])  # the remaining report's stamp
        assert gone not in str(now)
        assert served(gateways, "USA", name, only[recalled]["id"]) is None
        assert_label_only(served(gateways, "USA", name, only[kept]["id"]), labels[kept], rids[kept])


# --- 15: Host header reflection -------------------------------------------------------------


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """GBR's gateway configured with a public URL and one more name (no broker needed)."""
    folder: Path = tmp_path_factory.mktemp("gateway-proxied")
    config = dataclasses.replace(
        gateway_config("GBR", "http://127.0.0.1:9", folder),
        public_url="https://taxii.gbr.example",
        names=("taxii-internal:9400",),
    )
    with broker_in_thread(create_app(config, me("GBR"), subscribe=False)) as served_:
        yield served_.url


#: (which gateway, the Host sent, other headers, status, the discovery "default" expected).
HOST_CASES = [
    pytest.param("plain", "evil.example", {}, 421, None, id="another-host"),
    pytest.param("plain", "evil.example:{port}", {}, 421, None, id="another-host-our-port"),
    pytest.param(
        "plain", "127.0.0.1.evil.example:{port}", {}, 421, None, id="our-address-as-a-prefix"
    ),
    pytest.param(
        "plain",
        "127.0.0.1:{port}",
        {"X-Forwarded-Host": "evil.example"},
        200,
        "http://127.0.0.1:{port}/tearline/",
        id="forwarded-host-ignored",
    ),
    pytest.param(
        "plain",
        "localhost:{port}",
        {},
        200,
        "http://localhost:{port}/tearline/",
        id="loopback-by-name",
    ),
    pytest.param("proxied", "evil.example", {}, 421, None, id="proxied-another-host"),
    pytest.param(
        "proxied",
        "taxii.gbr.example",
        {},
        200,
        "https://taxii.gbr.example/tearline/",
        id="proxied-public-name",
    ),
    pytest.param(
        "proxied",
        "taxii.gbr.example:443",
        {},
        200,
        "https://taxii.gbr.example/tearline/",
        id="proxied-public-name-default-port",
    ),
    pytest.param(
        "proxied",
        "taxii-internal:9400",
        {},
        200,
        "https://taxii.gbr.example/tearline/",
        id="proxied-configured-name",
    ),
    pytest.param(
        "proxied",
        "127.0.0.1:{port}",
        {},
        200,
        "https://taxii.gbr.example/tearline/",
        id="proxied-listening-address",
    ),
]


@pytest.mark.parametrize(("which", "host", "headers", "status", "default"), HOST_CASES)
def test_host_header_reflection_attack(
    gateways: Gateways,
    behind_proxy: str,
    which: str,
    host: str,
    headers: dict[str, str],
    status: int,
    default: str | None,
) -> None:
    base = gateways.url("GBR") if which == "plain" else behind_proxy
    port = base.rsplit(":", 1)[1]
    sent = {**TAXII, **headers, "Host": host.format(port=port)}
    paths = ["/taxii2/", "/tearline/", "/tearline/collections/"]
    with httpx.Client(base_url=base, auth=("siem", PASSWORD), timeout=10) as client:
        answers = [client.get(path, headers=sent) for path in paths]
        anonymous = client.get("/taxii2/", headers=sent, auth=None)
    for r in answers:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == MEDIA_TYPE_TAXII
        assert "evil" not in r.text  # nothing the request named is written into an answer
    if status == 421:
        body = answers[0].json()
        assert body["error_code"] == "misdirected_request"
        assert body["http_status"] == "421"
        assert anonymous.status_code == 421  # refused before credentials are even looked at
        return
    assert default is not None
    discovery = answers[0].json()
    assert discovery["default"] == default.format(port=port)  # from the configuration
    assert discovery["api_roots"] == [discovery["default"]]
