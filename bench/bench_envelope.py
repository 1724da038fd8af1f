"""seal, verify and open per second for both suites at 1, 5 and 20 recipients.

Baseline, measured in the same run: the bare signature verifications a suite needs (one
Ed25519, plus one ML-DSA-65 for pq-hybrid) on the same header. ``verify / bare`` shows what
parsing and checks cost on top of the cryptography the broker cannot avoid.

    python -m bench.bench_envelope [--quick]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from bench._timing import rate, write
from tearline.clients.protocol.encoding import b64d, strict_loads
from tearline.clients.protocol.envelope import open, pae, seal, verify
from tearline.clients.protocol.identity import Identity, Registry, Suite
from tearline.clients.protocol.label import Label, Scheme

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SCHEME = Scheme("BENCH", ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"))
PAYLOAD = (
    b'{"type":"bundle","id":"bundle--00000000-0000-4000-8000-000000000000","objects":[]}'
    + b" " * 1900
)


def main() -> None:
    min_s = 0.05 if "--quick" in sys.argv else 0.3
    ids = [f"P{i:03d}" for i in range(21)]
    identities = {p: Identity.generate(p, "pq-hybrid", NOW - timedelta(days=1)) for p in ids}
    registry = Registry.from_dicts(i.public_entry() for i in identities.values())
    origin = identities[ids[0]]
    label = Label("RESTRICTED", ids[1:], "AMBER", topics=["apt"])
    rows = []
    print(
        f"{'suite':>9} {'recipients':>10} {'seal/s':>9} {'verify/s':>9} {'open/s':>9} "
        f"{'bare sig verify/s':>17} {'verify/bare':>11} {'bytes':>7}"
    )
    suites: tuple[Suite, ...] = ("classic", "pq-hybrid")
    for suite in suites:
        for n in (1, 5, 20):
            recipients = []
            for p in ids[1 : n + 1]:
                partner = registry.get(p)
                assert partner is not None
                key = partner.enc_key(suite, NOW)
                assert key is not None
                recipients.append((p, key))
            envelope = seal(PAYLOAD, label, recipients, origin, now=NOW, suite=suite)
            reader = identities[ids[1]]
            outer = strict_loads(envelope)
            message = pae(b64d(outer["header"]))
            sigs = [(registry.verify_key(s["kid"]), b64d(s["sig"])) for s in outer["signatures"]]

            def bare() -> None:
                for key, sig in sigs:
                    key.verify(sig, message)

            sealed = rate(
                lambda: seal(PAYLOAD, label, recipients, origin, now=NOW, suite=suite), min_s=min_s
            )
            verified = rate(lambda: verify(envelope, registry, SCHEME, now=NOW), min_s=min_s)
            opened = rate(lambda: open(envelope, reader, registry, SCHEME, now=NOW), min_s=min_s)
            base = rate(bare, min_s=min_s)
            rows.append(
                {
                    "suite": suite,
                    "recipients": n,
                    "seal_per_s": round(sealed),
                    "verify_per_s": round(verified),
                    "open_per_s": round(opened),
                    "bare_signature_verify_per_s": round(base),
                    "verify_vs_bare": round(verified / base, 2),
                    "envelope_bytes": len(envelope),
                }
            )
            print(
                f"{suite:>9} {n:>10} {sealed:>9,.0f} {verified:>9,.0f} {opened:>9,.0f} "
                f"{base:>17,.0f} {verified / base:>11.2f} {len(envelope):>7}"
            )
    print(f"written to {write('envelope', rows)}")


if __name__ == "__main__":
    main()
