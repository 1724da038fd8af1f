"""A dishonest broker against nodes that pinned their governance root (issue 16, items 1-4).

A real governed broker on real Redis; between it and each node sits a proxy (real HTTP out)
that rewrites the broker's answers as a compromised host would. Every document the proxy
serves is genuine: the attacks are in what it adds to a preview, withholds from the documents
in force, or shows to whom. Each attack is one test named after it, asserting the node's
refusal (its code names the attack), that nothing was sealed for, stored for or delivered to a
partner the documents do not entitle, and that the honest path still works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner, Result

from tearline import AsyncPartner, DeniedError, Label, Report
from tearline.broker.reload import reload_now
from tearline.broker.runner import broker_in_thread, free_port
from tearline.clients import cli
from tearline.clients.governance.documents import GovernanceError
from tearline.clients.governance.log import parse_commitment
from tearline.clients.keyfile import write_keypair
from tearline.clients.protocol.encoding import b64d, b64e
from tests.integration.conftest import AGREEMENTS, PARTNERS, RunningBroker, me, running_broker
from tests.integration.governed import (
    partner_entries,
    pinned_root,
    put,
    registry_doc,
    status_doc,
    write_governed,
)
from tests.integration.test_governed_publish import Doctor, Doctoring, slots

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
# USA alone may have it: gbr-usa covers every topic up to SECRET; baltic (GBR, EST, FIN) stops
# at CONFIDENTIAL and covers ransomware and apt only.
NUCLEAR = Label("SECRET", ["USA"], "RED", topics=["nuclear"])
FOR_EST = Label("CONFIDENTIAL", ["EST"], "AMBER", topics=["apt"])


@pytest.fixture
def governed(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    write_governed(tmp_path / "policies")
    with running_broker(redis_server.url, tmp_path) as broker:
        yield broker


def reload(broker: RunningBroker) -> None:
    assert broker.run(reload_now(broker.state)), broker.state.policy_error


def enc_key(partner: str) -> dict[str, Any]:
    """The partner's genuine classic encryption key, as the registry publishes it."""
    return next(k for k in me(partner).public_entry()["keys"] if k["alg"] == "X25519")


def grant_est(body: dict[str, Any]) -> None:
    """The preview grants EST under baltic, with EST's genuine key: baltic is genuinely signed,
    but its ceiling is CONFIDENTIAL and its topics are others."""
    body["partners"]["EST"] = {"decision": "grant", "agreement": "baltic", "keys": [enc_key("EST")]}


def reports(broker: RunningBroker) -> list[bytes]:
    return list(broker.redis().scan_iter("tl:report:*"))


async def inbox_of(broker: RunningBroker, partner: str) -> list[Any]:
    async with AsyncPartner(broker.url, me(partner)) as node:
        return await node.inbox(wait_s=0.5)


# --- 1. the preview is believed --------------------------------------------------------------


async def test_preview_grant_attack(governed: RunningBroker) -> None:
    proxy = Doctoring(grant_est)
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        await gbr.verify_governance(pinned_root())
        receipt = await gbr.publish(BUNDLE, NUCLEAR)
    assert proxy.asked["/v1/releasability/preview"] == 0
    assert [[p for p, _ in slots(e)] for e in proxy.envelopes] == [["USA"]]
    assert [r.partner for r in receipt.recipients] == ["USA"]
    assert await inbox_of(governed, "EST") == []
    delivered = await inbox_of(governed, "USA")
    assert [r.id for r in delivered] == [receipt.id]


async def test_preview_grant_attack_is_real_against_a_node_that_trusts_the_broker(
    governed: RunningBroker,
) -> None:
    # The control: without verified documents the node believes the preview and seals a copy
    # for EST; only the honest broker's 403, after the envelope left the node, stops it.
    proxy = Doctoring(grant_est)
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        with pytest.raises(DeniedError):
            await gbr.publish(BUNDLE, NUCLEAR)
    assert [[p for p, _ in slots(e)] for e in proxy.envelopes] == [["EST", "USA"]]
    assert reports(governed) == []


