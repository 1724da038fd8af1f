"""A governed broker: partners, keys and agreements only from documents their holders signed.

A real broker on real Redis serves a governed policy folder; partner nodes pin root version 1
and check what it serves (documents, log, proofs) with ``verify_governance``. Each attack is one
test, named after it: the refusal is asserted, and that the policy in force (or the node's trust)
stayed as it was and nothing was delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tearline import AsyncPartner, Label
from tearline.broker.keys import load as load_broker_key
from tearline.broker.policy.why import explain_all
from tearline.broker.reload import reload_now, tell_expiry
from tearline.clients.errors import DeniedError
from tearline.clients.governance.documents import GovernanceError
from tearline.clients.governance.log import LogError, split_view, verify_tree_head
from tearline.clients.governance.node import NodeMemory, verify_broker
from tearline.clients.policy.engine import Reason
from tearline.clients.protocol.encoding import b64e, format_time
from tests.integration.conftest import AGREEMENTS, RunningBroker, me, running_broker
from tests.integration.governed import (
    agreement_doc,
    partner_entries,
    pinned_root,
    put,
    registry_doc,
    root_doc,
    status_doc,
    write_governed,
)
from tests.integration.test_governed_publish import (
    Doctoring,
    registry_kid,
    rename_usa_key,
    slots,
    swap_usa_enc_key,
)

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
USA_ONLY = Label("SECRET", ["USA"], "AMBER", topics=["apt"])


@pytest.fixture
def governed(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    write_governed(tmp_path / "policies")
    with running_broker(redis_server.url, tmp_path) as broker:
        yield broker


def reload(broker: RunningBroker) -> bool:
    return bool(broker.run(reload_now(broker.state)))


def usa_keys(broker: RunningBroker) -> set[str]:
    usa = broker.state.policy.registry.get("USA")
    assert usa is not None
    return {k.kid for k in usa.keys}


def with_operator_key(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """USA's entry with one more encryption key: one the operator holds."""
    operator_key = dict(me("DEU").public_entry()["keys"][-1], kid="USA-enc-operator")
    for entry in entries:
        if entry["id"] == "USA":
            entry["keys"] = [*entry["keys"], operator_key]
    return entries


async def test_the_honest_path_verifies_and_delivers(governed: RunningBroker) -> None:
    async with (
        AsyncPartner(governed.url, me("GBR")) as gbr,
        AsyncPartner(governed.url, me("USA")) as usa,
    ):
        verified = await gbr.verify_governance(pinned_root())
        assert verified.trust.registry_version is not None
        assert sorted(verified.trust.agreements) == sorted(AGREEMENTS)
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
        assert [d.partner for d in receipt.recipients] == ["USA"]
        await usa.verify_governance(pinned_root())
        reports = await usa.inbox(wait_s=2)
        assert [r.id for r in reports] == [receipt.id]
    summary = governed.state.policy.summary()
    assert summary["governed"] is True


def test_a_key_added_by_the_operator_alone_is_refused(governed: RunningBroker) -> None:
    before = usa_keys(governed)
    # The operator signs registry version 2 with the only governance key it could make itself.
    doctored = registry_doc(2, "OPERATOR", partners=with_operator_key(partner_entries()))
    put(governed.policies, "registry.json", doctored)
    assert reload(governed) is False
    assert "registry is not signed by the threshold" in (governed.state.policy_error or "")
    assert usa_keys(governed) == before


def test_a_key_added_with_one_partners_signature_is_refused(governed: RunningBroker) -> None:
    before = usa_keys(governed)
    doctored = registry_doc(2, "USA", partners=with_operator_key(partner_entries()))
    put(governed.policies, "registry.json", doctored)
    assert reload(governed) is False
    assert "1 of 3 required signatures" in (governed.state.policy_error or "")
    assert usa_keys(governed) == before


def test_a_key_added_by_the_threshold_is_in_force(governed: RunningBroker) -> None:
    put(
        governed.policies,
        "registry.json",
        registry_doc(2, partners=with_operator_key(partner_entries())),
    )
    assert reload(governed), governed.state.policy_error
    assert "USA-enc-operator" in usa_keys(governed)


def test_rollback_attack_on_the_broker(governed: RunningBroker) -> None:
    # Version 2 suspends DEU; the operator then puts version 1 back to reinstate it.
    put(governed.policies, "registry.json", registry_doc(2, partners=partner_entries(("DEU",))))
    assert reload(governed), governed.state.policy_error
    put(governed.policies, "registry.json", registry_doc(1))
    assert reload(governed) is False
    assert "rollback" in (governed.state.policy_error or "")
    deu = governed.state.policy.registry.get("DEU")
    assert deu is not None
    assert not deu.active


