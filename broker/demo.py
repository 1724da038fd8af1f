"""``tearline demo``: a broker on an embedded Redis, five partner nodes, one report.

Shows a report reaching the entitled partners, decrypted there, and being refused to the
others with the reasons; then a sender that tries to slip in an extra recipient is refused
whole. Everything is real: keys, signatures, HTTP, Redis. Keys are TEST keys in a temp folder.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from tearline.broker.app import create_app
from tearline.broker.embedded import EmbeddedRedis
from tearline.broker.runner import broker_in_thread
from tearline.broker.settings import Settings
from tearline.clients.errors import DeniedError
from tearline.clients.keyfile import Identity, generate, write_keypair
from tearline.clients.partner import Report
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.label import Label
from tearline.clients.sync import Partner
from tearline.clients.terminal import console as make_console

NODES = {
    "GBR": ("United Kingdom", "pq-hybrid"),
    "USA": ("United States", "pq-hybrid"),
    "EST": ("Estonia", "classic"),
    "FIN": ("Finland", "classic"),
    "DEU": ("Germany", "classic"),
}
AGREEMENTS = [
    {
        "id": "gbr-usa",
        "title": "UK-US cyber exchange",
        "ceiling": "SECRET",
        "topics": ["*"],
        "parties": {"GBR": {}, "USA": {}},
    },
    {
        "id": "baltic-ransomware",
        "title": "Baltic ransomware task force",
        "ceiling": "CONFIDENTIAL",
        "topics": ["ransomware", "phishing"],
        "parties": {"GBR": {}, "EST": {}, "FIN": {"clearance": "RESTRICTED"}},
    },
]
BUNDLE = {
    "type": "bundle",
    "id": "bundle--0f6d3c5e-6a55-4f0b-9c8e-2b1e7f0c9a11",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--3b4c5d6e-7f80-4192-a3b4-c5d6e7f80912",
            "created": "2026-11-27T10:00:00.000Z",
            "modified": "2026-11-27T10:00:00.000Z",
            "name": "DEMO: ransomware C2 domain",
            "pattern": "[domain-name:value = 'c2.demo.invalid']",
            "pattern_type": "stix",
            "valid_from": "2026-11-27T10:00:00Z",
        }
    ],
}
LABEL = Label("CONFIDENTIAL", ["USA", "EST", "FIN", "DEU"], "AMBER", topics=["ransomware"])


def _write_policies(folder: Path, identities: dict[str, Identity], now: datetime) -> None:
    (folder / "agreements").mkdir(parents=True)
    scheme = {
        "policy": "TEARLINE-DEMO",
        "levels": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
        "caveats": ["CYBER-OPS"],
        "groups": {"BALTIC": ["EST", "FIN"]},
    }
    (folder / "scheme.yaml").write_text(yaml.safe_dump(scheme))
    entries = [identities[p].public_entry(NODES[p][0]) for p in NODES]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    valid = {
        "valid_from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid_until": (now + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for agreement in AGREEMENTS:
        path = folder / "agreements" / f"{agreement['id']}.yaml"
        path.write_text(yaml.safe_dump({**agreement, **valid}, sort_keys=False))


def run_demo(workdir: Path | None, redis_url: str | None, as_json: bool) -> dict[str, Any]:
    console = make_console(quiet=as_json)  # not folded at 80 columns when piped
    now = datetime.now(UTC).replace(microsecond=0)
    with ExitStack() as stack:
        root = workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tearline-demo-"))
        )
        keys = root / "keys"
        identities = {}
        for pid, (name, suite) in NODES.items():
            identity = generate(pid, suite, now - timedelta(minutes=1), timedelta(days=30))  # type: ignore[arg-type]
            write_keypair(identity, keys, name)
            identities[pid] = Identity.load(keys / f"{pid}.identity.json")
        _write_policies(root / "policies", identities, now)
        if console.is_terminal:
            console.rule("[bold]Tearline demo")
        console.print(f"keys and policies in {root}")
        if redis_url is None:
            redis = stack.enter_context(EmbeddedRedis(root / "data"))
            redis_url = redis.url
            console.print(f"embedded redis-server at {redis_url} (AOF on)")
        settings = Settings(
            redis_url=redis_url, policies_dir=root / "policies", data_dir=root / "data"
        )
        server = stack.enter_context(broker_in_thread(create_app(settings)))
        console.print(f"broker at {server.url}\n")
        nodes = {pid: stack.enter_context(Partner(server.url, identities[pid])) for pid in NODES}

        gbr = nodes["GBR"]
        decisions = gbr.preview(LABEL)
        table = Table(
            title=f"GBR asks: who may receive {LABEL.classification} REL TO "
            f"{', '.join(LABEL.releasable_to)} on {', '.join(LABEL.topics)}?"
        )
        table.add_column("partner")
        table.add_column("decision")
        table.add_column("agreement or reason")
        for pid, d in sorted(decisions.items()):
            style = "green" if d.granted else "red"
            table.add_row(pid, f"[{style}]{d.decision}", d.agreement or d.reason or "")
        console.print(table)

        receipt = gbr.publish(BUNDLE, LABEL)
        console.print(
            f"\nGBR posted report {receipt.id}; the broker's signed receipt names "
            + ", ".join(f"{r.partner} ({r.agreement})" for r in receipt.recipients)
        )

        received: dict[str, list[str]] = {}
        table = Table(title="What each partner's node received and decrypted")
        table.add_column("partner")
        table.add_column("received")
        for pid in sorted(NODES):
            if pid == "GBR":
                continue
            reports = nodes[pid].inbox(
                wait_s=1 if any(r.partner == pid for r in receipt.recipients) else 0
            )
            received[pid] = [r.id for r in reports]
            for report in reports:
                nodes[pid].ack_report(report)
            what = ", ".join(
                f"{r.id[:8]}… from {r.originator}: {r.json()['objects'][0]['name']}"
                for r in reports
                if isinstance(r, Report)
            )
            table.add_row(pid, f"[green]{what}" if reports else "[dim]nothing")
        console.print(table)

        # A sender that seals for a partner the policy excludes is refused whole.
        directory = gbr.directory()
        deu = directory.registry.get("DEU")
        usa = directory.registry.get("USA")
        assert deu is not None
        assert usa is not None
        deu_key, usa_key = deu.enc_key("classic", now), usa.enc_key("classic", now)
        assert deu_key is not None
        assert usa_key is not None
        envelope = seal(
            b"{}",
            LABEL,
            [("USA", usa_key), ("DEU", deu_key)],
            identities["GBR"],
            now=datetime.now(UTC),
        )
        refused: dict[str, Any] = {}
        try:
            gbr.post_envelope(envelope)
        except DeniedError as exc:
            refused = {"code": exc.code, "details": exc.details}
            console.print(
                f"\nGBR tries to seal the same label for USA [bold]and DEU[/]: refused "
                f"([red]{exc.code}[/]: {exc.details}); nothing was stored."
            )
        if console.is_terminal:
            console.rule()
        return {
            "preview": {p: d.agreement or d.reason for p, d in sorted(decisions.items())},
            "receipt": receipt.to_dict(),
            "received": received,
            "refused": refused,
        }
