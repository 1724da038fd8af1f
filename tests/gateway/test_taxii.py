"""The pure TAXII core: negotiation, timestamps, filters, the paging token, resource shapes."""

from __future__ import annotations

import pytest

from tearline.gateway.taxii import (
    Filter,
    Query,
    Row,
    StatusDetail,
    TaxiiError,
    accepts_taxii,
    collection_id,
    decode_next,
    encode_next,
    envelope,
    facts,
    format_timestamp,
    is_taxii_content_type,
    make_page,
    manifest,
    object_problem,
    parse_query,
    parse_timestamp,
    status_resource,
)


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("application/taxii+json;version=2.1", True),
        ("application/taxii+json; version=2.1", True),
        ("application/taxii+json", True),
        ("*/*", True),
        ("text/html, application/*;q=0.5", True),
        ("application/taxii+json;version=2.0", False),
        ("application/json", False),
        ("application/taxii+json;version=2.1;q=0", False),
        ("application/vnd.oasis.taxii+json; version=2.0", False),
    ],
)
def test_accept_negotiation(accept: str | None, ok: bool) -> None:
    assert accepts_taxii(accept) is ok


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/taxii+json;version=2.1", True),
        ("application/taxii+json", True),
        ("application/json", False),
        ("application/stix+json;version=2.1", False),
        ("application/taxii+json;version=2.0", False),
        (None, False),
    ],
)
def test_content_type_of_a_post(content_type: str | None, ok: bool) -> None:
    assert is_taxii_content_type(content_type) is ok


def test_timestamps_round_trip_with_microseconds() -> None:
    us = parse_timestamp("2026-05-01T09:30:00.250Z")
    assert format_timestamp(us) == "2026-05-01T09:30:00.250000Z"
    assert parse_timestamp("2026-05-01T09:30:00Z") == us - 250_000
    assert parse_timestamp("2026-05-01T09:30:00.123456789Z") == us - 250_000 + 123_456
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_timestamp("2026-05-01 09:30:00")


def test_collection_ids_are_stable_uuids() -> None:
    assert collection_id("GBR", "received") == collection_id("GBR", "received")
    assert collection_id("GBR", "received") != collection_id("USA", "received")
    assert collection_id("GBR", "received") != collection_id("GBR", "from-USA")


def test_object_facts_and_problems() -> None:
    sdo = {"type": "indicator", "id": "indicator--6ba7b810-9dad-41d1-80b4-00c04fd430c8",
           "spec_version": "2.1", "created": "2026-01-01T00:00:00.000Z",
           "modified": "2026-01-02T00:00:00.000Z"}  # fmt: skip
    f = facts(sdo)
    assert (f.version, f.spec_version) == ("2026-01-02T00:00:00.000Z", "2.1")
    sco = {"type": "ipv4-addr", "id": "ipv4-addr--6ba7b810-9dad-41d1-80b4-00c04fd430c8",
           "value": "192.0.2.1"}  # fmt: skip
    assert facts(sco).version is None
    assert facts(sco).spec_version == "2.1"
    assert object_problem(sdo) is None
    assert object_problem([]) == "not a JSON object"
    assert "id" in (object_problem({"type": "indicator", "id": "x"}) or "")
    assert "does not start" in (object_problem({**sdo, "type": "malware"}) or "")
    assert "modified" in (object_problem({**sdo, "modified": "yesterday"}) or "")


def q(pairs: list[tuple[str, str]], endpoint: str = "objects") -> Query:
    return parse_query(pairs, endpoint, page_size=50, scope="c1")


def test_filters_parse() -> None:
    query = q([("match[type]", "indicator,malware"), ("match[version]", "all"),
               ("added_after", "2026-01-01T00:00:00Z"), ("limit", "500")])  # fmt: skip
    assert query.filter.types == ("indicator", "malware")
    assert query.filter.version_set == ("all",)
    assert query.filter.added_after == parse_timestamp("2026-01-01T00:00:00Z")
    assert query.limit == 50  # capped to the page size
    assert q([]).filter.version_set == ("last",)