def test_freeze_attack_on_the_broker(governed: RunningBroker) -> None:
    expired = registry_doc(2, expires="2026-01-01T00:00:00Z")
    put(governed.policies, "registry.json", expired)
    assert reload(governed) is False
    assert "registry_expired" in json.dumps(governed.state.policy_error) or "expired" in (
        governed.state.policy_error or ""
    )
    assert governed.state.policy.governance is not None
    assert governed.state.policy.governance.registry.version == 1


async def test_freeze_attack_while_in_force_stops_routing_at_the_expiry(
    governed: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Version 2 verifies now and expires in a few seconds; nobody signs a version 3. Past the
    # expiry the broker routes nothing by it: what was queued is withheld, a new report is
    # refused, explain says why, and the operator is told once, without any reload.
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    put(governed.policies, "registry.json", registry_doc(2, expires=format_time(expires)))
    assert reload(governed), governed.state.policy_error
    async with (
        AsyncPartner(governed.url, me("GBR")) as gbr,
        AsyncPartner(governed.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
        assert [d.partner for d in receipt.recipients] == ["USA"]
        await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.2)
        assert await usa.inbox(wait_s=1.5) == []
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(BUNDLE, USA_ONLY)
        assert refused.value.code == "no_recipients"
    policy = governed.state.policy
    now = governed.state.clock()
    decisions = policy.decide(USA_ONLY, "GBR", "classic", now)
    assert decisions["USA"].reason is Reason.AGREEMENT_NOT_IN_FORCE
    usa_line = next(
        line
        for line in explain_all(policy, USA_ONLY, "GBR", "classic", now, decisions)
        if line.partner == "USA"
    )
    assert f"registry it rests on expired at {format_time(expires)}" in usa_line.term
    withheld = [e for _, e in governed.redis().xrange("tl:audit") if e.get(b"event") == b"withheld"]
    assert [e[b"report"].decode() for e in withheld] == [receipt.id]
    tell_expiry(governed.state)  # the watcher may have told it already: once, either way
    tell_expiry(governed.state)
    told = [r for r in caplog.records if "nothing is routed until its holders" in r.message]
    assert len(told) == 1
    assert told[0].levelname == "ERROR"


def test_root_rotated_without_the_old_threshold_is_refused(governed: RunningBroker) -> None:
    # A new root of the operator's keys, signed by them alone: not by 3 of version 1's holders.
    holders = {"OPERATOR": "GBR", "OPERATOR-2": "USA", "OPERATOR-3": "EST"}
    put(governed.policies, "root-2.json", root_doc(2, *holders, holders=holders))
    assert reload(governed) is False
    assert "not signed by the threshold of the current root" in (governed.state.policy_error or "")
    assert governed.state.policy.governance is not None
    assert governed.state.policy.governance.root.version == 1


def test_a_root_replaced_in_place_is_refused_once_published(governed: RunningBroker) -> None:
    holders = {"OPERATOR": "GBR", "OPERATOR-2": "USA", "OPERATOR-3": "EST"}
    put(governed.policies, "root-1.json", root_doc(1, *holders, holders=holders))
    assert reload(governed) is False
    assert "already published in its transparency log" in (governed.state.policy_error or "")


def test_an_agreement_signed_by_one_party_is_absent_and_explain_says_why(
    governed: RunningBroker,
) -> None:
    put(governed.policies, "agreement-gbr-usa.json", agreement_doc("gbr-usa", "GBR"))
    assert reload(governed), governed.state.policy_error
    policy = governed.state.policy
    assert "gbr-usa" not in policy.agreements
    assert policy.governance is not None
    assert (
        "not signed by all its parties"
        in policy.governance.ignored["governance/agreement-gbr-usa.json"]
    )
    now = governed.state.clock()
    decisions = policy.decide(USA_ONLY, "GBR", "classic", now)
    lines = explain_all(policy, USA_ONLY, "GBR", "classic", now, decisions)
    usa = next(line for line in lines if line.partner == "USA")
    assert not usa.decision.granted
    assert "gbr-usa is not in force" in usa.term
    assert "USA" in usa.term


async def test_suspension_by_one_party_stops_queued_deliveries(governed: RunningBroker) -> None:
    async with (
        AsyncPartner(governed.url, me("GBR")) as gbr,
        AsyncPartner(governed.url, me("USA")) as usa,
    ):
        await gbr.publish(BUNDLE, USA_ONLY)
        # USA alone suspends the agreement: its one signature is enough.
        put(governed.policies, "status-gbr-usa.json", status_doc("gbr-usa", "suspended", "USA"))
        assert reload(governed), governed.state.policy_error
        assert governed.state.policy.agreements["gbr-usa"].suspended
        assert await usa.inbox(wait_s=1.5) == []


async def test_termination_by_one_party_ends_the_agreement_and_queued_deliveries(
    governed: RunningBroker,
) -> None:
    async with (
        AsyncPartner(governed.url, me("GBR")) as gbr,
        AsyncPartner(governed.url, me("USA")) as usa,
    ):
        await gbr.publish(BUNDLE, USA_ONLY)
        put(governed.policies, "status-gbr-usa.json", status_doc("gbr-usa", "terminated", "GBR"))
        assert reload(governed), governed.state.policy_error
        agreement = governed.state.policy.agreements["gbr-usa"]
        assert not agreement.in_force(governed.state.clock())
        assert await usa.inbox(wait_s=1.5) == []
        verified = await usa.verify_governance(pinned_root())
        assert "gbr-usa" not in verified.trust.agreements  # the node sees it ended too


def test_a_published_suspension_survives_its_file_being_deleted(governed: RunningBroker) -> None:
    put(governed.policies, "status-gbr-usa.json", status_doc("gbr-usa", "suspended", "USA"))
    assert reload(governed), governed.state.policy_error
    (governed.policies / "governance" / "status-gbr-usa.json").unlink()
    assert reload(governed), governed.state.policy_error
    assert governed.state.policy.agreements["gbr-usa"].suspended


def test_a_status_signed_by_no_party_is_not_in_force(governed: RunningBroker) -> None:
    put(governed.policies, "status-gbr-usa.json", status_doc("gbr-usa", "terminated", "DEU"))
    assert reload(governed), governed.state.policy_error
    assert not governed.state.policy.agreements["gbr-usa"].suspended
    governance = governed.state.policy.governance
    assert governance is not None
    assert "not a party" in governance.ignored["governance/status-gbr-usa.json"]


async def test_a_key_revoked_by_a_new_registry_stops_queued_deliveries(
    governed: RunningBroker,
) -> None:
    async with (
        AsyncPartner(governed.url, me("GBR")) as gbr,
        AsyncPartner(governed.url, me("USA")) as usa,
    ):
        await gbr.publish(BUNDLE, USA_ONLY)
        entries = partner_entries()
        for entry in entries:
            if entry["id"] == "USA":
                entry["keys"] = [{**k, "revoked": k["use"] == "enc"} for k in entry["keys"]]
        put(governed.policies, "registry.json", registry_doc(2, partners=entries))
        assert reload(governed), governed.state.policy_error
        assert await usa.inbox(wait_s=1) == []
    withheld = [e for _, e in governed.redis().xrange("tl:audit") if e.get(b"event") == b"withheld"]
    assert withheld, "the queued delivery to the revoked key was not withheld"


async def test_a_node_refuses_a_log_that_shrank(governed: RunningBroker, tmp_path: Path) -> None:
    memory = tmp_path / "node" / "governance.json"
    async with AsyncPartner(governed.url, me("GBR")) as gbr:
        await gbr.verify_governance(pinned_root(), memory=memory)
        put(governed.policies, "registry.json", registry_doc(2))
        assert reload(governed), governed.state.policy_error
        await gbr.verify_governance(pinned_root(), memory=memory)
        saved = NodeMemory.load(memory)
        assert saved.registry_version == 2
        # The operator wipes the log and restores registry 1: the broker starts a new history.
        governed.redis().delete("tl:log", "tl:log:index")
        governed.state.log.clear()
        put(governed.policies, "registry.json", registry_doc(1))
        assert reload(governed), governed.state.policy_error
        with pytest.raises(LogError) as refused:
            await gbr.verify_governance(pinned_root(), memory=memory)
        assert refused.value.code in ("log_rollback", "log_fork")
        assert NodeMemory.load(memory).registry_version == 2  # nothing new remembered


async def test_split_view_is_detected_from_two_nodes_tree_heads(
    redis_server: Any, tmp_path: Path
) -> None:
    # One operator runs the broker with one key, and shows USA a second log where its registry
    # holds a key the operator added: two histories under one signing key.
    write_governed(tmp_path / "a" / "policies")
    write_governed(tmp_path / "b" / "policies")
    with running_broker(redis_server.url, tmp_path / "a") as a:
        async with AsyncPartner(a.url, me("GBR")) as gbr:
            seen_by_gbr = (await gbr.verify_governance(pinned_root())).head
            await gbr.publish(BUNDLE, USA_ONLY)
    # Broker b is the same operator's, so it signs with the same key.
    (tmp_path / "b" / "data").mkdir(parents=True)
    key_file = "broker.identity.json"
    (tmp_path / "b" / "data" / key_file).write_bytes(
        (tmp_path / "a" / "data" / key_file).read_bytes()
    )
    b_folder = tmp_path / "b"
    # Broker b is the same operator's: its registry is version 1 but with other contents.
    doctored = registry_doc(1, partners=with_operator_key(partner_entries()))
    put(b_folder / "policies", "registry.json", doctored)
    with running_broker(redis_server.url, b_folder) as b:
        async with AsyncPartner(b.url, me("USA")) as usa:
            seen_by_usa = (await usa.verify_governance(pinned_root())).head
    assert seen_by_gbr.log == seen_by_usa.log, "the two brokers must sign with one key"
    assert seen_by_gbr.tree_size == seen_by_usa.tree_size
    why = split_view(seen_by_gbr, seen_by_usa, None)
    assert why is not None
    assert "two different logs" in why
    # And each head verifies on its own: only comparing them shows the fork.
    for head in (seen_by_gbr, seen_by_usa):
        assert verify_tree_head(head.raw, kid=head.log, public=_broker_public(tmp_path / "a"))


def _broker_public(folder: Path) -> bytes:
    return load_broker_key(folder / "data" / "broker.identity.json").public


async def test_a_document_the_broker_serves_but_never_logged_is_refused(
    governed: RunningBroker,
) -> None:
    async with AsyncPartner(governed.url, me("GBR")) as gbr:
        directory = await gbr.directory()

        async def fetch(path: str, params: Any) -> Any:
            answer = (await gbr._send("GET", path, params=params)).json()
            if path == "/v1/governance":
                # The broker slips in a registry it never appended to its log.
                for entry in answer["documents"]:
                    if entry["type"] == "registry":
                        entry["document"] = b64e(
                            registry_doc(1, partners=with_operator_key(partner_entries()))
                        )
            return answer

        with pytest.raises(LogError) as refused:
            await verify_broker(
                fetch,
                pinned_root(),
                NodeMemory(),
                kid=directory.broker_kid,
                public=directory.broker_public,
                now=governed.state.clock(),
            )
        assert refused.value.code == "not_in_log"


def test_a_governed_folder_refuses_the_operators_partners_file(governed: RunningBroker) -> None:
    (governed.policies / "partners.yaml").write_text("partners: []\n")
    assert reload(governed) is False
    assert "a governed folder" in (governed.state.policy_error or "")


def test_policy_status_shows_what_is_not_in_force(governed: RunningBroker) -> None:
    put(governed.policies, "agreement-baltic.json", agreement_doc("baltic", "GBR", "EST"))
    assert reload(governed), governed.state.policy_error
    governance = governed.state.policy.governance
    assert governance is not None
    summary = governance.summary()
    assert "governance/agreement-baltic.json" in summary["not_in_force"]
    assert "FIN" in summary["not_in_force"]["governance/agreement-baltic.json"]


DOCTORED_PREVIEWS = [
    ("a_doctored_enc_key_for_usa", swap_usa_enc_key),
    ("a_key_id_the_registry_never_signed", rename_usa_key),
]


@pytest.mark.parametrize(
    "doctor", [d for _, d in DOCTORED_PREVIEWS], ids=[n for n, _ in DOCTORED_PREVIEWS]
)
async def test_a_verified_node_seals_only_to_signed_keys_whatever_the_preview_says(
    governed: RunningBroker, doctor: Callable[[dict[str, Any]], None]
) -> None:
    proxy = Doctoring(doctor)
    async with AsyncPartner(governed.url, me("GBR"), transport=proxy) as gbr:
        verified = await gbr.verify_governance(pinned_root())
        await gbr.publish(BUNDLE, USA_ONLY)
    assert proxy.asked["/v1/releasability/preview"] == 0
    assert [slots(e) for e in proxy.envelopes] == [[("USA", registry_kid(verified.trust, "USA"))]]


async def test_a_node_pinned_by_digest_finds_its_root_among_the_documents(
    governed: RunningBroker,
) -> None:
    digest = "sha256:" + hashlib.sha256(pinned_root()).hexdigest()
    async with AsyncPartner(governed.url, me("GBR")) as gbr:
        verified = await gbr.verify_governance(digest)
        assert verified.trust.root.version == 1
        with pytest.raises(GovernanceError) as refused:
            await gbr.verify_governance("sha256:" + "0" * 64)
    assert refused.value.code == "pinned_root_not_served"
