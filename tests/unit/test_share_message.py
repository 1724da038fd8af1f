"""What the gateway says of a shared envelope (gateway.writer): the partners the broker routed
it to, and for every other partner the label names, why not, from the one release the node
sealed to (not from a second question to the broker, which could answer otherwise)."""

from __future__ import annotations

from tearline.clients.partner import UNKNOWN_PARTNER, PreviewDecision, Release
from tearline.clients.protocol.receipt import Delivery, Receipt
from tearline.gateway.writer import NOT_ROUTED, _delivered
from tests.factories import label

GRANT = PreviewDecision("grant", agreement="gbr-usa")


def release(recipients: dict[str, PreviewDecision], not_sent: dict[str, str]) -> Release:
    return Release(label(releasable_to=("USA", "CAN", "DEU")), "classic", {}, recipients, not_sent)


def receipt(*partners: str) -> Receipt:
    routed = tuple(Delivery(p, "gbr-usa", "1-0") for p in partners)
    return Receipt("r-1", "GBR", "x", "2026-01-01T00:00:00Z", routed)


def test_each_partner_not_sealed_for_is_named_with_the_releases_reason() -> None:
    said = _delivered(
        release({"USA": GRANT}, {"DEU": "NO_AGREEMENT", "ATLANTIS": UNKNOWN_PARTNER}),
        receipt("USA"),
    )
    assert said == (
        "published in report r-1 to USA under gbr-usa; "
        "not sent to ATLANTIS: UNKNOWN_PARTNER, DEU: NO_AGREEMENT"
    )


def test_a_partner_sealed_for_that_the_broker_did_not_route_to_is_named() -> None:
    said = _delivered(release({"USA": GRANT, "CAN": GRANT}, {}), receipt("USA"))
    assert said == f"published in report r-1 to USA under gbr-usa; not sent to CAN: {NOT_ROUTED}"


def test_nothing_left_out_says_nothing_more() -> None:
    assert _delivered(release({"USA": GRANT}, {}), receipt("USA")) == (
        "published in report r-1 to USA under gbr-usa"
    )
