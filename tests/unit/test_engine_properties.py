"""Properties of the releasability engine (§4) over random agreements and labels.

A fixed pool of partners (real keys, cached by ``tests.factories``), random agreements over them
and random labels. Labels the scheme refuses are filtered out, never crash a property.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tearline.broker.policy.engine import Policy
from tearline.clients.errors import LabelError
from tearline.clients.policy.agreement import Agreement, Party
from tearline.clients.policy.engine import Decision, Reason
from tearline.clients.protocol.identity import Registry
from tearline.clients.protocol.label import TLP_LEVELS, Label, Scheme
from tests import factories as f
from tests.factories import LEVELS, NOW

EXAMPLES = settings(max_examples=100, deadline=None)

# GBR, USA, EST: pq-hybrid (also hold classic keys); CAN, AUS, FIN: classic only; FIN suspended.
POOL: dict[str, tuple[str, str]] = {
    "GBR": ("pq-hybrid", "active"),
    "USA": ("pq-hybrid", "active"),
    "EST": ("pq-hybrid", "active"),
    "CAN": ("classic", "active"),
    "AUS": ("classic", "active"),
    "FIN": ("classic", "suspended"),
}
IDS = sorted(POOL)
REGISTRY = Registry(
    f.partner(pid, "pq-hybrid" if suite == "pq-hybrid" else "classic", status)
    for pid, (suite, status) in POOL.items()
)
SCHEME = Scheme(
    policy=f.SCHEME.policy,
    levels=LEVELS,
    caveats=f.SCHEME.caveats,
    groups={**f.SCHEME.groups, "NORDIC": frozenset({"EST", "FIN"})},
)
CAVEATS = sorted(SCHEME.caveats)
TOPICS = ["apt", "maritime", "phishing", "ransomware"]
# REL TO may name registered partners, groups and ids nobody registered.
REL_TO_NAMES = [*IDS, "NZL", "FVEY", "NORDIC"]
OFFSETS = [timedelta(days=d) for d in (-3, -1, 0, 1, 3)]
SECONDS = timedelta(seconds=30)


# Strategies are built once: building them inside a draw costs more than the engine itself.
# Terms lean permissive, so that grants, and several grants for one pair, are common.
LEVEL = st.sampled_from(LEVELS)
MAYBE_LEVEL = st.sampled_from([None, None, *LEVELS])
HIGH_LEVEL = st.sampled_from(["SECRET", "SECRET", *LEVELS])
RARELY = st.sampled_from([False, False, False, True])
PARTIES = st.lists(st.sampled_from(IDS), min_size=2, max_size=len(IDS), unique=True)
ACCREDITED = [
    frozenset(CAVEATS),
    frozenset(CAVEATS),
    frozenset(),
    *(frozenset({c}) for c in CAVEATS),
]
PARTY = st.builds(Party, clearance=MAYBE_LEVEL, caveats=st.sampled_from(ACCREDITED))
SCOPE = st.none() | st.none() | st.frozensets(st.sampled_from(TOPICS), min_size=1)
OFFSET = st.sampled_from([OFFSETS[0], *OFFSETS])  # in force at NOW more often than not
LENGTH = st.sampled_from(OFFSETS[3:])  # one or three days, so valid_from < valid_until
AGREEMENT_IDS = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4, unique=True)


@st.composite
def agreements(draw: st.DrawFn, aid: str) -> Agreement:
    parties = draw(PARTIES)
    if draw(RARELY):  # an open agreement grants any label between its parties
        return f.agreement(aid, {p: Party(caveats=frozenset(CAVEATS)) for p in parties})
    terms = {pid: draw(PARTY) for pid in parties}
    start = draw(OFFSET)
    return f.agreement(
        aid,
        terms,
        ceiling=draw(HIGH_LEVEL),
        topics=draw(SCOPE),
        require_pq_from=draw(MAYBE_LEVEL),
        suspended=draw(RARELY),
        valid_from=NOW + start,
        valid_until=NOW + start + draw(LENGTH),
    )


@st.composite
def agreement_sets(draw: st.DrawFn) -> list[Agreement]:
    return [draw(agreements(aid)) for aid in draw(AGREEMENT_IDS)]


@dataclass(frozen=True)
class Request:
    classification: str
    releasable_to: tuple[str, ...]
    tlp: str
    caveats: tuple[str, ...]
    topics: tuple[str, ...]
    expires: datetime | None
    originator: str
    suite: str
    recalled: bool


REL_TO = st.lists(st.sampled_from(REL_TO_NAMES), min_size=1, max_size=5, unique=True)
LABEL_CAVEATS = st.lists(st.sampled_from(CAVEATS), max_size=2, unique=True)
LABEL_TOPICS = st.lists(st.sampled_from(TOPICS), max_size=3, unique=True)
EXPIRES = st.sampled_from([None, None, None, NOW - timedelta(hours=1), NOW, NOW + SECONDS])
REQUESTS = st.builds(
    Request,
    classification=st.sampled_from(["UNCLASSIFIED", "RESTRICTED", *LEVELS]),
    releasable_to=REL_TO.map(tuple),
    tlp=st.sampled_from(TLP_LEVELS),
    caveats=LABEL_CAVEATS.map(tuple),
    topics=LABEL_TOPICS.map(tuple),
    expires=EXPIRES,
    originator=st.sampled_from(IDS),
    suite=st.sampled_from(["classic", "pq-hybrid"]),
    recalled=RARELY,
)


def decide(policy: Policy, req: Request) -> dict[str, Decision]:
    """The engine's decisions, or a rejected example when the label is invalid for the scheme."""
    try:
        label = Label(
            req.classification,
            req.releasable_to,
            req.tlp,
            caveats=req.caveats,
            topics=req.topics,
            expires=req.expires,
        )
        return policy.decide(label, req.originator, req.suite, NOW, recalled=req.recalled)
    except LabelError:
        assume(False)
        raise  # unreachable: assume(False) raises