# --- 2. a suspension withheld ----------------------------------------------------------------


def drop_statuses(body: dict[str, Any]) -> None:
    body["documents"] = [d for d in body["documents"] if d["type"] != "agreement-status"]


def suspend_baltic(governed: RunningBroker) -> None:
    put(governed.policies, "status-baltic.json", status_doc("baltic", "suspended", "EST"))
    reload(governed)
    assert governed.state.policy.agreements["baltic"].suspended


async def test_withheld_suspension_attack(governed: RunningBroker) -> None:
    suspend_baltic(governed)
    proxy = Doctoring(grant_est, doctors={"/v1/governance": drop_statuses})
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        with pytest.raises(GovernanceError) as refused:
            await gbr.verify_governance(pinned_root())
        assert gbr.scheme() is None  # nothing was trusted
    assert refused.value.code == "status_withheld"
    assert "baltic" in refused.value.message
    assert proxy.posted == 0
    assert reports(governed) == []


async def test_a_served_suspension_stops_the_node_whatever_the_preview_says(
    governed: RunningBroker,
) -> None:
    suspend_baltic(governed)
    proxy = Doctoring(grant_est)
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        verified = await gbr.verify_governance(pinned_root())
        assert "baltic" not in verified.trust.agreements
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(BUNDLE, FOR_EST)
    assert refused.value.code == "no_recipients"
    assert refused.value.details["denied"]["EST"] == "AGREEMENT_NOT_IN_FORCE"
    assert proxy.posted == 0
    assert reports(governed) == []


# --- 3. a registry frozen --------------------------------------------------------------------


def usa_with_a_new_enc_key() -> list[dict[str, Any]]:
    """Registry version 2: USA's classic encryption key replaced by a new one."""
    entries = partner_entries()
    new_key = dict(enc_key("FIN"), kid="USA-enc-2")
    for entry in entries:
        if entry["id"] == "USA":
            entry["keys"] = [k for k in entry["keys"] if k["alg"] != "X25519"] + [new_key]
    return entries


async def test_registry_freeze_attack(governed: RunningBroker) -> None:
    version_1 = registry_doc(1)
    put(governed.policies, "registry.json", registry_doc(2, partners=usa_with_a_new_enc_key()))
    reload(governed)
    index_1 = governed.state.log.index_of(version_1)
    assert index_1 is not None  # still in the log, at its index

    def serve_version_1(body: dict[str, Any]) -> None:
        for entry in body["documents"]:
            if entry["type"] == "registry":
                entry["document"], entry["index"] = b64e(version_1), index_1

    proxy = Doctoring(doctors={"/v1/governance": serve_version_1})
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        with pytest.raises(GovernanceError) as refused:
            await gbr.verify_governance(pinned_root())
        assert gbr.scheme() is None
    assert refused.value.code == "registry_withheld"
    assert "version 2" in refused.value.message
    assert proxy.posted == 0

    # The honest path: version 2 verified, and the new key is the one sealed to.
    honest = Doctoring()
    async with AsyncPartner(governed.url, me("GBR"), transport=honest) as gbr:
        verified = await gbr.verify_governance(pinned_root())
        assert verified.trust.registry_version is not None
        assert verified.trust.registry_version.version == 2
        await gbr.publish(BUNDLE, NUCLEAR)
    assert [slots(e) for e in honest.envelopes] == [[("USA", "USA-enc-2")]]


# --- 4. agreement terms shown to non-parties -------------------------------------------------


async def governance_as(broker: RunningBroker, partner: str) -> tuple[list[Any], list[bytes]]:
    async with AsyncPartner(broker.url, me(partner)) as node:
        served = (await node._send("GET", "/v1/governance")).json()["documents"]
        _, leaves = await node.log_entries()
    return served, leaves


TERMS_OF_BALTIC = (b"Baltic cyber exchange", b"ransomware", b"clearance", b'"ceiling":"CONF')


