"""Existence oracles (issue 16, item 17): what a partner learns about another partner's report
from knowing its id, against a real broker over real HTTP and a real redis-server.

- Recall: to anyone but the originator, a report that exists and an id the broker never held
  get the same answer (404 ``no_such_report``, the same message but for the id).
- Posting under another originator's id: report ids are globally unique (recipients and
  gateways key on them), so the id is taken, and the post is refused with 409 ``id_conflict``,
  exactly as the originator's own re-use of an id with other bytes is. What remains is inherent
  to unique ids and documented (docs/protocol.md §5): the 409 tells whoever already knows an id
  (its 74 random bits are not guessable: in practice, a recipient of it) that it is taken.

Each refusal asserts the status and code, that nothing was stored, changed or delivered, and
that the originator's own recall and idempotent re-post still work.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import pytest

from tearline import Label
from tearline.broker.store import inbox_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.protocol.encoding import new_uuid7
from tearline.clients.protocol.envelope import seal
from tests.integration.conftest import UNLIMITED, RunningBroker, me, running_broker
from tests.integration.test_adversarial import PAYLOAD, USA_ONLY, enc_key, envelope, snapshot
from tests.integration.test_crafted_input import report_id

# An id no broker ever held (a well-formed UUIDv7).
NEVER_HELD: Final = "019de2a5-6e40-7c3a-9f1e-2b4d6a8c0e99"


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(redis_server.url, tmp_path_factory.mktemp("oracles"), **UNLIMITED) as b:
        yield b


def post(world: RunningBroker, path: str, body: bytes | None, who: str) -> httpx.Response:
    url = world.url + path
    headers = {"content-type": "application/json"} if body is not None else {}
    headers |= sign_as(me(who), "POST", url, headers, body, now=datetime.now(UTC))
    return httpx.post(url, content=body, headers=headers, timeout=10)


def answer(response: httpx.Response, rid: str) -> tuple[int, str, str, object]:
    """The answer with the id asked about blanked: what must not depend on existence."""
    error = response.json()["error"]
    message = error["message"].replace(rid, "<id>")
    return response.status_code, error["code"], message, error["details"]


def gbr_report(world: RunningBroker) -> str:
    sealed = envelope(("USA",), USA_ONLY)
    assert post(world, "/v1/reports", sealed, "GBR").status_code == 201
    return report_id(sealed)


@pytest.mark.parametrize(
    "who",
    [
        pytest.param("USA", id="a-recipient-of-the-report"),
        pytest.param("EST", id="a-partner-with-an-agreement-with-the-originator"),
        pytest.param("DEU", id="a-partner-with-no-agreement"),
    ],
)
def test_recall_existence_oracle_attack(world: RunningBroker, who: str) -> None:
    r = world.redis()
    existing = gbr_report(world)
    before = snapshot(r)

    held = post(world, f"/v1/reports/{existing}/recall", None, who)
    never = post(world, f"/v1/reports/{NEVER_HELD}/recall", None, who)

    assert answer(held, existing) == answer(never, NEVER_HELD)
    assert answer(held, existing)[:2] == (404, "no_such_report")
    assert snapshot(r) == before  # nothing withdrawn, no recall notice, nothing audited
    assert r.hget(report_key(existing), "recalled") is None
    # The originator's own recall still works, and withdraws USA's undelivered copy.
    mine = post(world, f"/v1/reports/{existing}/recall", None, "GBR")
    assert mine.status_code == 200, mine.text
    assert mine.json()["withdrawn"] == ["USA"]


@pytest.mark.parametrize(
    ("who", "label"),
    [
        pytest.param(
            "USA", Label("SECRET", ["GBR"], "AMBER", topics=["apt"]),
            id="a-recipient-reposts-the-id-as-its-own",
        ),
        pytest.param(
            "EST", Label("CONFIDENTIAL", ["GBR"], "AMBER", topics=["apt"]),
            id="another-partner-reposts-the-id-as-its-own",
        ),
    ],
)  # fmt: skip
def test_report_id_collision_oracle_attack(world: RunningBroker, who: str, label: Label) -> None:
    r = world.redis()
    original = envelope(("USA",), USA_ONLY)
    assert post(world, "/v1/reports", original, "GBR").status_code == 201
    rid = report_id(original)
    stored = r.hgetall(report_key(rid))
    # GBR's own re-use of its id with other bytes: the answer every collision gets.
    own = seal(
        PAYLOAD, USA_ONLY, [("USA", enc_key("USA"))], me("GBR"), now=datetime.now(UTC),
        envelope_id=rid,
    )  # fmt: skip
    own_answer = post(world, "/v1/reports", own, "GBR")
    before = snapshot(r)

    # An envelope the attacker may post (to GBR, under an agreement), but under GBR's id.
    theirs = seal(
        PAYLOAD, label, [("GBR", enc_key("GBR"))], me(who), now=datetime.now(UTC),
        envelope_id=rid,
    )  # fmt: skip
    attack = post(world, "/v1/reports", theirs, who)

    assert answer(attack, rid) == answer(own_answer, rid)
    assert answer(attack, rid)[:2] == (409, "id_conflict")
    assert snapshot(r) == before
    assert r.hgetall(report_key(rid)) == stored  # GBR's report is untouched
    # The originator keeps its idempotency: the same bytes again get the same receipt.
    again = post(world, "/v1/reports", original, "GBR")
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.json()["receipt"]["originator"] == "GBR"
    # A fresh id from the same partner is accepted: the refusal was about the id alone.
    fresh = seal(
        PAYLOAD, label, [("GBR", enc_key("GBR"))], me(who), now=datetime.now(UTC),
        envelope_id=new_uuid7(datetime.now(UTC)),
    )  # fmt: skip
    accepted = post(world, "/v1/reports", fresh, who)
    assert accepted.status_code == 201, accepted.text
    assert [e[1][b"report"].decode() for e in r.xrange(inbox_key("GBR"))][-1] == report_id(fresh)