def granted(decisions: dict[str, Decision]) -> set[str]:
    return {pid for pid, d in decisions.items() if d.granted}


def build(agreements_: list[Agreement]) -> Policy:
    return f.policy(REGISTRY, agreements_, SCHEME)


# --- monotonicity ----------------------------------------------------------------------------


@EXAMPLES
@given(agreement_sets(), REQUESTS, st.sampled_from(REL_TO_NAMES))
def test_adding_a_name_to_rel_to_never_removes_a_recipient(
    agreements_: list[Agreement], req: Request, extra: str
) -> None:
    assume(extra not in req.releasable_to)
    policy = build(agreements_)
    before = granted(decide(policy, req))
    after = granted(decide(policy, replace(req, releasable_to=(*req.releasable_to, extra))))
    assert before <= after


@EXAMPLES
@given(agreement_sets(), REQUESTS, st.lists(LEVEL, min_size=2, max_size=2, unique=True))
def test_raising_the_classification_never_adds_a_recipient(
    agreements_: list[Agreement], req: Request, two_levels: list[str]
) -> None:
    lower, higher = sorted(two_levels, key=LEVELS.index)
    policy = build(agreements_)
    before = granted(decide(policy, replace(req, classification=lower)))
    after = granted(decide(policy, replace(req, classification=higher)))
    assert after <= before


@EXAMPLES
@given(agreement_sets(), REQUESTS, st.sampled_from(CAVEATS))
def test_adding_a_caveat_never_adds_a_recipient(
    agreements_: list[Agreement], req: Request, caveat: str
) -> None:
    assume(caveat not in req.caveats)
    policy = build(agreements_)
    before = granted(decide(policy, req))
    after = granted(decide(policy, replace(req, caveats=(*req.caveats, caveat))))
    assert after <= before


