"""`tearline gateway` end to end: the OASIS TAXII 2.1 client (taxii2-client), as it is, against
real gateways (real uvicorn) in front of a real broker."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tearline.clients.protocol.label import Label
from tearline.clients.stix import TLP2_MARKING_IDS
from tearline.clients.sync import Partner
from tearline.gateway.taxii import MEDIA_TYPE_TAXII, collection_id, parse_timestamp
from tests.gateway.conftest import (
    PASSWORD,
    READER_PASSWORD,
    TOKEN,
    Gateways,
    bundle,
    indicator,
    manifest_ids,
    wait_for,
)
from tests.integration.conftest import me

TO_USA = Label("RESTRICTED", ["USA"], "GREEN", topics=["apt"])


def collection(gw: Gateways, partner: str, name: str) -> Collection:
    url = f"{gw.root(partner)}collections/{collection_id(partner, name)}/"
    return Collection(url, user="siem", password=PASSWORD)


def publish_from_gbr(gw: Gateways, objects: list[dict[str, Any]]) -> str:
    with Partner(gw.broker.url, me("GBR")) as gbr:
        return gbr.publish(bundle(objects), TO_USA).id


def test_discovery_api_root_and_collections(gateways: Gateways) -> None:
    server = Server(f"{gateways.url('GBR')}/taxii2/", user="siem", password=PASSWORD)
    assert server.title == "Tearline gateway"
    (root,) = server.api_roots
    assert root.url == gateways.root("GBR")
    assert server.default is not None
    assert root.versions == [MEDIA_TYPE_TAXII]
    assert root.max_content_length == 256 * 1024
    by_alias = {c.alias: c for c in root.collections}
    assert {"received", "share-usa", "share-deu"} <= set(by_alias)
    assert by_alias["received"].id == collection_id("GBR", "received")  # stable
    assert by_alias["received"].can_read
    assert not by_alias["received"].can_write
    assert by_alias["share-usa"].can_write
    reader = ApiRoot(gateways.root("GBR"), user="reader", password=READER_PASSWORD)
    assert [c.alias for c in reader.collections] == ["received"]


def _more_than(items: list[str], n: int) -> Callable[[], bool]:
    return lambda: len(items) > n


def test_paging_while_reports_arrive_skips_and_repeats_nothing(gateways: Gateways) -> None:
    first = [indicator(f"p{i}") for i in range(120)]
    for i in range(0, 120, 30):
        publish_from_gbr(gateways, first[i : i + 30])
    wanted = {o["id"] for o in first}
    wait_for(lambda: wanted <= manifest_ids(gateways, "USA"), what="the first reports at USA")
    before = manifest_ids(gateways, "USA")

    stop = threading.Event()
    later: list[str] = []

    def keep_publishing() -> None:
        with Partner(gateways.broker.url, me("GBR")) as gbr:
            while not stop.is_set():
                objs = [indicator("late") for _ in range(5)]
                gbr.publish(bundle(objs), TO_USA)
                later.extend(o["id"] for o in objs)

    publisher = threading.Thread(target=keep_publishing)
    publisher.start()
    seen: list[str] = []
    pages = 0
    try:
        received = collection(gateways, "USA", "received")
        for envelope in as_pages(received.get_objects, per_request=13):
            seen += [o["id"] for o in envelope.get("objects", [])]
            pages += 1
            # Between two pages, at least one more report is published (and soon stored).
            wait_for(_more_than(later, len(later)), what="a report published meanwhile")
    finally:
        stop.set()
        publisher.join()
    assert pages >= len(before) // 13
    assert len(seen) == len(set(seen)), "an object came twice"
    assert before <= set(seen), "an object stored before paging began was skipped"
    # What else was seen came in the reports published meanwhile (with their markings).
    assert {i for i in set(seen) - before if i.startswith("indicator--")} <= set(later)
    assert set(seen) & set(later), "no report stored while paging reached the pages"


def test_added_after_match_type_manifest_and_object_by_id(gateways: Gateways) -> None:
    objs = [indicator("f1"), indicator("f2")]
    malware = {"type": "malware", "spec_version": "2.1", "id": f"malware--{objs[0]['id'][11:]}",
               "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
               "name": "x", "is_family": False}  # fmt: skip
    publish_from_gbr(gateways, [*objs, malware])
    wait_for(lambda: malware["id"] in manifest_ids(gateways, "USA"), what="the report at USA")
    received = collection(gateways, "USA", "received")

    types = received.get_objects(type="malware")
    assert malware["id"] in [o["id"] for o in types["objects"]]
    assert {o["type"] for o in types["objects"]} == {"malware"}

    manifest = received.get_manifest(id=objs[0]["id"])
    (entry,) = manifest["objects"]
    assert entry["version"] == "2026-01-01T00:00:00.000Z"
    assert entry["media_type"] == "application/stix+json;version=2.1"

    (one,) = received.get_object(objs[1]["id"])["objects"]
    # Stamped on receipt with the report's label: its TLP and its releasability marking.
    refs = one.pop("object_marking_refs")
    assert one == objs[1]
    assert TLP2_MARKING_IDS["GREEN"] in refs
    (releasability,) = [r for r in refs if r != TLP2_MARKING_IDS["GREEN"]]
    assert received.get_object(releasability)["objects"][0]["type"] == "marking-definition"
    versions = received.object_versions(objs[1]["id"])
    assert versions["versions"] == ["2026-01-01T00:00:00.000Z"]

    after = received.get_objects(added_after=entry["date_added"])
    ids = [o["id"] for o in after.get("objects", [])]
    assert objs[0]["id"] not in ids
    assert objs[1]["id"] in ids  # added after the first object of the same report
    # The date_added headers
    with httpx.Client(auth=("siem", PASSWORD)) as client:
        r = client.get(received.objects_url, params={"match[id]": objs[1]["id"]},
                       headers={"Accept": MEDIA_TYPE_TAXII})  # fmt: skip
    assert r.headers["content-type"] == MEDIA_TYPE_TAXII
    assert parse_timestamp(r.headers["X-TAXII-Date-Added-First"]) > parse_timestamp(
        entry["date_added"]
    )
    assert r.headers["X-TAXII-Date-Added-Last"] == r.headers["X-TAXII-Date-Added-First"]
    # Per originator too
    assert objs[0]["id"] in manifest_ids(gateways, "USA", "from-GBR")


def test_add_objects_reaches_the_entitled_partner_only(gateways: Gateways) -> None:
    objs = [indicator("w1"), indicator("w2")]
    share = collection(gateways, "GBR", "share-usa")
    status = share.add_objects({"objects": objs}, wait_for_completion=False)
    assert status.status == "complete", status._raw
    assert status.success_count == 2
    assert status.failure_count == 0
    message = status.successes[0]["message"]
    assert "to USA under gbr-usa" in message
    assert "not sent to DEU: NO_AGREEMENT" in message
    ids = {o["id"] for o in objs}
    wait_for(lambda: ids <= manifest_ids(gateways, "USA"), what="the objects at USA")
    assert ids <= manifest_ids(gateways, "GBR", "share-usa")  # the local copy
    # The status resource, as the client reads it again
    again = ApiRoot(gateways.root("GBR"), user="siem", password=PASSWORD).get_status(status.id)
    assert again.status == "complete"
    assert again.success_count == 2
    # DEU has no agreement with GBR: nothing ever reaches its gateway.
    assert not ids & manifest_ids(gateways, "DEU")


def test_refused_objects_show_the_reason_in_the_status(gateways: Gateways) -> None:
    share = collection(gateways, "GBR", "share-deu")
    status = share.add_objects({"objects": [indicator("r1")]}, wait_for_completion=False)
    assert status.status == "complete"
    assert status.failure_count == 1
    assert status.success_count == 0
    failure = status.failures[0]["message"]
    assert failure.startswith("no_recipients")
    assert "DEU: NO_AGREEMENT" in failure

    bad = {"type": "indicator", "id": "indicator--not-a-uuid"}
    status = collection(gateways, "GBR", "share-usa").add_objects(
        {"objects": [indicator("ok"), bad]}, wait_for_completion=False
    )
    assert status.failure_count == 2  # one envelope, one report: nothing is published
    messages = [f["message"] for f in status.failures]
    assert any("invalid_object" in m for m in messages)
    assert any("not_published" in m for m in messages)

    # Marked TLP:RED in a collection shared as TLP:GREEN: the STIX checks refuse it.
    red = {**indicator("red"), "object_marking_refs": [TLP2_MARKING_IDS["RED"]]}
    status = collection(gateways, "GBR", "share-usa").add_objects(
        {"objects": [red, indicator("fine")]}, wait_for_completion=False
    )
    by_id = {f["id"]: f["message"] for f in status.failures}
    assert by_id[red["id"]].startswith("stix_marking_conflict")
    assert "not_published" in next(m for i, m in by_id.items() if i != red["id"])


def test_a_recall_removes_the_objects_from_the_recipients_gateway(gateways: Gateways) -> None:
    objs = [indicator("c1"), indicator("c2")]
    report_id = publish_from_gbr(gateways, objs)
    ids = {o["id"] for o in objs}
    wait_for(lambda: ids <= manifest_ids(gateways, "USA"), what="the report at USA")
    with Partner(gateways.broker.url, me("GBR")) as gbr:
        gbr.recall(report_id)
    wait_for(lambda: not ids & manifest_ids(gateways, "USA"), what="the recall at USA")
    assert not ids & manifest_ids(gateways, "USA", "from-GBR")
    with httpx.Client(auth=("siem", PASSWORD)) as client:
        url = collection(gateways, "USA", "received").objects_url + objs[0]["id"] + "/"
        r = client.get(url, headers={"Accept": MEDIA_TYPE_TAXII})
    assert r.status_code == 404
    assert r.json()["error_code"] == "recalled"
    assert report_id in r.json()["description"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "auth", "status", "title"),
    [
        ("GET", "/taxii2/", {}, None, 401, "Unauthorized"),
        ("GET", "/taxii2/", {}, ("siem", "wrong"), 401, "Unauthorized"),
        ("GET", "/taxii2/", {"Accept": "application/json"}, ("siem", PASSWORD), 406,
         "Not acceptable"),
        ("GET", "/taxii2/", {"Authorization": f"Bearer {TOKEN}"}, None, 200, None),
        ("GET", "/tearline/collections/00000000-0000-0000-0000-000000000000/", {},
         ("siem", PASSWORD), 404, "Not found"),
        ("GET", "/nowhere/", {}, ("siem", PASSWORD), 404, "Not found"),
        ("GET", "COLL:share-usa/objects/?limit=0", {}, ("siem", PASSWORD), 400, "Bad request"),
        ("POST", "COLL:share-usa/objects/", {"Content-Type": "application/json"},
         ("siem", PASSWORD), 415, "Unsupported media type"),
        ("POST", "COLL:received/objects/", {"Content-Type": MEDIA_TYPE_TAXII},
         ("reader", READER_PASSWORD), 403, "Forbidden"),
        ("POST", "COLL:share-usa/objects/", {"Content-Type": MEDIA_TYPE_TAXII},
         ("reader", READER_PASSWORD), 404, "Not found"),
        ("POST", "COLL:share-usa/objects/", {"Content-Type": MEDIA_TYPE_TAXII},
         ("siem", PASSWORD), 400, "Bad request"),
    ],
)  # fmt: skip
def test_refusals_are_taxii_error_messages(
    gateways: Gateways,
    method: str,
    path: str,
    headers: dict[str, str],
    auth: tuple[str, str] | None,
    status: int,
    title: str | None,
) -> None:
    if path.startswith("COLL:"):
        name, _, rest = path[5:].partition("/")
        path = f"/tearline/collections/{collection_id('GBR', name)}/{rest}"
    headers = {"Accept": MEDIA_TYPE_TAXII, **headers}
    content = b"{not json" if method == "POST" else None
    with httpx.Client(base_url=gateways.url("GBR"), auth=auth) as client:
        r = client.request(method, path, headers=headers, content=content)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE_TAXII
    if title is not None:
        body = r.json()
        assert body["title"] == title
        assert body["http_status"] == str(status)
        assert body["description"]
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")


def _raw_post(url: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send only a POST's request line and headers; the status and the body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
        length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
        while len(body) < length:
            body += s.recv(65536)
    return int(head.split(b" ")[1]), body


def test_a_body_over_the_limit_is_refused_before_it_is_sent(gateways: Gateways) -> None:
    path = f"/tearline/collections/{collection_id('GBR', 'share-usa')}/objects/"
    basic = base64.b64encode(f"siem:{PASSWORD}".encode()).decode()
    common = {"Accept": MEDIA_TYPE_TAXII, "Content-Type": MEDIA_TYPE_TAXII,
              "Content-Length": str(10 << 20)}  # fmt: skip
    status, body = _raw_post(
        gateways.url("GBR"), path, {**common, "Authorization": f"Basic {basic}"}
    )
    assert status == 413
    assert json.loads(body)["title"] == "Payload too large"
    # Without credentials, 401 comes first: nothing of the body is read either way.
    status, body = _raw_post(gateways.url("GBR"), path, common)
    assert status == 401
