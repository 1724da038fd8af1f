"""``tearline init DIR``: a small world to try Tearline in, with every key its user needs.

The example ``policies/`` of the repository holds public keys whose private halves were thrown
away, so nobody can sign as its partners. ``init`` writes a policy folder whose partners and
operator have their identity files right beside it::

    DIR/policies/    operators.yaml, and governance/: root-1.json, registry.json (partners and
                     scheme), agreement-<id>.json, each signed by its holders (protocol §11)
    DIR/keys/        ID.identity.json (private, 0600) and ID.public.yaml for each of them, and
                     ID.governance.json (private, 0600): each partner's governance key
    DIR/label.json   a label: CONFIDENTIAL, REL TO USA, EST and DEU, topic ransomware
    DIR/bundle.json  a STIX 2.1 bundle with one indicator

GBR shares everything with USA (``gbr-usa``) and ransomware, phishing and APT work up to
CONFIDENTIAL with EST (``gbr-est``); EST shares with DEU up to RESTRICTED (``est-deu``); GBR
and DEU share no agreement. So the example label, sent by GBR, reaches USA and EST and not DEU.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from tearline.broker.policy.load import check_policies
from tearline.clients.errors import InputError, InternalError
from tearline.clients.governance import documents as gd
from tearline.clients.keyfile import Identity, generate, write_keypair
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64e, format_time

#: Partner id → display name. All classic: the quickest keys, and every example works with them.
PARTNERS: Final = {
    "GBR": "United Kingdom",
    "USA": "United States",
    "EST": "Estonia",
    "DEU": "Germany",
}
OPERATOR: Final = ("OPS-HQ", "Tearline operations desk")
SCHEME: Final = {
    "policy": "TEARLINE-QUICKSTART",
    "levels": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
    "caveats": ["CYBER-OPS"],
    "groups": {"EUROPE": ["DEU", "EST", "GBR"]},
}
AGREEMENTS: Final[list[dict[str, Any]]] = [
    {
        "id": "gbr-usa",
        "title": "UK-US cyber threat exchange",
        "ceiling": "SECRET",
        "topics": ["*"],
        "parties": {"GBR": {}, "USA": {}},
    },
    {
        "id": "gbr-est",
        "title": "UK-Estonia ransomware, phishing and APT exchange",
        "ceiling": "CONFIDENTIAL",
        "topics": ["ransomware", "phishing", "apt"],
        "parties": {"GBR": {}, "EST": {"caveats": ["CYBER-OPS"]}},
    },
    {
        "id": "est-deu",
        "title": "Estonia-Germany CERT exchange",
        "ceiling": "RESTRICTED",
        "topics": ["ransomware", "phishing"],
        "parties": {"EST": {}, "DEU": {}},
    },
]
LABEL: Final = {
    "classification": "CONFIDENTIAL",
    "releasable_to": ["USA", "EST", "DEU"],
    "topics": ["ransomware"],
    "tlp": "AMBER",
}
BUNDLE: Final = {
    "type": "bundle",
    "id": "bundle--5d0a8a3e-2f6b-4c1e-9a57-0c3b1f6e8d21",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": "EXAMPLE: ransomware command-and-control domain",
            "pattern": "[domain-name:value = 'c2.example.invalid']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }
    ],
}
VALID_FOR: Final = timedelta(days=730)


@dataclass(frozen=True)
class World:
    root: Path
    policies: Path
    keys: Path
    label: Path
    bundle: Path
    summary: dict[str, Any]


def init_world(root: Path, now: datetime, *, ungoverned: bool = False) -> World:
    """Write the world into ``root``, which must be missing or empty."""
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file; give a new or empty folder")
    if root.exists() and any(root.iterdir()):
        raise InputError(
            f"{root} is not empty; tearline init writes a new world into a new or empty folder "
            "and never over files that are there"
        )
    start = now.replace(microsecond=0) - timedelta(minutes=1)
    keys = root / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    identities: dict[str, Identity] = {}
    for pid, name in (*PARTNERS.items(), OPERATOR):
        write_keypair(generate(pid, "classic", start, VALID_FOR), keys, name)
        identities[pid] = Identity.load(keys / f"{pid}.identity.json")

    policies = root / "policies"
    policies.mkdir(parents=True)
    operator = identities[OPERATOR[0]].public_entry(OPERATOR[1])
    operator["keys"] = [k for k in operator["keys"] if k["use"] == "sig"]
    (policies / "operators.yaml").write_text(
        "# Operators: who may read the audit trail and replay dead letters.\n"
        + _yaml({"operators": [operator]})
    )
    valid = {
        "valid_from": format_time(start - timedelta(days=1)),
        "valid_until": format_time(start + VALID_FOR),
    }
    agreements = [
        {
            "id": agreement["id"],
            "title": agreement["title"],
            **valid,
            **{k: v for k, v in agreement.items() if k not in ("id", "title")},
        }
        for agreement in AGREEMENTS
    ]
    entries = [identities[pid].public_entry(name) for pid, name in PARTNERS.items()]
    if ungoverned:
        _write_yaml_policies(policies, entries, agreements)
    else:
        _write_governed(policies, keys, entries, agreements, start)

    label = root / "label.json"
    label.write_text(json.dumps(LABEL, indent=2) + "\n")
    bundle = root / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE, indent=2) + "\n")

    policy, problems = check_policies(policies)
    if policy is None:  # a bug here, never the user's doing
        raise InternalError("init wrote an invalid policy folder: " + "; ".join(map(str, problems)))
    return World(root, policies, keys, label, bundle, policy.summary())


def _write_governed(
    policies: Path,
    keys: Path,
    entries: list[dict[str, Any]],
    agreements: list[dict[str, Any]],
    start: datetime,
) -> None:
    """The governed folder: a governance key per partner, a root of them all (threshold 1),
    the registry signed by GBR's, each agreement by its parties'."""
    private: dict[str, bytes] = {}
    for pid in PARTNERS:
        secret, public = gd.generate_key()
        private[pid] = secret
        path = keys / f"{pid}.governance.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:  # the shape `tearline governance keygen` writes
            doc = {"holder": pid, "public": b64e(public), "private": b64e(secret)}
            out.write(json.dumps(doc, indent=2) + "\n")
    expires = format_time(start + VALID_FOR)
    root = {
        "type": "root",
        "version": 1,
        "expires": expires,
        "threshold": 1,
        "keys": [
            {"public": b64e(crypto.public_key_of(crypto.ED25519, private[p])), "holder": p}
            for p in PARTNERS
        ],
    }
    registry = {
        "type": "registry",
        "version": 1,
        "expires": expires,
        "partners": entries,
        "scheme": SCHEME,
    }
    folder = policies / "governance"
    folder.mkdir()
    documents = {
        "root-1.json": _signed(root, [private[p] for p in PARTNERS]),
        "registry.json": _signed(registry, [private["GBR"]]),
    }
    for agreement in agreements:
        signers = [private[p] for p in agreement["parties"]]
        documents[f"agreement-{agreement['id']}.json"] = _signed(
            {"type": "agreement", "agreement": agreement}, signers
        )
    for name, data in documents.items():
        (folder / name).write_bytes(data)


def _signed(signed: dict[str, Any], keys: list[bytes]) -> bytes:
    document = gd.new_document(signed)
    for key in keys:
        document = gd.add_signature(document, key)
    return document


def _write_yaml_policies(
    policies: Path, entries: list[dict[str, Any]], agreements: list[dict[str, Any]]
) -> None:
    (policies / "agreements").mkdir()
    (policies / "scheme.yaml").write_text(
        "# The marking scheme every label is checked against: levels lowest first, the caveats\n"
        "# a label may carry, and named groups REL TO may use.\n" + _yaml(SCHEME)
    )
    (policies / "partners.yaml").write_text(
        "# The partner registry: each entry is what `tearline keygen` writes to ID.public.yaml.\n"
        "# Add one with: tearline partner add ID.public.yaml --policies THIS-FOLDER\n"
        + _yaml({"partners": entries})
    )
    for document in agreements:
        (policies / "agreements" / f"{document['id']}.yaml").write_text(_yaml(document))


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=1 << 16)


def next_steps(world: World, port: int = 8000) -> str:
    """What to run next, copy-paste, from the folder ``init`` was run in."""
    root = shlex.quote(str(world.root))
    policies = shlex.quote(str(world.policies))
    data = shlex.quote(str(world.root / "data"))
    return "\n".join(
        [
            "Next, in one terminal, the broker on this policy folder (an embedded Redis keeps",
            f"its data in {data}):",
            "",
            f"  tearline serve --policies {policies} --data-dir {data}",
            "",
            "and in another, GBR publishes the example report and USA receives it:",
            "",
            f"  cd {root}",
            f"  export TEARLINE_BROKER=http://127.0.0.1:{port}",
            "  tearline publish bundle.json --label label.json --identity keys/GBR.identity.json",
            "  tearline subscribe --once --identity keys/USA.identity.json --out inbox",
            "  tearline policy explain --policies policies --from GBR --label label.json",
        ]
    )
