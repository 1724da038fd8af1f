"""Releasability decisions per second, 10/100/500 partners x 10/100/1,000 agreements.

Baseline, measured in the same run: the same engine with its (originator, recipient) index
taken out, rescanning every agreement per decision. The indexed rate should stay flat as
agreements grow; the baseline should not.

    python -m bench.bench_engine [--quick]
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta

from bench._timing import rate, write
from tearline.clients.policy.agreement import Agreement, Party
from tearline.clients.policy.engine import Decision, Policy, _Terms
from tearline.clients.protocol.identity import Identity, Partner, Registry
from tearline.clients.protocol.label import Label, Scheme

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEVELS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET")
TOPICS = ("ransomware", "apt", "phishing", "maritime", "vulnerability", "fraud")
SCHEME = Scheme("BENCH", LEVELS, frozenset({"CYBER-OPS"}), {})


def build(partners: int, agreements: int, rng: random.Random) -> Policy:
    ids = [f"P{i:04d}" for i in range(partners)]
    identity = Identity.generate("P0000", "classic", NOW - timedelta(days=1))
    entry = identity.public_entry()
    # One key set shared by every synthetic partner (kids made unique): key generation is not
    # what this measures.
    registry = Registry(
        Partner.from_dict(
            {**entry, "id": pid, "keys": [{**k, "kid": f"{pid}-{k['kid']}"} for k in entry["keys"]]}
        )
        for pid in ids
    )
    made = []
    for n in range(agreements):
        parties = rng.sample(ids, k=min(len(ids), rng.choice((2, 2, 3, 5, 8))))
        made.append(
            Agreement(
                id=f"a{n:05d}",
                title="bench",
                valid_from=NOW - timedelta(days=10),
                valid_until=NOW + timedelta(days=10),
                ceiling=rng.choice(LEVELS[1:]),
                topics=None if rng.random() < 0.3 else frozenset(rng.sample(TOPICS, 3)),
                parties={p: Party() for p in parties},
            )
        )
    # Every partner in one group: a label names at most 64 entries, so a report for all 500 is
    # released to the group (the engine expands it).
    scheme = Scheme(SCHEME.policy, SCHEME.levels, SCHEME.caveats, {"ALL": frozenset(ids)})
    return Policy(scheme, registry, made)


class UnindexedPolicy(Policy):
    """The baseline: the same rules without the index; each decision scans every agreement."""

    def decide(  # type: ignore[override]
        self, label: Label, originator: str, suite: str, now: datetime
    ) -> dict[str, Decision]:
        req = self._request(label, originator, suite, now, False)
        rank = self.scheme.rank
        out = {}
        for pid in self.registry.ids:
            terms = tuple(
                _Terms(
                    a.id,
                    a,
                    rank(a.ceiling),
                    rank(a.ceiling),
                    a.parties[pid].caveats,
                    a.topics,
                    None,
                )
                for a in self.agreements.values()
                if originator in a.parties and pid in a.parties and pid != originator
            )
            out[pid] = self._decide(req, pid, terms)
        return out


def main() -> None:
    quick = "--quick" in sys.argv
    min_s = 0.05 if quick else 0.2
    rng = random.Random(7)
    label = Label("RESTRICTED", ["ALL"], "AMBER", topics=["apt"])
    rows = []
    print(
        f"{'partners':>8} {'agreements':>10} {'decisions/s':>12} {'unindexed/s':>12} "
        f"{'index gain':>10} {'vs 10 agreements':>17}"
    )
    for partners in (10, 100, 500):
        first = 0.0
        for agreements in (10, 100, 1000):
            indexed = build(partners, agreements, rng)
            unindexed = UnindexedPolicy(
                indexed.scheme, indexed.registry, indexed.agreements.values()
            )
            originators = [f"P{i:04d}" for i in range(min(partners, 20))]
            for o in originators:  # warm the per-originator index, as a running broker has
                indexed.decide(label, o, "classic", NOW)
            it = iter(range(1 << 62))

            def run(policy: Policy) -> None:
                policy.decide(label, originators[next(it) % len(originators)], "classic", NOW)

            fast = rate(lambda: run(indexed), ops_per_call=partners, min_s=min_s)
            slow = rate(lambda: run(unindexed), ops_per_call=partners, min_s=min_s)
            first = first or fast
            rows.append(
                {
                    "partners": partners,
                    "agreements": agreements,
                    "decisions_per_s": round(fast),
                    "unindexed_decisions_per_s": round(slow),
                    "index_gain": round(fast / slow, 2),
                    "rate_vs_10_agreements": round(fast / first, 2),
                }
            )
            print(
                f"{partners:>8} {agreements:>10} {fast:>12,.0f} {slow:>12,.0f} "
                f"{fast / slow:>9.2f}x {fast / first:>17.2f}"
            )
    print(f"written to {write('engine', rows)}")


if __name__ == "__main__":
    main()
