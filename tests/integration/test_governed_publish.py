"""A partner node that trusts its governance documents, not the broker (issue 10's first slice).

GBR's SDK holds a ``TrustedState``: a pinned 2-of-5 root (a governance key held by each
partner), the registry version two of its holders signed, and the agreements their parties
signed. The broker is real and honest; between it and the SDK sits a proxy that can doctor what
the broker says. Each attack asserts the refusal's code and that nothing was posted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest

from tearline import AsyncPartner, DeniedError, Label
from tearline.clients.governance.documents import add_signature, generate_key, new_document
from tearline.clients.governance.trust import GovernanceError, TrustedState
from tearline.clients.protocol.encoding import b64d, b64e, format_time
from tests.integration.conftest import AGREEMENTS, PARTNERS, SCHEME, RunningBroker, me
from tests.integration.conftest import running_broker as running

NOW = datetime.now(UTC)
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
USA_ONLY = Label("SECRET", ["USA"], "AMBER", topics=["apt"])
HOLDERS = tuple(PARTNERS)  # every party signs its agreements with a governance key


@cache
def gov(holder: str) -> tuple[bytes, bytes]:
    return generate_key()


def signed_by(signed: dict[str, Any], *holders: str) -> bytes:
    document = new_document(signed)
    for holder in holders:
        document = add_signature(document, gov(holder)[0])
    return document


def trusted(*, agreement_signers: dict[str, tuple[str, ...]] | None = None) -> TrustedState:
    keys = [{"public": b64e(gov(h)[1]), "holder": h} for h in HOLDERS]
    expires = format_time(NOW + timedelta(days=365))
    root = {"type": "root", "version": 1, "expires": expires, "threshold": 2, "keys": keys}
    state = TrustedState(signed_by(root, *HOLDERS), NOW)
    partners = [me(p).public_entry() for p in PARTNERS]
    registry = {
        "type": "registry",
        "version": 1,
        "expires": expires,
        "partners": partners,
        "scheme": SCHEME,
    }
    state.update_registry(signed_by(registry, "GBR", "USA"), NOW)
    for aid, body in AGREEMENTS.items():
        parties = tuple(body["parties"])
        signers = (agreement_signers or {}).get(aid, parties)
        document = signed_by({"type": "agreement", "agreement": body}, *signers)
        if set(signers) >= set(parties):
            state.verify_agreement(document)
        else:
            with pytest.raises(GovernanceError):
                state.verify_agreement(document)
    return state


Doctor = Callable[[dict[str, Any]], None]


class Doctoring(httpx.AsyncBaseTransport):
    """A proxy in front of the real broker: real HTTP out, and on the way back ``doctors`` (path
    → function) may rewrite the JSON of an answer; ``doctor`` alone rewrites the preview's. It
    counts the requests per path and keeps every envelope posted, as the broker received it."""

    def __init__(self, doctor: Doctor | None = None, *, doctors: dict[str, Doctor] | None = None):
        self._real = httpx.AsyncHTTPTransport()
        self._doctors = dict(doctors or {})
        if doctor is not None:
            self._doctors["/v1/releasability/preview"] = doctor
        self.posted = 0
        self.envelopes: list[bytes] = []
        self.asked: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked[request.url.path] += 1
        if request.url.path.startswith("/v1/reports"):
            self.posted += 1
            self.envelopes.append(await request.aread())
        response = await self._real.handle_async_request(request)
        doctor = self._doctors.get(request.url.path)
        if doctor is None or not 200 <= response.status_code < 300:
            return response
        body = json.loads(await response.aread())
        doctor(body)
        return httpx.Response(response.status_code, json=body)

    async def aclose(self) -> None:
        await self._real.aclose()


def swap_usa_enc_key(body: dict[str, Any]) -> None:
    """The broker's operator puts in a key it holds: same kid, other public bytes."""
    key = body["partners"]["USA"]["keys"][0]
    raw = bytearray(b64d(key["public"]))
    raw[0] ^= 0xFF
    key["public"] = b64e(bytes(raw))


def rename_usa_key(body: dict[str, Any]) -> None:
    body["partners"]["USA"]["keys"][0]["kid"] = "USA-enc-operator"


@pytest.fixture
def world(redis_server: Any, tmp_path: Any) -> Iterator[RunningBroker]:
    with running(redis_server.url, tmp_path) as broker:
        yield broker


def _reports(world: RunningBroker) -> list[bytes]:
    return list(world.redis().scan_iter("tl:report:*"))


async def test_a_node_that_trusts_its_documents_publishes_as_before(world: RunningBroker) -> None:
    proxy = Doctoring()
    async with AsyncPartner(world.url, me("GBR"), transport=proxy, trust=trusted()) as node:
        receipt = await node.publish(BUNDLE, USA_ONLY)
    assert [d.partner for d in receipt.recipients] == ["USA"]
    assert len(_reports(world)) == 1


def slots(envelope: bytes) -> list[tuple[str, str]]:
    """(partner, kid) of every recipient slot of an envelope, as its signed header says."""
    header = json.loads(b64d(json.loads(envelope)["header"]))
    return [(r["partner"], r["kid"]) for r in header["recipients"]]


def registry_kid(state: TrustedState, partner: str, suite: str = "classic") -> str:
    held = state.registry.get(partner)
    assert held is not None
    key = held.enc_key(suite, datetime.now(UTC))
    assert key is not None
    return key.kid


# (name, how the proxy doctors the preview)
ATTACKS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("a_doctored_enc_key_for_usa", swap_usa_enc_key),
    ("a_key_id_the_registry_never_signed", rename_usa_key),
]


@pytest.mark.parametrize("doctor", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
async def test_a_doctored_preview_is_never_asked_and_only_signed_keys_are_sealed_to(
    world: RunningBroker, doctor: Callable[[dict[str, Any]], None]
) -> None:
    state = trusted()
    proxy = Doctoring(doctor)
    async with AsyncPartner(world.url, me("GBR"), transport=proxy, trust=state) as node:
        receipt = await node.publish(BUNDLE, USA_ONLY)
    assert proxy.asked["/v1/releasability/preview"] == 0  # the node decided for itself
    assert [slots(e) for e in proxy.envelopes] == [[("USA", registry_kid(state, "USA"))]]
    assert [d.partner for d in receipt.recipients] == ["USA"]


async def test_an_agreement_signed_by_one_party_only_grants_nothing(world: RunningBroker) -> None:
    # The broker's folder has gbr-usa in force; the documents say USA never signed it.
    state = trusted(agreement_signers={"gbr-usa": ("GBR",)})
    proxy = Doctoring()
    async with AsyncPartner(world.url, me("GBR"), transport=proxy, trust=state) as node:
        with pytest.raises(DeniedError) as refused:
            await node.publish(BUNDLE, USA_ONLY)
    assert refused.value.code == "no_recipients"
    assert refused.value.details["denied"]["USA"] == "NO_AGREEMENT"
    assert proxy.posted == 0
    assert _reports(world) == []


async def test_without_trust_the_doctored_key_would_have_been_used(world: RunningBroker) -> None:
    # The control: the same proxy against a node that trusts the broker. The SDK seals to the
    # doctored key, so the attack above is real and only the documents stop it.
    proxy = Doctoring(swap_usa_enc_key)
    async with AsyncPartner(world.url, me("GBR"), transport=proxy) as node:
        await node.publish(BUNDLE, USA_ONLY)
    assert proxy.posted == 1