@pytest.mark.parametrize("outsider", ["USA", "DEU"])
async def test_agreement_terms_leak_to_non_parties(governed: RunningBroker, outsider: str) -> None:
    suspend_baltic(governed)
    served, leaves = await governance_as(governed, outsider)
    shown = [json.loads(b64d(d["document"])) for d in served]
    assert all(
        d["signed"].get("agreement", {}) == {} or d["signed"]["agreement"] != AGREEMENTS["baltic"]
        for d in shown
    )
    assert not [d for d in served if d["type"] == "agreement-status"]
    everything = b"".join([*leaves, *(b64d(d["document"]) for d in served)])
    for term in TERMS_OF_BALTIC:
        assert term not in everything, f"{outsider} was shown {term!r} of baltic"
    # What the outsider can learn: that baltic exists, between whom, and its digest.
    commitments = [c for c in map(parse_commitment, leaves) if c is not None]
    assert {c.agreement: sorted(c.parties) for c in commitments} == {
        aid: sorted(body["parties"]) for aid, body in AGREEMENTS.items()
    }
    # And the log still verifies for it, with only its own agreements trusted.
    async with AsyncPartner(governed.url, me(outsider)) as node:
        verified = await node.verify_governance(pinned_root())
    mine = {aid for aid, body in AGREEMENTS.items() if outsider in body["parties"]}
    assert set(verified.trust.signed_agreements) == mine


async def test_a_party_is_served_its_agreements_terms(governed: RunningBroker) -> None:
    served, _ = await governance_as(governed, "FIN")
    agreements = [json.loads(b64d(d["document"]))["signed"]["agreement"] for d in served if
                  d["type"] == "agreement"]  # fmt: skip
    assert agreements == [AGREEMENTS["baltic"]]


# --- the subscriber side ---------------------------------------------------------------------


async def test_a_report_under_an_agreement_the_node_knows_suspended_is_not_handed_on(
    governed: RunningBroker,
) -> None:
    sender = Doctoring()
    async with AsyncPartner(governed.url, me("GBR"), transport=sender) as gbr:
        receipt = await gbr.publish(BUNDLE, FOR_EST)
    envelope = sender.envelopes[0].decode()
    suspend_baltic(governed)  # the honest broker now withholds it; a dishonest one replays it

    def replay(body: dict[str, Any]) -> None:
        body["entries"] = [
            {
                "entry_id": "1-0",
                "kind": "report",
                "report_id": receipt.id,
                "originator": "GBR",
                "deliveries": 1,
                "envelope": envelope,
                "gap": None,
            }
        ]

    async with AsyncPartner(
        governed.url, me("EST"), transport=Doctoring(doctors={"/v1/inbox": replay})
    ) as est:
        trusting = await est.inbox(wait_s=0)
        assert [r.id for r in trusting if isinstance(r, Report)] == [receipt.id]  # the control
        await est.verify_governance(pinned_root())
        assert await est.inbox(wait_s=0) == []


# --- the node's engine and the broker's agree ------------------------------------------------

LABELS = [
    Label("UNCLASSIFIED", ["USA", "EST", "FIN", "DEU"], "GREEN", topics=["apt"]),
    Label("RESTRICTED", ["BALTIC"], "AMBER", topics=["ransomware"]),
    Label("CONFIDENTIAL", ["EST", "FIN", "USA"], "AMBER", topics=["apt"]),
    Label("CONFIDENTIAL", ["EST"], "AMBER", topics=["apt"], caveats=["CYBER-OPS"]),
    Label("SECRET", ["USA", "EST"], "RED", topics=["nuclear"]),
    Label("SECRET", ["GBR", "USA"], "AMBER+STRICT", topics=["phishing"]),
]


@pytest.mark.parametrize("originator", sorted(PARTNERS))
async def test_the_nodes_engine_agrees_with_the_brokers(
    governed: RunningBroker, originator: str
) -> None:
    if originator == "FIN":
        suspend_baltic(governed)
    async with AsyncPartner(governed.url, me(originator)) as node:
        await node.verify_governance(pinned_root())
        for label in LABELS:
            for suite in ("classic", "pq-hybrid"):
                mine = await node.releasability(label, suite=suite)
                theirs = await node.preview(label, suite=suite)
                assert {p: (d.decision, d.agreement, d.reason) for p, d in mine.items()} == {
                    p: (d.decision, d.agreement, d.reason) for p, d in theirs.items()
                }, (label, suite)
                assert {p: d.keys for p, d in mine.items()} == {
                    p: d.keys for p, d in theirs.items()
                }


