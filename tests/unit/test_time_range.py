"""RFC 3339 times from partner input whose UTC instant a datetime cannot hold are refused where
they are parsed (issue 16, item 8), in every field that goes through ``parse_time``: a label's
``expires``, an envelope header's ``created``, a key's validity. Before, they parsed, and the
first comparison or formatting raised OverflowError far from the input (a 500 at ingest).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tearline.clients.errors import EnvelopeError, IdentityError, LabelError
from tearline.clients.protocol.encoding import EncodingError, format_time, parse_time
from tearline.clients.protocol.envelope import verify
from tearline.clients.protocol.identity import KeyRecord
from tearline.clients.protocol.label import Label
from tests.factories import NOW, SCHEME, identity
from tests.unit.test_envelope import _base, _edit_header, _registry

OUT_OF_RANGE = [
    pytest.param("9999-12-31T23:59:59-23:59", id="year-10000-in-utc"),
    pytest.param("9999-12-31T23:30:00-00:31", id="half-an-hour-past-9999"),
    pytest.param("0001-01-01T00:00:00+00:01", id="before-year-1-in-utc"),
    pytest.param("0001-01-01T12:00:00.5+23:59", id="before-year-1-fractional"),
]
EDGES_IN_RANGE = [
    pytest.param("9999-12-31T23:59:59.999999Z", id="last-microsecond"),
    pytest.param("9999-12-31T23:59:59+23:59", id="late-but-earlier-in-utc"),
    pytest.param("0001-01-01T00:00:00Z", id="first-instant"),
    pytest.param("0001-01-01T00:00:00-23:59", id="early-but-later-in-utc"),
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_parse_time_refuses_an_instant_outside_the_utc_range(text: str) -> None:
    with pytest.raises(EncodingError, match="outside the representable range"):
        parse_time(text)


@pytest.mark.parametrize("text", EDGES_IN_RANGE)
def test_parse_time_keeps_the_edges_of_the_range(text: str) -> None:
    moment = parse_time(text)
    assert parse_time(format_time(moment)) == moment  # comparable and formattable


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_label_expiring_out_of_range_is_an_invalid_label(text: str) -> None:
    label: dict[str, Any] = {
        "classification": "SECRET", "releasable_to": ["USA"], "tlp": "AMBER", "expires": text,
    }  # fmt: skip
    with pytest.raises(LabelError, match=r"label\.expires") as caught:
        Label.from_dict(label)
    assert caught.value.code == "invalid_label"


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_key_valid_out_of_range_is_an_invalid_identity(text: str) -> None:
    entry = identity("USA").public_entry()["keys"][0] | {"not_after": text}
    with pytest.raises(IdentityError, match="not_after"):
        KeyRecord.from_dict(entry)


@pytest.mark.parametrize("text", OUT_OF_RANGE)
@pytest.mark.parametrize("field", ["created", "expires"])
def test_an_envelope_with_an_out_of_range_time_is_rejected_not_crashed(
    text: str, field: str
) -> None:
    def edit(header: dict[str, Any]) -> None:
        if field == "created":
            header["created"] = text
        else:
            header["label"]["expires"] = text

    crafted = _edit_header(_base(), edit)
    with pytest.raises(EnvelopeError) as caught:
        verify(crafted, _registry(), SCHEME, now=NOW)
    assert "outside the representable range" in caught.value.reason


def test_now_is_in_range() -> None:
    assert parse_time(format_time(datetime.now(UTC)))