@EXAMPLES
@given(agreement_sets(), REQUESTS, st.sampled_from(TOPICS))
def test_adding_a_topic_never_adds_a_recipient(
    agreements_: list[Agreement], req: Request, topic: str
) -> None:
    assume(topic not in req.topics)
    policy = build(agreements_)
    before = granted(decide(policy, req))
    after = granted(decide(policy, replace(req, topics=(*req.topics, topic))))
    assert after <= before


# --- soundness of every grant ----------------------------------------------------------------


@EXAMPLES
@given(REQUESTS)
def test_empty_agreement_set_grants_nobody(req: Request) -> None:
    assert granted(decide(build([]), req)) == set()


@EXAMPLES
@given(agreement_sets(), REQUESTS)
def test_grants_exclude_the_originator_and_partners_outside_rel_to(
    agreements_: list[Agreement], req: Request
) -> None:
    recipients = granted(decide(build(agreements_), req))
    assert req.originator not in recipients
    assert recipients <= SCHEME.expand(req.releasable_to)


@EXAMPLES
@given(agreement_sets(), REQUESTS)
def test_every_grant_names_an_agreement_of_both_originator_and_recipient(
    agreements_: list[Agreement], req: Request
) -> None:
    by_id = {a.id: a for a in agreements_}
    for pid, d in decide(build(agreements_), req).items():
        if d.granted:
            assert d.agreement is not None
            assert req.originator in by_id[d.agreement].parties
            assert pid in by_id[d.agreement].parties
        else:
            assert d.agreement is None


@EXAMPLES
@given(agreement_sets(), REQUESTS)
def test_decision_covers_every_registry_partner(agreements_: list[Agreement], req: Request) -> None:
    assert sorted(decide(build(agreements_), req)) == IDS


# --- the engine against a literal reading of §4 ----------------------------------------------


def _agreement_reach(a: Agreement, pid: str, req: Request) -> int:
    """How far one agreement gets through rule 4, written straight from the text of §4."""
    rank = LEVELS.index
    level = rank(req.classification)
    if not (not a.suspended and a.valid_from <= NOW < a.valid_until):
        return 0
    if level > rank(a.ceiling):
        return 1
    clearance = a.parties[pid].clearance or a.ceiling
    if level > rank(clearance):
        return 2
    if a.topics is not None and not set(req.topics) <= a.topics:
        return 3
    if not set(req.caveats) <= a.parties[pid].caveats:
        return 4
    pq_required = a.require_pq_from is not None and level >= rank(a.require_pq_from)
    if pq_required and req.suite != "pq-hybrid":
        return 5
    return 6


RULE_4 = [
    Reason.AGREEMENT_NOT_IN_FORCE,
    Reason.CLASSIFICATION_ABOVE_CEILING,
    Reason.CLASSIFICATION_ABOVE_CLEARANCE,
    Reason.TOPIC_OUT_OF_SCOPE,
    Reason.CAVEAT_NOT_ACCREDITED,
    Reason.SUITE_TOO_WEAK,
]


def reference(agreements_: list[Agreement], req: Request, pid: str) -> Decision:
    partner = REGISTRY.get(pid)
    assert partner is not None
    kem = "X25519" if req.suite == "classic" else "ML-KEM-768+X25519"
    has_key = any(
        k.use == "enc" and k.alg == kem and not k.revoked and k.not_before <= NOW < k.not_after
        for k in partner.keys
    )
    if pid == req.originator:
        return Decision(pid, reason=Reason.ORIGINATOR)
    if req.expires is not None and req.expires <= NOW:  # §4 needs t < expires
        return Decision(pid, reason=Reason.EXPIRED)
    if req.recalled:
        return Decision(pid, reason=Reason.RECALLED)
    if partner.status != "active":
        return Decision(pid, reason=Reason.PARTNER_SUSPENDED)
    if not has_key:
        return Decision(pid, reason=Reason.NO_ENCRYPTION_KEY)
    if pid not in SCHEME.expand(req.releasable_to):
        return Decision(pid, reason=Reason.NOT_RELEASABLE_TO)
    shared = sorted(
        (a for a in agreements_ if req.originator in a.parties and pid in a.parties),
        key=lambda a: a.id,
    )
    if not shared:
        return Decision(pid, reason=Reason.NO_AGREEMENT)
    reaches = [(_agreement_reach(a, pid, req), a.id) for a in shared]
    granting = [aid for reach, aid in reaches if reach == len(RULE_4)]
    if granting:
        return Decision(pid, agreement=min(granting))
    return Decision(pid, reason=RULE_4[max(reach for reach, _ in reaches)])


