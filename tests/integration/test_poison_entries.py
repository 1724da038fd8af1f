"""A poison entry (one that cannot be delivered for a reason of its own) is set aside alone:
dead-lettered with its reason and an audit entry, while the valid entries beside it go out. So
are the queued reports of an originator suspended since: reversibly, for the operator."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from tearline import Label
from tearline.broker.reload import reload_now
from tearline.broker.store import AUDIT_KEY, dead_key, inbox_key, report_key
from tearline.clients.operator import Operator
from tearline.clients.sync import Partner
from tests.integration.conftest import AGREEMENTS, SCHEME, RunningBroker, me, write_policies

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}


def test_an_entry_whose_label_no_longer_parses_is_dead_lettered_and_the_rest_delivered(
    broker: RunningBroker,
) -> None:
    # USA is accredited for CYBER-OPS; one of three reports carries that caveat.
    accredited: dict[str, Any] = copy.deepcopy(AGREEMENTS)
    accredited["gbr-usa"]["parties"]["USA"] = {"caveats": ["CYBER-OPS"]}
    broker.change_policies(agreements=accredited)
    with Partner(broker.url, me("GBR")) as gbr:
        first = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER"))
        poison = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER", caveats=["CYBER-OPS"]))
        last = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER"))

    # The operator retires the caveat: from the agreement and from the marking scheme.
    write_policies(broker.policies)
    scheme = {**SCHEME, "caveats": []}
    (broker.policies / "scheme.yaml").write_text(yaml.safe_dump(scheme))
    assert broker.run(reload_now(broker.state)), broker.state.policy_error

    with Partner(broker.url, me("USA")) as usa:
        received = usa.inbox(limit=10, wait_s=1)
        assert [r.id for r in received] == [first.id, last.id]
        usa.ack(r.entry_id for r in received)
        assert usa.inbox(limit=10, wait_s=0) == []

    r = broker.redis()
    (dead,) = [fields for _, fields in r.xrange(dead_key("USA"))]
    assert dead[b"report"].decode() == poison.id
    assert b"CYBER-OPS" in dead[b"reason"]
    audited = [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"] == b"dead_lettered"
    ]
    (dead_id,) = [entry_id.decode() for entry_id, _ in r.xrange(dead_key("USA"))]
    assert audited == [
        {
            "partner": "USA",
            "entry": dead[b"entry"].decode(),
            "reason": dead[b"reason"].decode(),
            "dead_letter": dead_id,
        }
    ]
    # Set aside, not destroyed: the report is still held for the operator to inspect or replay.
    assert r.exists(report_key(poison.id))
    assert r.xpending(inbox_key("USA"), "tl")["pending"] == 0


def test_an_entry_whose_report_is_gone_is_withheld_and_the_rest_delivered(
    broker: RunningBroker,
) -> None:
    with Partner(broker.url, me("GBR")) as gbr:
        gone = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER"))
        kept = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER"))
    broker.redis().delete(report_key(gone.id))  # as if it had expired

    with Partner(broker.url, me("USA")) as usa:
        assert [r.id for r in usa.inbox(limit=10, wait_s=1)] == [kept.id]

    withheld = [
        json.loads(fields[b"data"])
        for _, fields in broker.redis().xrange(AUDIT_KEY)
        if fields[b"event"] == b"withheld" and fields[b"report"].decode() == gone.id
    ]
    assert withheld == [{"partner": "USA", "reason": "RETENTION_EXPIRED"}]


def test_a_suspended_originators_queued_reports_are_held_for_the_operator_and_replayable(
    broker: RunningBroker,
) -> None:
    with Partner(broker.url, me("GBR")) as gbr:
        held = gbr.publish(BUNDLE, Label("SECRET", ["USA"], "AMBER"))
    broker.change_policies(suspended=("GBR",))
    with Partner(broker.url, me("USA")) as usa:
        assert usa.inbox(limit=10, wait_s=0.5) == []
    (dead,) = broker.redis().xrange(dead_key("USA"))
    assert dead[1][b"report"].decode() == held.id
    assert b"originator GBR is suspended" in dead[1][b"reason"]

    broker.change_policies()  # reinstated
    with Operator(broker.url, me("OPS-HQ")) as ops:
        ops.replay("USA", dead[0].decode())
    with Partner(broker.url, me("USA")) as usa:
        assert [r.id for r in usa.inbox(limit=10, wait_s=1)] == [held.id]
