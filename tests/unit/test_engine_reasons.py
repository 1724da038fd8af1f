"""The releasability engine (§4), reason by reason, and the order in which the checks run.

Every case builds a real registry (real keys), real agreements and a real label with
``tests.factories`` and asserts the exact :class:`Decision` for the partner under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest

from tearline.clients.errors import InputError, LabelError
from tearline.clients.policy.agreement import Agreement, Party
from tearline.clients.policy.engine import Decision, Reason
from tearline.clients.protocol.identity import Partner, Registry
from tearline.clients.protocol.label import Label
from tests import factories as f
from tests.factories import NOW

SECOND = timedelta(seconds=1)
ORDER: tuple[Reason, ...] = tuple(Reason)  # the declaration order is the order of §4


def _enc_keys_changed(
    p: Partner,
    *,
    alg: str | None = None,
    revoked: bool | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Partner:
    """``p`` with its encryption keys (of ``alg``, or all of them) changed."""
    keys = []
    for k in p.keys:
        if k.use == "enc" and (alg is None or k.alg == alg):
            k = replace(
                k,
                revoked=k.revoked if revoked is None else revoked,
                not_before=k.not_before if not_before is None else not_before,
                not_after=k.not_after if not_after is None else not_after,
            )
        keys.append(k)
    return replace(p, keys=tuple(keys))


def _decide(
    reg: Registry,
    agreements: Iterable[Agreement],
    label_: Label,
    *,
    originator: str = "GBR",
    suite: str = "classic",
    now: datetime = NOW,
    recalled: bool = False,
) -> dict[str, Decision]:
    return f.policy(reg, agreements).decide(label_, originator, suite, now, recalled=recalled)


# --- one scenario, broken one check (or several) at a time -------------------------------------


@dataclass(frozen=True)
class Scenario:
    """GBR sends a CONFIDENTIAL ransomware report to USA under agreement ``gbr-usa``.

    As built, USA is granted. Each breaker below makes exactly one check of §4 fail, and the
    breakers touch disjoint fields, so any set of them can be combined.
    """

    originator: str = "GBR"
    subject: str = "USA"
    subject_status: str = "active"
    subject_keys_revoked: bool = False
    rel_to: tuple[str, ...] = ("USA",)
    parties: tuple[str, ...] = ("GBR", "USA")
    suspended: bool = False
    ceiling: str = "SECRET"
    clearance: str | None = None
    agreement_topics: frozenset[str] | None = None
    pq_from: str | None = None
    classification: str = "CONFIDENTIAL"
    topics: tuple[str, ...] = ("ransomware",)
    caveats: tuple[str, ...] = ()
    expires: datetime | None = None
    recalled: bool = False
    suite: str = "classic"

    def decide(self) -> Decision:
        usa = f.partner("USA", status=self.subject_status)
        if self.subject_keys_revoked:
            usa = _enc_keys_changed(usa, revoked=True)
        reg = f.registry("GBR", usa, "CAN")
        terms = {p: Party(clearance=self.clearance) if p == "USA" else None for p in self.parties}
        agreement = f.agreement(
            "gbr-usa",
            terms,
            ceiling=self.ceiling,
            topics=self.agreement_topics,
            require_pq_from=self.pq_from,
            suspended=self.suspended,
        )
        lbl = f.label(
            self.classification,
            self.rel_to,
            topics=self.topics,
            caveats=self.caveats,
            expires=self.expires,
        )
        decisions = f.policy(reg, [agreement]).decide(
            lbl, self.originator, self.suite, NOW, recalled=self.recalled
        )
        return decisions[self.subject]


BREAKERS: dict[Reason, Callable[[Scenario], Scenario]] = {
    Reason.ORIGINATOR: lambda s: replace(s, originator="USA"),
    Reason.EXPIRED: lambda s: replace(s, expires=NOW),  # t < expires is required: t == expires
    Reason.RECALLED: lambda s: replace(s, recalled=True),
    Reason.PARTNER_SUSPENDED: lambda s: replace(s, subject_status="suspended"),
    Reason.NO_ENCRYPTION_KEY: lambda s: replace(s, subject_keys_revoked=True),
    Reason.NOT_RELEASABLE_TO: lambda s: replace(s, rel_to=("CAN",)),
    Reason.NO_AGREEMENT: lambda s: replace(s, parties=("GBR", "CAN")),
    Reason.AGREEMENT_NOT_IN_FORCE: lambda s: replace(s, suspended=True),
    Reason.CLASSIFICATION_ABOVE_CEILING: lambda s: replace(s, ceiling="RESTRICTED"),
    Reason.CLASSIFICATION_ABOVE_CLEARANCE: lambda s: replace(s, clearance="RESTRICTED"),
    Reason.TOPIC_OUT_OF_SCOPE: lambda s: replace(s, agreement_topics=frozenset({"apt"})),
    Reason.CAVEAT_NOT_ACCREDITED: lambda s: replace(s, caveats=("NUC",)),
    Reason.SUITE_TOO_WEAK: lambda s: replace(s, pq_from="CONFIDENTIAL"),  # == classification
}

BEHAVIOUR = {
    Reason.ORIGINATOR: "originator_does_not_receive_its_own_report",
    Reason.EXPIRED: "report_at_its_expiry_instant_is_expired",
    Reason.RECALLED: "recalled_report_reaches_nobody",
    Reason.PARTNER_SUSPENDED: "suspended_partner_is_denied",
    Reason.NO_ENCRYPTION_KEY: "partner_whose_enc_keys_are_revoked_is_denied",
    Reason.NOT_RELEASABLE_TO: "partner_outside_rel_to_is_denied",
    Reason.NO_AGREEMENT: "partner_sharing_no_agreement_with_originator_is_denied",
    Reason.AGREEMENT_NOT_IN_FORCE: "suspended_agreement_grants_nothing",
    Reason.CLASSIFICATION_ABOVE_CEILING: "classification_above_agreement_ceiling_is_denied",
    Reason.CLASSIFICATION_ABOVE_CLEARANCE: "classification_above_partner_clearance_is_denied",
    Reason.TOPIC_OUT_OF_SCOPE: "topic_outside_agreement_scope_is_denied",
    Reason.CAVEAT_NOT_ACCREDITED: "caveat_partner_is_not_accredited_for_is_denied",
    Reason.SUITE_TOO_WEAK: "classic_suite_at_require_pq_from_level_is_denied",
}


def _broken(*reasons: Reason) -> Scenario:
    s = Scenario()
    for r in reasons:
        s = BREAKERS[r](s)
    return s


def test_every_reason_code_has_a_breaker_and_a_behaviour() -> None:
    assert set(BREAKERS) == set(Reason) == set(BEHAVIOUR)


def test_unbroken_scenario_is_granted_under_its_agreement() -> None:
    assert Scenario().decide() == Decision("USA", agreement="gbr-usa")


@pytest.mark.parametrize("reason", list(Reason), ids=[BEHAVIOUR[r] for r in Reason])
def test_each_failed_check_denies_with_its_reason(reason: Reason) -> None:
    assert _broken(reason).decide() == Decision("USA", reason=reason)


ADJACENT = list(itertools.pairwise(ORDER))


@pytest.mark.parametrize(
    ("first", "second"),
    ADJACENT,
    ids=[f"{BEHAVIOUR[a]}_before_{b.lower()}_is_checked" for a, b in ADJACENT],
)
def test_earlier_check_wins_over_the_next_one_in_the_order(first: Reason, second: Reason) -> None:
    # Each breaker on its own gives its own reason, so this case really fails both checks.
    assert _broken(second).decide().reason is second
    assert _broken(first, second).decide() == Decision("USA", reason=first)


ALL_PAIRS = list(itertools.combinations(ORDER, 2))


@pytest.mark.parametrize(
    ("first", "second"), ALL_PAIRS, ids=[f"{a.lower()}_beats_{b.lower()}" for a, b in ALL_PAIRS]
)
def test_partner_failing_two_checks_gets_the_earlier_reason(first: Reason, second: Reason) -> None:
    assert _broken(second, first).decide() == Decision("USA", reason=first)


def test_partner_failing_every_check_is_denied_as_originator() -> None:
    assert _broken(*ORDER).decide() == Decision("USA", reason=Reason.ORIGINATOR)


# --- the examples of the brief, by name ----------------------------------------------------


def test_suspended_partner_is_denied_before_releasability_is_checked() -> None:
    reg = f.registry("GBR", f.partner("USA", status="suspended"))
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], f.label(releasable_to=["GBR"]))
    assert decisions["USA"] == Decision("USA", reason=Reason.PARTNER_SUSPENDED)


def test_originator_is_denied_as_originator_even_when_the_report_is_expired() -> None:
    reg = f.registry("GBR", "USA")
    lbl = f.label(releasable_to=["GBR", "USA"], expires=NOW - SECOND)
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], lbl)
    assert decisions["GBR"] == Decision("GBR", reason=Reason.ORIGINATOR)
    assert decisions["USA"] == Decision("USA", reason=Reason.EXPIRED)


def test_report_just_before_its_expiry_is_delivered() -> None:
    reg = f.registry("GBR", "USA")
    lbl = f.label(expires=NOW + SECOND)
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], lbl)
    assert decisions["USA"] == Decision("USA", agreement="a")


def test_partner_outside_rel_to_is_denied_before_agreements_are_looked_at() -> None:
    reg = f.registry("GBR", "USA", "CAN")
    decisions = _decide(reg, [], f.label(releasable_to=["USA"]))
    assert decisions["CAN"] == Decision("CAN", reason=Reason.NOT_RELEASABLE_TO)
    assert decisions["USA"] == Decision("USA", reason=Reason.NO_AGREEMENT)


def test_agreement_with_the_partner_but_not_the_originator_does_not_count() -> None:
    reg = f.registry("GBR", "USA", "CAN")
    agreements = [f.agreement("can-usa", ["CAN", "USA"])]
    decisions = _decide(reg, agreements, f.label(releasable_to=["USA", "CAN"]))
    assert decisions["USA"] == Decision("USA", reason=Reason.NO_AGREEMENT)
    assert decisions["CAN"] == Decision("CAN", reason=Reason.NO_AGREEMENT)


# --- several agreements between the same two partners --------------------------------------


def test_denial_reports_the_agreement_that_got_furthest() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [
        f.agreement("a-ended", ["GBR", "USA"], valid_until=NOW - SECOND),  # fails check 1
        f.agreement("b-topics", ["GBR", "USA"], topics=["apt"]),  # fails check 4
        f.agreement("c-ceiling", ["GBR", "USA"], ceiling="UNCLASSIFIED"),  # fails check 2
    ]
    lbl = f.label("RESTRICTED", topics=["ransomware"])
    decisions = _decide(reg, agreements, lbl)
    assert decisions["USA"] == Decision("USA", reason=Reason.TOPIC_OUT_OF_SCOPE)


def test_furthest_agreement_wins_whatever_its_id_sorts_as() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [
        f.agreement("z-suite", ["GBR", "USA"], require_pq_from="UNCLASSIFIED"),  # check 6
        f.agreement("a-suspended", ["GBR", "USA"], suspended=True),  # check 1
    ]
    decisions = _decide(reg, agreements, f.label())
    assert decisions["USA"] == Decision("USA", reason=Reason.SUITE_TOO_WEAK)


def test_agreements_failing_at_the_same_check_give_that_reason_and_name_no_agreement() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [
        f.agreement("b-low", ["GBR", "USA"], ceiling="UNCLASSIFIED"),
        f.agreement("a-low", ["GBR", "USA"], ceiling="RESTRICTED"),
    ]
    decisions = _decide(reg, agreements, f.label("CONFIDENTIAL"))
    assert decisions["USA"] == Decision("USA", reason=Reason.CLASSIFICATION_ABOVE_CEILING)
    assert decisions["USA"].agreement is None


def test_grant_names_the_smallest_granting_agreement_id() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [
        f.agreement("m-grants", ["GBR", "USA"]),
        f.agreement("a-denies", ["GBR", "USA"], ceiling="UNCLASSIFIED"),
        f.agreement("k-grants", ["GBR", "USA", "CAN"]),
        f.agreement("z-grants", ["GBR", "USA"]),
    ]
    decisions = _decide(reg, agreements, f.label("RESTRICTED"))
    assert decisions["USA"] == Decision("USA", agreement="k-grants")


def test_one_granting_agreement_outweighs_any_number_of_denying_ones() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [
        f.agreement("a", ["GBR", "USA"], suspended=True),
        f.agreement("b", ["GBR", "USA"], topics=["apt"]),
        f.agreement("c", ["GBR", "USA"], ceiling="UNCLASSIFIED"),
        f.agreement("d", ["GBR", "USA"]),
    ]
    decisions = _decide(reg, agreements, f.label("RESTRICTED", topics=["ransomware"]))
    assert decisions["USA"] == Decision("USA", agreement="d")


def test_each_recipient_is_granted_under_its_own_agreement() -> None:
    reg = f.registry("GBR", "USA", "CAN")
    agreements = [f.agreement("gbr-usa", ["GBR", "USA"]), f.agreement("gbr-can", ["GBR", "CAN"])]
    decisions = _decide(reg, agreements, f.label(releasable_to=["USA", "CAN"]))
    assert decisions["USA"] == Decision("USA", agreement="gbr-usa")
    assert decisions["CAN"] == Decision("CAN", agreement="gbr-can")


# --- the terms of one agreement --------------------------------------------------------------


def test_groups_in_rel_to_expand_to_their_members() -> None:
    reg = f.registry("GBR", "USA", "CAN", "EST")
    agreements = [f.agreement("a", ["GBR", "USA", "CAN", "EST"])]
    decisions = _decide(reg, agreements, f.label(releasable_to=["FVEY"]))
    assert decisions["USA"] == Decision("USA", agreement="a")
    assert decisions["CAN"] == Decision("CAN", agreement="a")
    assert decisions["EST"] == Decision("EST", reason=Reason.NOT_RELEASABLE_TO)


def test_group_and_partner_ids_mix_in_rel_to() -> None:
    reg = f.registry("GBR", "USA", "EST")
    agreements = [f.agreement("a", ["GBR", "USA", "EST"])]
    decisions = _decide(reg, agreements, f.label(releasable_to=["EST", "FVEY"]))
    assert decisions["USA"] == Decision("USA", agreement="a")
    assert decisions["EST"] == Decision("EST", agreement="a")


@pytest.mark.parametrize(
    ("classification", "expected"),
    [
        pytest.param("CONFIDENTIAL", Decision("USA", agreement="a"), id="at_ceiling_is_granted"),
        pytest.param(
            "SECRET",
            Decision("USA", reason=Reason.CLASSIFICATION_ABOVE_CEILING),
            id="above_ceiling_is_a_ceiling_denial_not_a_clearance_one",
        ),
    ],
)
def test_clearance_defaults_to_the_ceiling(classification: str, expected: Decision) -> None:
    reg = f.registry("GBR", "USA")
    agreements = [f.agreement("a", {"GBR": None, "USA": Party()}, ceiling="CONFIDENTIAL")]
    assert _decide(reg, agreements, f.label(classification))["USA"] == expected


@pytest.mark.parametrize(
    ("classification", "expected"),
    [
        pytest.param("RESTRICTED", Decision("USA", agreement="a"), id="at_clearance_is_granted"),
        pytest.param(
            "CONFIDENTIAL",
            Decision("USA", reason=Reason.CLASSIFICATION_ABOVE_CLEARANCE),
            id="above_clearance_below_ceiling_is_denied",
        ),
    ],
)
def test_explicit_clearance_limits_the_partner(classification: str, expected: Decision) -> None:
    reg = f.registry("GBR", "USA")
    terms = {"GBR": None, "USA": Party(clearance="RESTRICTED")}
    agreements = [f.agreement("a", terms, ceiling="SECRET")]
    assert _decide(reg, agreements, f.label(classification))["USA"] == expected


def test_originators_own_clearance_does_not_limit_what_it_sends() -> None:
    reg = f.registry("GBR", "USA")
    terms = {"GBR": Party(clearance="UNCLASSIFIED"), "USA": None}
    decisions = _decide(reg, [f.agreement("a", terms)], f.label("SECRET"))
    assert decisions["USA"] == Decision("USA", agreement="a")


@pytest.mark.parametrize(
    "topics",
    [
        pytest.param((), id="no_topics"),
        pytest.param(("ransomware",), id="one_topic"),
        pytest.param(("anything-at-all", "maritime", "x.y_z"), id="many_topics"),
    ],
)
def test_agreement_with_every_topic_matches_any_topics(topics: tuple[str, ...]) -> None:
    reg = f.registry("GBR", "USA")
    decisions = _decide(
        reg, [f.agreement("a", ["GBR", "USA"], topics=None)], f.label(topics=topics)
    )
    assert decisions["USA"] == Decision("USA", agreement="a")


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        pytest.param((), Decision("USA", agreement="a"), id="no_topics_is_a_subset"),
        pytest.param(("apt",), Decision("USA", agreement="a"), id="topic_in_scope"),
        pytest.param(("apt", "maritime"), Decision("USA", agreement="a"), id="all_topics_in_scope"),
        pytest.param(
            ("apt", "ransomware"),
            Decision("USA", reason=Reason.TOPIC_OUT_OF_SCOPE),
            id="one_topic_out_of_scope_is_enough_to_deny",
        ),
    ],
)
def test_every_topic_must_be_in_scope(topics: tuple[str, ...], expected: Decision) -> None:
    reg = f.registry("GBR", "USA")
    agreements = [f.agreement("a", ["GBR", "USA"], topics=["apt", "maritime"])]
    assert _decide(reg, agreements, f.label(topics=topics))["USA"] == expected


@pytest.mark.parametrize(
    ("accredited", "caveats", "expected"),
    [
        pytest.param(
            None,
            ("NUC",),
            Decision("USA", reason=Reason.CAVEAT_NOT_ACCREDITED),
            id="party_without_caveats_is_accredited_for_none",
        ),
        pytest.param(None, (), Decision("USA", agreement="a"), id="no_caveats_need_none"),
        pytest.param(
            frozenset({"NUC"}),
            ("NUC", "CYBER-OPS"),
            Decision("USA", reason=Reason.CAVEAT_NOT_ACCREDITED),
            id="all_caveats_are_required",
        ),
        pytest.param(
            frozenset({"NUC", "CYBER-OPS"}),
            ("NUC", "CYBER-OPS"),
            Decision("USA", agreement="a"),
            id="accredited_for_all_caveats_is_granted",
        ),
    ],
)
def test_caveats_default_to_none(
    accredited: frozenset[str] | None, caveats: tuple[str, ...], expected: Decision
) -> None:
    reg = f.registry("GBR", "USA")
    terms = {"GBR": None, "USA": None if accredited is None else Party(caveats=accredited)}
    decisions = _decide(reg, [f.agreement("a", terms)], f.label(caveats=caveats))
    assert decisions["USA"] == expected


def test_caveats_accredited_to_another_party_do_not_count() -> None:
    reg = f.registry("GBR", "USA", "CAN")
    nuc = Party(caveats=frozenset({"NUC"}))
    terms = {"GBR": nuc, "USA": None, "CAN": nuc}
    decisions = _decide(
        reg, [f.agreement("a", terms)], f.label(releasable_to=["USA", "CAN"], caveats=["NUC"])
    )
    assert decisions["USA"] == Decision("USA", reason=Reason.CAVEAT_NOT_ACCREDITED)
    assert decisions["CAN"] == Decision("CAN", agreement="a")


@pytest.mark.parametrize(
    ("classification", "suite", "expected"),
    [
        pytest.param("RESTRICTED", "classic", Decision("USA", agreement="a"), id="below_classic"),
        pytest.param("RESTRICTED", "pq-hybrid", Decision("USA", agreement="a"), id="below_pq"),
        pytest.param(
            "CONFIDENTIAL",
            "classic",
            Decision("USA", reason=Reason.SUITE_TOO_WEAK),
            id="equal_classic_is_too_weak",
        ),
        pytest.param("CONFIDENTIAL", "pq-hybrid", Decision("USA", agreement="a"), id="equal_pq"),
        pytest.param(
            "SECRET",
            "classic",
            Decision("USA", reason=Reason.SUITE_TOO_WEAK),
            id="above_classic_is_too_weak",
        ),
        pytest.param("SECRET", "pq-hybrid", Decision("USA", agreement="a"), id="above_pq"),
    ],
)
def test_require_pq_from_applies_from_its_level_up(
    classification: str, suite: str, expected: Decision
) -> None:
    reg = f.registry("GBR", "USA")
    agreements = [f.agreement("a", ["GBR", "USA"], require_pq_from="CONFIDENTIAL")]
    decisions = _decide(reg, agreements, f.label(classification), suite=suite)
    assert decisions["USA"] == expected


def test_agreement_without_require_pq_from_accepts_classic_at_any_level() -> None:
    reg = f.registry("GBR", "USA")
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], f.label("SECRET"))
    assert decisions["USA"] == Decision("USA", agreement="a")


VALID_FROM = NOW - timedelta(days=10)
VALID_UNTIL = NOW + timedelta(days=10)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(
            VALID_FROM - SECOND,
            Decision("USA", reason=Reason.AGREEMENT_NOT_IN_FORCE),
            id="before_valid_from_not_in_force",
        ),
        pytest.param(VALID_FROM, Decision("USA", agreement="a"), id="valid_from_is_inclusive"),
        pytest.param(
            VALID_UNTIL - SECOND, Decision("USA", agreement="a"), id="just_before_valid_until"
        ),
        pytest.param(
            VALID_UNTIL,
            Decision("USA", reason=Reason.AGREEMENT_NOT_IN_FORCE),
            id="valid_until_is_exclusive",
        ),
    ],
)
def test_agreement_is_in_force_from_valid_from_until_before_valid_until(
    now: datetime, expected: Decision
) -> None:
    reg = f.registry("GBR", "USA")
    agreements = [f.agreement("a", ["GBR", "USA"], valid_from=VALID_FROM, valid_until=VALID_UNTIL)]
    assert _decide(reg, agreements, f.label(), now=now)["USA"] == expected


def test_suspended_agreement_is_not_in_force_within_its_validity() -> None:
    reg = f.registry("GBR", "USA")
    agreements = [f.agreement("a", ["GBR", "USA"], suspended=True)]
    decisions = _decide(reg, agreements, f.label())
    assert decisions["USA"] == Decision("USA", reason=Reason.AGREEMENT_NOT_IN_FORCE)


# --- the recipient's encryption keys ---------------------------------------------------------


KEY_FROM = NOW - timedelta(days=5)
KEY_UNTIL = NOW + timedelta(days=5)


@pytest.mark.parametrize(
    ("usa", "suite", "now", "expected"),
    [
        pytest.param(
            _enc_keys_changed(f.partner("USA"), revoked=True),
            "classic",
            NOW,
            Decision("USA", reason=Reason.NO_ENCRYPTION_KEY),
            id="revoked_enc_key_is_no_key",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), alg="ML-KEM-768+X25519", revoked=True),
            "classic",
            NOW,
            Decision("USA", agreement="a"),
            id="revoked_pq_key_leaves_classic_delivery",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), alg="ML-KEM-768+X25519", revoked=True),
            "pq-hybrid",
            NOW,
            Decision("USA", reason=Reason.NO_ENCRYPTION_KEY),
            id="revoked_pq_key_stops_pq_delivery",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), not_before=KEY_FROM, not_after=KEY_UNTIL),
            "classic",
            KEY_UNTIL,
            Decision("USA", reason=Reason.NO_ENCRYPTION_KEY),
            id="key_at_not_after_is_expired",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), not_before=KEY_FROM, not_after=KEY_UNTIL),
            "classic",
            KEY_UNTIL - SECOND,
            Decision("USA", agreement="a"),
            id="key_just_before_not_after_is_valid",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), not_before=KEY_FROM, not_after=KEY_UNTIL),
            "classic",
            KEY_FROM - SECOND,
            Decision("USA", reason=Reason.NO_ENCRYPTION_KEY),
            id="key_before_not_before_is_not_yet_valid",
        ),
        pytest.param(
            _enc_keys_changed(f.partner("USA"), not_before=KEY_FROM, not_after=KEY_UNTIL),
            "classic",
            KEY_FROM,
            Decision("USA", agreement="a"),
            id="key_at_not_before_is_valid",
        ),
        pytest.param(
            f.partner("USA", suite="classic"),
            "pq-hybrid",
            NOW,
            Decision("USA", reason=Reason.NO_ENCRYPTION_KEY),
            id="classic_only_partner_has_no_pq_hybrid_key",
        ),
        pytest.param(
            f.partner("USA", suite="pq-hybrid"),
            "classic",
            NOW,
            Decision("USA", agreement="a"),
            id="pq_hybrid_partner_also_receives_classic",
        ),
    ],
)
def test_recipient_needs_a_valid_enc_key_for_the_suite(
    usa: Partner, suite: str, now: datetime, expected: Decision
) -> None:
    reg = f.registry("GBR", usa)
    agreements = [
        f.agreement(
            "a",
            ["GBR", "USA"],
            valid_from=NOW - timedelta(days=100),
            valid_until=NOW + timedelta(days=100),
        )
    ]
    assert _decide(reg, agreements, f.label(), suite=suite, now=now)["USA"] == expected


def test_a_second_valid_key_keeps_a_partner_reachable_when_one_is_revoked() -> None:
    usa = f.partner("USA", suite="classic")
    spare = f.partner("USA", suite="pq-hybrid")  # different key material, same algorithms
    old = _enc_keys_changed(usa, revoked=True)
    extra = [replace(k, kid="USA-enc-2") for k in spare.keys if k.alg == "X25519"]
    reg = f.registry("GBR", replace(old, keys=(*old.keys, *extra)))
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], f.label())
    assert decisions["USA"] == Decision("USA", agreement="a")


# --- labels the scheme refuses, and the shape of a decision ---------------------------------


@pytest.mark.parametrize(
    "lbl",
    [
        pytest.param(f.label("TOP-SECRET"), id="unknown_level"),
        pytest.param(f.label(caveats=["ORCON"]), id="unknown_caveat"),
        pytest.param(f.label(policy="SOME-OTHER-SCHEME"), id="other_scheme"),
        pytest.param(f.label(releasable_to=["FVEY"], tlp="RED"), id="tlp_red_with_a_group"),
    ],
)
def test_label_the_scheme_refuses_raises_label_error(lbl: Label) -> None:
    reg = f.registry("GBR", "USA")
    with pytest.raises(LabelError):
        _decide(reg, [f.agreement("a", ["GBR", "USA"])], lbl)


def test_label_naming_this_scheme_is_accepted() -> None:
    reg = f.registry("GBR", "USA")
    lbl = f.label(policy=f.SCHEME.policy)
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], lbl)
    assert decisions["USA"] == Decision("USA", agreement="a")


def test_tlp_red_naming_each_partner_is_accepted() -> None:
    reg = f.registry("GBR", "USA")
    lbl = f.label(releasable_to=["USA"], tlp="RED")
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], lbl)
    assert decisions["USA"] == Decision("USA", agreement="a")


def test_unknown_suite_is_refused_as_input_error() -> None:
    reg = f.registry("GBR", "USA")
    with pytest.raises(InputError) as excinfo:
        _decide(reg, [f.agreement("a", ["GBR", "USA"])], f.label(), suite="rot13")
    assert excinfo.value.code == "invalid_suite"


def test_decide_returns_a_decision_for_every_registry_partner() -> None:
    ids = ["AUS", "CAN", "EST", "GBR", "USA"]
    reg = f.registry(*ids)
    decisions = _decide(reg, [f.agreement("a", ["GBR", "USA"])], f.label())
    assert sorted(decisions) == ids
    assert all(decisions[pid].partner == pid for pid in ids)
    assert [pid for pid, d in decisions.items() if d.granted] == ["USA"]


def test_decide_for_chosen_partners_only() -> None:
    reg = f.registry("GBR", "USA", "CAN")
    pol = f.policy(reg, [f.agreement("a", ["GBR", "USA"])])
    decisions = pol.decide(f.label(), "GBR", "classic", NOW, partners=["USA"])
    assert decisions == {"USA": Decision("USA", agreement="a")}


def test_decide_for_an_unregistered_partner_is_an_input_error() -> None:
    reg = f.registry("GBR", "USA")
    pol = f.policy(reg, [f.agreement("a", ["GBR", "USA"])])
    with pytest.raises(InputError):
        pol.decide(f.label(), "GBR", "classic", NOW, partners=["ZZZ"])


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        pytest.param(
            Decision("USA", agreement="a"), {"decision": "grant", "agreement": "a"}, id="grant"
        ),
        pytest.param(
            Decision("USA", reason=Reason.NO_AGREEMENT),
            {"decision": "deny", "reason": "NO_AGREEMENT"},
            id="deny",
        ),
    ],
)
def test_decision_explains_itself_as_a_stable_dict(
    decision: Decision, expected: dict[str, str]
) -> None:
    assert decision.to_dict() == expected


def test_reason_codes_are_their_names() -> None:
    assert [r.value for r in Reason] == [r.name for r in Reason]
