"""The releasability policy a node derives from the governance documents it verified. Pure.

A node that pinned its governance root does not ask the broker who may receive a report: it runs
the releasability engine (:mod:`clients.policy.engine`, the broker's own) on the registry and
agreements that verification yielded, at its own clock. The broker's preview can then at most
say less than the documents do, never more: a grant it invents has no signed agreement under it
here, and a key it offers is never the one sealed to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tearline.clients.errors import TearlineError
from tearline.clients.governance.trust import TrustedState
from tearline.clients.policy.agreement import Agreement
from tearline.clients.policy.engine import Policy
from tearline.clients.protocol.label import Scheme

__all__ = ["node_policy", "scheme_of"]


def scheme_of(doc: Mapping[str, Any]) -> Scheme:
    """The marking scheme a registry carries (already shape-checked by ``parse_registry``)."""
    return Scheme(
        policy=doc["policy"],
        levels=tuple(doc["levels"]),
        caveats=frozenset(doc.get("caveats", ())),
        groups={g: frozenset(m) for g, m in doc.get("groups", {}).items()},
    )


def node_policy(trust: TrustedState) -> tuple[Policy, dict[str, str]]:
    """The policy of ``trust``: its registry's partners and scheme, and every agreement signed
    by all its parties with its status and the documents' expiry applied; and, agreement id →
    why, each signed agreement left out because its terms name a level or caveat the scheme
    lacks (the broker refuses such an agreement too, so it grants nothing either way)."""
    scheme = scheme_of(trust.scheme)
    agreements: list[Agreement] = []
    left_out: dict[str, str] = {}
    for aid, terms in trust.terms_in_force().items():
        problems = list(_unknown_terms(terms, scheme))
        if problems:
            left_out[aid] = "; ".join(problems)
            continue
        try:
            agreements.append(Agreement.from_dict(terms))
        except (TearlineError, ValueError, KeyError, TypeError) as exc:
            left_out[aid] = f"its terms do not parse ({exc})"
    return Policy(scheme, trust.registry, agreements), left_out


def _unknown_terms(terms: Mapping[str, Any], scheme: Scheme) -> Iterator[str]:
    levels = [terms["ceiling"]]
    if "require_pq_from" in terms:
        levels.append(terms["require_pq_from"])
    for pid, party in terms["parties"].items():
        party = party or {}
        if "clearance" in party:
            levels.append(party["clearance"])
        for caveat in party.get("caveats", ()):
            if caveat not in scheme.caveats:
                yield f"{pid}'s caveat {caveat} is not in the scheme"
    for level in levels:
        if not scheme.has_level(level):
            yield f"level {level} is not in the scheme"
