"""Canonical JSON is RFC 8785 (JCS) on every value it canonicalises for the protocol.

``canonical_json`` is sorted-key compact JSON (``json.dumps``), which differs from RFC 8785 on
numbers (``1.0``, ``1e21``), on key order past U+FFFF (UTF-16 versus code points) and on lone
surrogates. None of those can occur in what it hashes or signs on the wire: a label (§3) holds
only strings of ASCII letters, digits and ``+ - . _ :``, lists of them and ``null``; a receipt
only such strings. These properties prove it over every label the parser accepts, whatever is
thrown at it, comparing byte for byte with the ``rfc8785`` package.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tearline.clients.errors import LabelError
from tearline.clients.protocol.encoding import canonical_json, format_time, parse_time
from tearline.clients.protocol.identity import PARTNER_ID
from tearline.clients.protocol.label import MARKING, TLP_LEVELS, TOPIC, Label, label_digest
from tearline.clients.protocol.receipt import Delivery, Receipt

# Characters that need no escape in JSON and are the same in UTF-8 and UTF-16 order.
PLAIN_ASCII = frozenset(string.printable) - set('"\\\t\n\r\x0b\x0c')

markings = st.from_regex(MARKING, fullmatch=True)
partners = st.from_regex(PARTNER_ID, fullmatch=True)
topics = st.from_regex(TOPIC, fullmatch=True)
times = st.from_regex(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", fullmatch=True
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


def unique_lists(items: st.SearchStrategy[str], *, min_size: int = 0) -> st.SearchStrategy[Any]:
    return st.lists(items, min_size=min_size, max_size=5, unique=True)


def parseable(text: str) -> bool:
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


# What the label parser accepts, field by field (absent, null and [] included where allowed),
# each mixed with arbitrary JSON values so that anything else it would accept shows up too.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "policy": st.none() | markings,
    "classification": markings,
    "releasable_to": unique_lists(partners, min_size=1),
    "caveats": unique_lists(markings),
    "topics": unique_lists(topics),
    "tlp": st.sampled_from(TLP_LEVELS),
    "expires": st.none() | times.filter(parseable),
}
REQUIRED = ("classification", "releasable_to", "tlp")


@st.composite
def labels(draw: st.DrawFn, *, wild: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, valid in FIELDS.items():
        if name not in REQUIRED and draw(st.booleans()):
            continue
        out[name] = draw(valid | anything if wild else valid)
    if wild:  # and keys the schema does not know
        out |= draw(st.dictionaries(st.text(), anything, max_size=2))
    return out


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    if isinstance(value, dict):
        return [*value, *(s for item in value.values() for s in strings_in(item))]
    return []


def scalars_in(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [s for item in value for s in scalars_in(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in scalars_in(item)]
    return [value]


@settings(max_examples=400)
@given(labels(wild=False))
def test_canonical_json_is_rfc_8785_on_every_valid_label(label: dict[str, Any]) -> None:
    Label.from_dict(label)  # the strategy makes only labels the parser accepts
    assert canonical_json(label) == rfc8785.dumps(label)
    assert label_digest(label) == label_digest(json.loads(rfc8785.dumps(label)))


@settings(max_examples=400)
@given(labels(wild=True))
def test_whatever_the_label_parser_accepts_canonicalises_as_rfc_8785(label: dict[str, Any]) -> None:
    try:
        Label.from_dict(label)
    except LabelError:
        return
    # Accepted: only plain ASCII strings, lists, objects and null; no number, no boolean.
    assert all(set(s) <= PLAIN_ASCII for s in strings_in(label))
    assert all(v is None or isinstance(v, str) for v in scalars_in(label))
    assert canonical_json(label) == rfc8785.dumps(label)


def test_the_sdks_own_labels_are_rfc_8785() -> None:
    label = Label(
        classification="CONFIDENTIAL",
        releasable_to=["USA", "EST", "FVEY"],
        tlp="AMBER+STRICT",
        caveats=["CYBER-OPS"],
        topics=["apt", "c2.infra_v2"],
        policy="TEARLINE-DEMO",
        expires=datetime(2027, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC),
    ).to_dict()
    assert canonical_json(label) == rfc8785.dumps(label)
    assert canonical_json(label).startswith(b'{"caveats":["CYBER-OPS"],"classification":')


def test_where_sorted_json_and_rfc_8785_differ_is_outside_the_label_schema() -> None:
    """The differences are real — which is why they must stay out of labels."""
    for value in ({"n": 1.0}, {"n": 1e-7}, {"\ue000": 1, "\U0001f600": 2}):
        assert canonical_json(value) != rfc8785.dumps(value)
    good = {"classification": "SECRET", "releasable_to": ["USA"], "tlp": "AMBER"}
    outside: tuple[tuple[str, object], ...] = (
        ("policy", 1.0),
        ("expires", 1e21),
        ("\U0001f600", "x"),
    )
    for field, bad in outside:
        with pytest.raises(LabelError):
            Label.from_dict(good | {field: bad})


receipt_ids = st.uuids(version=4).map(lambda u: str(u)[:14] + "7" + str(u)[15:])
stream_ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(
    lambda p: f"{p[0]}-{p[1]}"
)
agreements = st.from_regex(r"[a-z0-9][a-z0-9-]{0,63}", fullmatch=True)
digests = st.binary(min_size=32, max_size=32).map(
    lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
)
instants = st.integers(0, 10**13).map(
    lambda ms: format_time(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
)


@settings(max_examples=200)
@given(
    receipt_ids,
    partners,
    digests,
    instants,
    st.lists(st.tuples(partners, agreements, stream_ids), max_size=4),
)
def test_canonical_json_is_rfc_8785_on_every_receipt(
    report_id: str,
    originator: str,
    digest: str,
    accepted_at: str,
    deliveries: list[tuple[str, str, str]],
) -> None:
    body = Receipt(
        report_id, originator, digest, accepted_at, tuple(Delivery(*d) for d in deliveries)
    ).to_dict()
    assert all(set(s) <= PLAIN_ASCII for s in strings_in(body))
    assert canonical_json(body) == rfc8785.dumps(body)