# --- the same attacks on `tearline publish --root --memory`, through a real HTTP proxy -------


def doctoring_proxy(target: list[str], doctors: dict[str, Doctor]) -> FastAPI:
    """A real reverse proxy (served by uvicorn) that forwards every request to ``target[0]``
    unchanged, Host included, so the request signatures made for the proxy's URL verify at a
    broker whose public URL it is, and rewrites the JSON answers of the paths in ``doctors``."""

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=target[0], timeout=30.0) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                headers=[(k, v) for k, v in request.headers.items() if k != "content-length"],
                content=await request.body(),
            )
        body = answer.content
        doctor = doctors.get(request.url.path)
        if doctor is not None and answer.is_success:
            data = answer.json()
            doctor(data)
            body = json.dumps(data).encode()
        return Response(body, answer.status_code, media_type=answer.headers.get("content-type"))

    methods = ["GET", "POST"]
    return FastAPI(routes=[Route("/{path:path}", forward, methods=methods)], openapi_url=None)


Proxied = tuple[RunningBroker, str, dict[str, Doctor]]


@pytest.fixture
def behind_proxy(
    redis_server: Any, tmp_path: Path
) -> Iterator[tuple[RunningBroker, str, dict[str, Doctor]]]:
    """A governed broker that partners reach only through a doctoring proxy."""
    doctors: dict[str, Doctor] = {}
    target: list[str] = []
    port = free_port()
    proxy_url = f"http://127.0.0.1:{port}"
    write_governed(tmp_path / "policies")
    with (
        broker_in_thread(doctoring_proxy(target, doctors), port=port),
        running_broker(redis_server.url, tmp_path, public_url=proxy_url) as broker,
    ):
        target.append(broker.url)
        yield broker, proxy_url, doctors


def publish_command(
    tmp_path: Path, url: str, label: Label, *, memory: Path | None = None
) -> Result:
    identity, _ = write_keypair(me("GBR"), tmp_path / "keys")
    (tmp_path / "root.json").write_bytes(pinned_root())
    (tmp_path / "label.json").write_text(json.dumps(label.to_dict()))
    (tmp_path / "bundle.json").write_text(json.dumps(BUNDLE))
    args = ["publish", tmp_path / "bundle.json", "--label", tmp_path / "label.json",
            "--identity", identity, "--broker", url, "--root", tmp_path / "root.json",
            "--memory", memory or tmp_path / "memory.json", "--json"]  # fmt: skip
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def test_preview_grant_attack_on_the_publish_command(behind_proxy: Proxied, tmp_path: Path) -> None:
    broker, url, doctors = behind_proxy
    doctors["/v1/releasability/preview"] = grant_est
    sent = publish_command(tmp_path, url, NUCLEAR)
    assert sent.exit_code == 0, sent.output
    receipt = json.loads(sent.stdout.strip().splitlines()[-1])
    stored = broker.redis().scan_iter("tl:report:*")
    envelopes = [broker.redis().hget(k, "envelope") for k in stored]
    assert len(envelopes) == 1
    assert [p for p, _ in slots(envelopes[0])] == ["USA"]
    assert "EST" not in json.dumps(receipt)


def test_withheld_suspension_attack_on_the_publish_command(
    behind_proxy: Proxied, tmp_path: Path
) -> None:
    broker, url, doctors = behind_proxy
    suspend_baltic(broker)
    doctors["/v1/governance"] = drop_statuses
    doctors["/v1/releasability/preview"] = grant_est
    refused = publish_command(tmp_path, url, FOR_EST)
    assert refused.exit_code == 1
    assert "withhold" in refused.output
    assert "baltic" in refused.output
    assert reports(broker) == []
