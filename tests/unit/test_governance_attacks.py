"""The governed registry against the attacks python-tuf's tests name, one test per attack.

Each refusal is checked twice: by its code, and by the trusted state being exactly what it was
before. Real Ed25519 governance keys and real partner identities throughout; nothing is mocked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from tearline.clients.governance.documents import (
    GovernanceError,
    add_signature,
    generate_key,
    keyid_of,
    new_document,
)
from tearline.clients.governance.trust import TrustedState
from tearline.clients.protocol.encoding import b64e, format_time
from tearline.clients.protocol.identity import Identity

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
SCHEME = {"policy": "TEARLINE-TEST", "levels": ["UNCLASSIFIED", "RESTRICTED", "SECRET"]}
FIVE = ("AUS", "CAN", "GBR", "NZL", "USA")

Json = dict[str, Any]


@cache
def gov(name: str) -> tuple[bytes, bytes]:
    """A governance key pair per name ("GBR", "GBR-2", ...): (private, public)."""
    return generate_key()


@cache
def identity(pid: str) -> Identity:
    return Identity.generate(pid, "classic", NOW - timedelta(days=30))


def sign_all(signed: Json, *signers: str) -> bytes:
    doc = new_document(signed)
    for name in signers:
        doc = add_signature(doc, gov(name)[0])
    return doc


def root(
    version: int,
    holders: dict[str, str],
    threshold: int,
    *signers: str,
    expires: datetime = NOW + YEAR,
) -> bytes:
    """A root whose keys are ``gov(name)`` for each name, held by ``holders[name]``."""
    keys = [{"public": b64e(gov(name)[1]), "holder": h} for name, h in holders.items()]
    signed = {
        "type": "root",
        "version": version,
        "expires": format_time(expires),
        "threshold": threshold,
        "keys": keys,
    }
    return sign_all(signed, *signers)


def registry(
    version: int, *signers: str, expires: datetime = NOW + YEAR, partners: Any = None
) -> bytes:
    entries = [identity(p).public_entry() for p in FIVE] if partners is None else partners
    signed = {
        "type": "registry",
        "version": version,
        "expires": format_time(expires),
        "partners": entries,
        "scheme": SCHEME,
    }
    return sign_all(signed, *signers)


def agreement(aid: str, parties: tuple[str, ...], *signers: str, title: str = "t") -> bytes:
    body = {
        "id": aid,
        "title": title,
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2028-01-01T00:00:00Z",
        "ceiling": "SECRET",
        "topics": ["*"],
        "parties": {p: {} for p in parties},
    }
    return sign_all({"type": "agreement", "agreement": body}, *signers)


def status(aid: str, value: str, *signers: str) -> bytes:
    signed = {
        "type": "agreement-status",
        "agreement": aid,
        "status": value,
        "issued": "2026-06-01T00:00:00Z",
    }
    return sign_all(signed, *signers)


def five_holders() -> dict[str, str]:
    return {p: p for p in FIVE}


def fvey_state() -> TrustedState:
    """A 3-of-5 root held by the Five Eyes, registry version 1 signed by three of them."""
    state = TrustedState(root(1, five_holders(), 3, "AUS", "CAN", "GBR"), NOW)
    state.update_registry(registry(1, "GBR", "USA", "CAN"), NOW)
    return state


def snapshot(state: TrustedState) -> tuple[Any, ...]:
    statuses = {a: state.status(a) for a in ("fvey", "gbr-usa", "trilateral")}
    return (state.root, state.registry_version, state.agreements, statuses)


def status_of(state: TrustedState, aid: str) -> str | None:
    found = state.status(aid)
    return None if found is None else found.status


def refused(code: str, state: TrustedState, call: Any, *args: Any) -> GovernanceError:
    """Run ``call``: it must raise ``code`` and leave ``state`` as it was."""
    before = snapshot(state)
    with pytest.raises(GovernanceError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value.message
    assert snapshot(state) == before
    return caught.value


# --- the honest path ----------------------------------------------------------------------


def test_a_3_of_5_root_trusts_a_registry_signed_by_3_and_rotates_to_a_new_root() -> None:
    state = fvey_state()
    assert state.registry.ids == sorted(FIVE)
    assert state.scheme == SCHEME
    # NZL replaces its key, the threshold rises to 4: three of the old holders hand over,
    # four of the new ones take over.
    new_holders = {**{p: p for p in FIVE if p != "NZL"}, "NZL-2": "NZL"}
    rotated = root(2, new_holders, 4, "GBR", "USA", "AUS", "CAN", "NZL-2")
    assert state.update_root(rotated, NOW).version == 2
    state.check_root_not_expired(NOW)
    # The old NZL key no longer counts: GBR, USA and old NZL are 2 of 4 under root 2.
    refused(
        "registry_threshold", state, state.update_registry, registry(2, "GBR", "USA", "NZL"), NOW
    )
    assert state.update_registry(registry(2, "GBR", "USA", "CAN", "NZL-2"), NOW).version == 2


def test_a_one_organisation_deployment_runs_on_a_1_of_1_root() -> None:
    state = TrustedState(root(1, {"GBR": "GBR"}, 1, "GBR"), NOW)
    state.update_registry(registry(1, "GBR", partners=[identity("GBR").public_entry()]), NOW)
    assert state.registry.ids == ["GBR"]
    state.update_root(root(2, {"GBR-2": "GBR"}, 1, "GBR", "GBR-2"), NOW)
    state.update_registry(registry(2, "GBR-2", partners=[identity("GBR").public_entry()]), NOW)
    assert state.registry_version is not None
    assert state.registry_version.version == 2


def test_an_agreement_signed_by_all_its_parties_is_in_force() -> None:
    state = fvey_state()
    signed = state.verify_agreement(agreement("gbr-usa", ("GBR", "USA"), "USA", "GBR"))
    assert signed.parties == {"GBR", "USA"}
    assert list(state.agreements) == ["gbr-usa"]
    assert state.agreements["gbr-usa"]["parties"] == {"GBR": {}, "USA": {}}


# --- the attacks --------------------------------------------------------------------------


def test_a_key_added_by_the_operator_alone_is_refused() -> None:
    state = fvey_state()
    operator_private, operator_public = generate_key()
    entries = [identity(p).public_entry() for p in FIVE]
    usa = next(e for e in entries if e["id"] == "USA")
    usa["keys"].append({**usa["keys"][1], "kid": "USA-enc-2", "public": b64e(operator_public)})
    forged = registry(2, partners=entries)  # unsigned: each signer adds its own below

    short = refused(
        "registry_threshold",
        state,
        state.update_registry,
        add_signature(add_signature(forged, gov("GBR")[0]), gov("USA")[0]),
        NOW,
    )
    assert "2 of 3 required signatures; missing: a key held by AUS, CAN or NZL" in short.message
    by_operator = add_signature(forged, operator_private)
    err = refused("registry_threshold", state, state.update_registry, by_operator, NOW)
    assert "0 of 3 required signatures; missing: keys held by 3 of AUS, CAN, GBR" in err.message
    # The operator's signature under a governance keyid: keyids are computed, never believed.
    doc = json.loads(by_operator)
    doc["signatures"][0]["keyid"] = keyid_of(gov("GBR")[1])
    relabelled = json.dumps(doc).encode()
    refused("registry_threshold", state, state.update_registry, relabelled, NOW)
    refused("registry_threshold", state, state.update_registry, forged, NOW)
    trusted_usa = state.registry.get("USA")
    assert trusted_usa is not None
    assert [k.kid for k in trusted_usa.keys] == ["USA-sig-1", "USA-enc-1"]


def test_rollback_attack() -> None:
    state = fvey_state()
    state.update_registry(registry(2, "GBR", "USA", "CAN"), NOW)
    refused(
        "registry_rollback", state, state.update_registry, registry(1, "GBR", "USA", "CAN"), NOW
    )
    state.update_root(root(2, five_holders(), 3, "GBR", "USA", "CAN"), NOW)
    old_root = root(1, five_holders(), 3, "GBR", "USA", "CAN")
    refused("root_rollback", state, state.update_root, old_root, NOW)


def test_freeze_attack() -> None:
    state = fvey_state()
    stale = registry(2, "GBR", "USA", "CAN", expires=NOW + timedelta(days=1))
    refused("registry_expired", state, state.update_registry, stale, NOW + timedelta(days=1))
    state.update_registry(stale, NOW)
    # The same bytes served for ever: still refused once they expire.
    refused("registry_expired", state, state.update_registry, stale, NOW + timedelta(days=2))
    # A root that expired stops every registry update until its holders sign a new one.
    later = NOW + 2 * YEAR
    refused("root_expired", state, state.check_root_not_expired, later)
    fresh = registry(3, "GBR", "USA", "CAN", expires=later + YEAR)
    refused("root_expired", state, state.update_registry, fresh, later)


def test_a_root_rotated_without_the_old_threshold_is_refused() -> None:
    state = fvey_state()
    # A new root of keys the old holders never saw, signed by all of them and 2 old holders.
    new_holders = {f"{p}-2": p for p in FIVE}
    takeover = root(2, new_holders, 3, *new_holders, "GBR", "USA")
    err = refused("root_threshold", state, state.update_root, takeover, NOW)
    assert "current root (version 1)" in err.message
    assert "2 of 3 required signatures; missing: a key held by AUS, CAN or NZL" in err.message


def test_a_root_rotated_without_the_new_threshold_is_refused() -> None:
    state = fvey_state()
    new_holders = {f"{p}-2": p for p in FIVE}
    unaccepted = root(2, new_holders, 3, "GBR", "USA", "CAN", "GBR-2", "USA-2")
    err = refused("root_threshold", state, state.update_root, unaccepted, NOW)
    assert "new root (version 2)'s own keys" in err.message


def test_a_root_version_skipped_is_refused() -> None:
    state = fvey_state()
    skipped = root(3, five_holders(), 3, *FIVE)
    refused("root_version_skipped", state, state.update_root, skipped, NOW)


def test_an_agreement_signed_by_one_party_only_is_absent() -> None:
    state = fvey_state()
    err = refused(
        "agreement_unsigned",
        state,
        state.verify_agreement,
        agreement("gbr-usa", ("GBR", "USA"), "GBR", "CAN", "AUS"),  # outsiders do not count
    )
    assert "signed by GBR; missing: a key held by USA" in err.message
    # A party with no governance key cannot sign; the message says so.
    keyless = agreement("gbr-usa", ("GBR", "FRA"), "GBR")
    err = refused("agreement_unsigned", state, state.verify_agreement, keyless)
    assert "FRA hold(s) no governance key" in err.message
    assert state.agreements == {}


def test_a_suspension_by_any_one_party_takes_effect() -> None:
    state = fvey_state()
    trilateral = agreement("trilateral", ("GBR", "USA", "CAN"), "GBR", "USA", "CAN")
    state.verify_agreement(trilateral)
    state.apply_status(status("trilateral", "suspended", "CAN"))
    assert "trilateral" not in state.agreements
    assert status_of(state, "trilateral") == "suspended"
    # A termination is final: re-submitting the agreement does not bring it back.
    state.apply_status(status("trilateral", "terminated", "USA"))
    state.apply_status(status("trilateral", "suspended", "GBR"))
    state.verify_agreement(trilateral)
    assert status_of(state, "trilateral") == "terminated"
    assert state.agreements == {}


def test_a_suspension_by_an_outsider_is_refused() -> None:
    state = fvey_state()
    state.verify_agreement(agreement("gbr-usa", ("GBR", "USA"), "GBR", "USA"))
    by_nzl = status("gbr-usa", "suspended", "NZL")  # a governance key, not a party's
    err = refused("status_not_a_party", state, state.apply_status, by_nzl)
    assert "signed by NZL, not a party of it; missing: a key held by GBR or USA" in err.message
    outsider_private, _ = generate_key()
    unsigned = add_signature(new_document(json.loads(by_nzl)["signed"]), outsider_private)
    refused("status_unsigned", state, state.apply_status, unsigned)
    unknown = status("fvey", "terminated", "GBR")
    refused("status_unknown_agreement", state, state.apply_status, unknown)
    assert list(state.agreements) == ["gbr-usa"]


def test_same_version_other_bytes_is_refused() -> None:
    state = fvey_state()
    trusted = registry(1, "GBR", "USA", "CAN")
    assert state.update_registry(trusted, NOW).version == 1  # the same bytes: a no-op
    fork = registry(1, "GBR", "USA", "CAN", partners=[identity("GBR").public_entry()])
    refused("registry_version_conflict", state, state.update_registry, fork, NOW)
    # An agreement id, too, names one text: an amendment takes a new id.
    state.verify_agreement(agreement("gbr-usa", ("GBR", "USA"), "GBR", "USA"))
    amended = agreement("gbr-usa", ("GBR", "USA"), "GBR", "USA", title="amended")
    refused("agreement_conflict", state, state.verify_agreement, amended)


def test_a_signature_from_a_duplicated_key_counts_once() -> None:
    # GBR holds two keys; a 2-of-3 root counts partners, not keys.
    holders = {"GBR": "GBR", "GBR-2": "GBR", "USA": "USA", "CAN": "CAN"}
    state = TrustedState(root(1, holders, 2, "GBR", "USA"), NOW)
    err = refused(
        "registry_threshold", state, state.update_registry, registry(1, "GBR", "GBR-2"), NOW
    )
    assert "1 of 2 required signatures; missing: a key held by CAN or USA" in err.message
    # The same signature listed twice.
    doc = json.loads(registry(1, "GBR"))
    doc["signatures"] *= 2
    refused("registry_threshold", state, state.update_registry, json.dumps(doc).encode(), NOW)
    # Signing again with the same key replaces the signature rather than adding one.
    assert len(json.loads(add_signature(registry(1, "GBR"), gov("GBR")[0]))["signatures"]) == 1
    # The same key listed twice in a root is refused outright, whoever it says holds it.
    twice = json.loads(root(2, {"USA": "USA", "CAN": "CAN"}, 2))
    twice["signed"]["keys"].append({"public": b64e(gov("USA")[1]), "holder": "CAN"})
    doc_bytes = json.dumps(twice).encode()  # new_document would refuse to write it
    for name in ("GBR", "USA", "CAN"):
        doc_bytes = add_signature(doc_bytes, gov(name)[0])
    refused("bad_document", state, state.update_root, doc_bytes, NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: {**d, "extra": 1}, id="unknown-outer-field"),
        pytest.param(lambda d: {**d, "signed": {**d["signed"], "extra": 1}}, id="unknown-field"),
        pytest.param(
            lambda d: {**d, "signed": {**d["signed"], "version": True}}, id="bool-version"
        ),
        pytest.param(
            lambda d: {**d, "signed": {**d["signed"], "version": 2.0}}, id="float-version"
        ),
        pytest.param(lambda d: {**d, "signed": {**d["signed"], "type": "root"}}, id="wrong-type"),
        pytest.param(lambda d: {**d, "signed": {**d["signed"], "scheme": []}}, id="bad-scheme"),
        pytest.param(lambda d: {**d, "signatures": [{"keyid": "x", "sig": "AA"}]}, id="bad-sig"),
    ],
)
def test_malformed_registry_documents_are_bad_documents(mangle: Any) -> None:
    state = fvey_state()
    doc = mangle(json.loads(registry(2, "GBR", "USA", "CAN")))
    refused("bad_document", state, state.update_registry, json.dumps(doc).encode(), NOW)


def test_a_duplicate_json_key_is_a_bad_document() -> None:
    state = fvey_state()
    text = registry(2, "GBR", "USA", "CAN").replace(b'"version":2', b'"version":2,"version":9')
    refused("bad_document", state, state.update_registry, text, NOW)


def test_a_signature_over_another_document_type_does_not_count() -> None:
    # The payload type is in what each key signs: a registry signature never signs a root.
    state = fvey_state()
    reg = json.loads(registry(2, "GBR", "USA", "CAN"))
    next_root = json.loads(root(2, five_holders(), 3))
    next_root["signatures"] = reg["signatures"]
    refused("root_threshold", state, state.update_root, json.dumps(next_root).encode(), NOW)
