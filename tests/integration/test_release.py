"""The SDK's release step (``AsyncPartner.release``) against a real broker: who a report with a
label reaches, who it does not and why; and ``publish`` sealing to exactly that release, or
refusing before anything is posted. ``tearline publish`` shows the release and has the SDK seal
it (clients.cli.partner).

The test world (tests/integration/conftest.py): GBR shares everything with USA, and Baltic
topics up to CONFIDENTIAL with EST and FIN (FIN cleared to RESTRICTED); DEU is registered and
in no agreement with GBR. "Nothing was posted" is read from the broker's Redis, and "nothing
was asked" from a real transport that records each request it sends.
"""

from __future__ import annotations

import httpx
import pytest

from tearline import Label
from tearline.broker.store import inbox_key
from tearline.clients.errors import DeniedError, InputError
from tearline.clients.partner import EXCLUDED_BY_ONLY, UNKNOWN_PARTNER, AsyncPartner
from tests.integration.conftest import PARTNERS, RunningBroker, me

BALTIC_APT = Label("CONFIDENTIAL", ["USA", "BALTIC", "DEU", "ATLANTIS"], "AMBER", topics=["apt"])


class Recording(httpx.AsyncHTTPTransport):
    """A real transport that notes each request's method and path before sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return await super().handle_async_request(request)


def nothing_posted(broker: RunningBroker) -> None:
    r = broker.redis()
    assert list(r.scan_iter("tl:report:*")) == []
    assert all(r.xlen(inbox_key(partner)) == 0 for partner in PARTNERS)


async def test_release_names_every_partner_rel_to_names_that_does_not_get_it_and_why(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        release = await gbr.release(BALTIC_APT, only=["USA"])
    assert list(release.recipients) == ["USA"]
    assert release.not_sent == {
        "ATLANTIS": UNKNOWN_PARTNER,  # REL TO names an id the registry does not hold
        "DEU": "NO_AGREEMENT",
        "EST": EXCLUDED_BY_ONLY,  # entitled, left out by the originator
        "FIN": "CLASSIFICATION_ABOVE_CLEARANCE",
    }
    # What the policy refused, without those the originator itself left out.
    assert "EST" not in release.refused
    assert release.refused["DEU"] == "NO_AGREEMENT"
    nothing_posted(broker)


async def test_publish_with_require_all_sends_nothing_when_a_rel_to_partner_is_refused(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(
                b"report", Label("SECRET", ["USA", "DEU"], "AMBER"), content_type="text/plain",
                require_all=True,
            )  # fmt: skip
    assert refused.value.code == "not_all_entitled"
    assert refused.value.details == {"not_sent": {"DEU": "NO_AGREEMENT"}}
    nothing_posted(broker)


async def test_publish_to_nobody_entitled_sends_nothing_and_says_why(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(
                b"report", Label("SECRET", ["DEU", "ATLANTIS"], "AMBER"), content_type="text/plain"
            )
    assert refused.value.code == "no_recipients"
    details = refused.value.details
    assert isinstance(details, dict)
    assert details["denied"]["DEU"] == "NO_AGREEMENT"
    assert details["not_sent"] == {"ATLANTIS": UNKNOWN_PARTNER, "DEU": "NO_AGREEMENT"}
    nothing_posted(broker)


async def test_publish_refuses_a_release_decided_for_another_label_before_asking_anything(
    broker: RunningBroker,
) -> None:
    transport = Recording()
    async with AsyncPartner(broker.url, me("GBR"), transport=transport) as gbr:
        release = await gbr.release(Label("SECRET", ["USA"], "AMBER"))
        asked = len(transport.sent)
        with pytest.raises(InputError, match="another label or suite"):
            await gbr.publish(
                b"report", Label("SECRET", ["USA", "EST"], "AMBER"), content_type="text/plain",
                release=release,
            )  # fmt: skip
        with pytest.raises(InputError, match="another label or suite"):
            await gbr.publish(
                b"report", release.label, content_type="text/plain", suite="pq-hybrid",
                release=release,
            )  # fmt: skip
    assert len(transport.sent) == asked  # refused before any request
    nothing_posted(broker)