@settings(max_examples=200, deadline=None)
@given(agreement_sets(), REQUESTS)
def test_engine_agrees_with_a_literal_reading_of_section_4(
    agreements_: list[Agreement], req: Request
) -> None:
    decisions = decide(build(agreements_), req)
    assert decisions == {pid: reference(agreements_, req, pid) for pid in IDS}


@EXAMPLES
@given(agreement_sets(), REQUESTS, st.permutations(range(4)))
def test_decisions_do_not_depend_on_the_order_agreements_are_given_in(
    agreements_: list[Agreement], req: Request, order: list[int]
) -> None:
    shuffled = [agreements_[i] for i in order if i < len(agreements_)]
    assert decide(build(shuffled), req) == decide(build(agreements_), req)


# --- any set of failing checks: the earliest is reported -------------------------------------


def _scenario(broken: frozenset[Reason]) -> tuple[Policy, Request]:
    """GBR → USA, granted unless broken; each broken reason makes exactly its check fail."""
    usa = f.partner(
        "USA", "pq-hybrid", "suspended" if Reason.PARTNER_SUSPENDED in broken else "active"
    )
    if Reason.NO_ENCRYPTION_KEY in broken:
        usa = replace(usa, keys=tuple(k for k in usa.keys if k.use != "enc"))
    reg = f.registry("GBR", usa, "CAN")
    parties = ["GBR", "CAN"] if Reason.NO_AGREEMENT in broken else ["GBR", "USA"]
    clearance = "RESTRICTED" if Reason.CLASSIFICATION_ABOVE_CLEARANCE in broken else None
    agreement = f.agreement(
        "a",
        {p: Party(clearance=clearance) for p in parties},
        ceiling="RESTRICTED" if Reason.CLASSIFICATION_ABOVE_CEILING in broken else "SECRET",
        topics=["apt"] if Reason.TOPIC_OUT_OF_SCOPE in broken else None,
        require_pq_from="CONFIDENTIAL" if Reason.SUITE_TOO_WEAK in broken else None,
        suspended=Reason.AGREEMENT_NOT_IN_FORCE in broken,
    )
    req = Request(
        classification="CONFIDENTIAL",
        releasable_to=("CAN",) if Reason.NOT_RELEASABLE_TO in broken else ("USA",),
        tlp="AMBER",
        caveats=("NUC",) if Reason.CAVEAT_NOT_ACCREDITED in broken else (),
        topics=("ransomware",),
        expires=NOW if Reason.EXPIRED in broken else None,
        originator="USA" if Reason.ORIGINATOR in broken else "GBR",
        suite="classic",
        recalled=Reason.RECALLED in broken,
    )
    return f.policy(reg, [agreement], SCHEME), req


@EXAMPLES
@given(st.frozensets(st.sampled_from(list(Reason))))
def test_partner_failing_any_set_of_checks_gets_the_earliest_reason(
    broken: frozenset[Reason],
) -> None:
    policy, req = _scenario(broken)
    decision = decide(policy, req)["USA"]
    if broken:
        earliest = min(broken, key=list(Reason).index)
        assert decision == Decision("USA", reason=earliest)
    else:
        assert decision == Decision("USA", agreement="a")