@pytest.mark.parametrize(
    ("pairs", "endpoint", "problem"),
    [
        ([("limit", "0")], "objects", "limit"),
        ([("limit", "ten")], "objects", "limit"),
        ([("match[type]", "Not A Type")], "objects", "match\\[type\\]"),
        ([("match[id]", "indicator--x")], "objects", "match\\[id\\]"),
        ([("match[version]", "latest")], "objects", "match\\[version\\]"),
        ([("match[spec_version]", "two")], "objects", "spec_version"),
        ([("match[type]", "indicator")], "object", "not a filter this endpoint"),
        ([("match[version]", "all")], "versions", "not a filter this endpoint"),
        ([("match[relationship]", "x")], "objects", "not a filter this endpoint"),
        ([("added_after", "yesterday")], "objects", "added_after"),
        ([("colour", "red")], "objects", "not a parameter"),
        ([("next", "!!!")], "objects", "not a token"),
        ([("match[type]", "")], "objects", "empty value"),
    ],
)
def test_named_refusals_of_a_query(
    pairs: list[tuple[str, str]], endpoint: str, problem: str
) -> None:
    with pytest.raises(TaxiiError, match=problem) as info:
        q(pairs, endpoint)
    assert info.value.status == 400
    assert info.value.to_dict()["http_status"] == "400"


def test_a_next_token_is_tied_to_its_query() -> None:
    f = Filter(types=("indicator",))
    token = encode_next(42, f.fingerprint("c1"))
    assert decode_next(token, f.fingerprint("c1")) == 42
    with pytest.raises(TaxiiError, match="another query"):
        decode_next(token, Filter(types=("malware",)).fingerprint("c1"))
    with pytest.raises(TaxiiError, match="another query"):
        decode_next(token, f.fingerprint("c2"))  # another collection
    query = q(
        [
            ("match[type]", "indicator"),
            ("next", encode_next(7, Filter(types=("indicator",)).fingerprint("c1"))),
        ]
    )
    assert query.after_seq == 7


def rows(n: int) -> list[Row]:
    return [Row(seq=i, id=f"indicator--{i:08d}-0000-4000-8000-000000000000", version="v",
                spec_version="2.1", date_added=1_000_000 + i, json=f"{{\"n\": {i}}}")
            for i in range(1, n + 1)]  # fmt: skip


def test_a_page_with_more_carries_next_and_the_date_added_headers() -> None:
    query = q([("limit", "3")])
    page = make_page(rows(4), query)
    assert page.more
    assert page.next is not None
    assert decode_next(page.next, query.filter.fingerprint("c1")) == 3
    body = envelope(page)
    assert body["more"] is True
    assert [o["n"] for o in body["objects"]] == [1, 2, 3]
    assert page.headers() == {
        "X-TAXII-Date-Added-First": format_timestamp(1_000_001),
        "X-TAXII-Date-Added-Last": format_timestamp(1_000_003),
    }
    last = make_page(rows(3), query)
    assert not last.more
    assert last.next is None
    assert "next" not in envelope(last)
    assert manifest(last)["objects"][0]["media_type"] == "application/stix+json;version=2.1"
    empty = make_page([], query)
    assert envelope(empty) == {"more": False}
    assert empty.headers() == {}


def test_status_resource_counts() -> None:
    body = status_resource(
        "s1", 1_000_000,
        successes=[StatusDetail("indicator--a", "v1")],
        failures=[StatusDetail("indicator--b", "v1", "no_recipients: DEU NO_AGREEMENT")],
        pendings=[],
    )  # fmt: skip
    assert body["status"] == "complete"
    assert (body["total_count"], body["success_count"], body["failure_count"]) == (2, 1, 1)
    assert body["failures"][0]["message"].startswith("no_recipients")
    assert status_resource("s2", 0, [], [], [StatusDetail("x", "v")])["status"] == "pending"
