"""The test world as a governed policy folder: every partner holds a TEST governance key.

Root version 1 lists the five partners' keys with a threshold of 3; the registry is the test
world's partners and scheme; each agreement is signed by its parties. Functions here write the
documents that the people who govern would sign, and the files an operator would copy in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tearline.clients.governance.documents import add_signature, generate_key, new_document
from tearline.clients.protocol.encoding import b64e, format_time
from tests.integration.conftest import AGREEMENTS, PARTNERS, SCHEME, me

HOLDERS = tuple(PARTNERS)  # GBR, USA, EST, FIN, DEU
THRESHOLD = 3
EXPIRES = format_time(datetime.now(UTC).replace(microsecond=0) + timedelta(days=365))


@cache
def gov(name: str) -> tuple[bytes, bytes]:
    """A TEST governance key pair per name ("GBR", "GBR-new", "OPERATOR"): (private, public)."""
    return generate_key()


def signed_by(signed: dict[str, Any], *names: str) -> bytes:
    document = new_document(signed)
    for name in names:
        document = add_signature(document, gov(name)[0])
    return document


def root_doc(
    version: int = 1,
    *signers: str,
    holders: dict[str, str] | None = None,
    threshold: int = THRESHOLD,
    expires: str = EXPIRES,
) -> bytes:
    """Keys ``gov(name)`` held by ``holders[name]`` (by default each partner holds its own)."""
    holders = holders or {h: h for h in HOLDERS}
    keys = [{"public": b64e(gov(name)[1]), "holder": h} for name, h in holders.items()]
    signed = {
        "type": "root",
        "version": version,
        "expires": expires,
        "threshold": threshold,
        "keys": keys,
    }
    return signed_by(signed, *(signers or tuple(holders)))


def partner_entries(suspended: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        me(p).public_entry(status="suspended" if p in suspended else "active") for p in PARTNERS
    ]


def registry_doc(
    version: int = 1,
    *signers: str,
    partners: list[dict[str, Any]] | None = None,
    expires: str = EXPIRES,
) -> bytes:
    signed = {
        "type": "registry",
        "version": version,
        "expires": expires,
        "partners": partner_entries() if partners is None else partners,
        "scheme": SCHEME,
    }
    return signed_by(signed, *(signers or HOLDERS[:THRESHOLD]))


def agreement_doc(aid: str, *signers: str) -> bytes:
    body = AGREEMENTS[aid]
    return signed_by({"type": "agreement", "agreement": body}, *(signers or tuple(body["parties"])))


def status_doc(aid: str, status: str, *signers: str) -> bytes:
    signed = {
        "type": "agreement-status",
        "agreement": aid,
        "status": status,
        "issued": format_time(datetime.now(UTC).replace(microsecond=0)),
    }
    return signed_by(signed, *signers)


def operator_entry() -> dict[str, Any]:
    operator = me("OPS-HQ").public_entry()
    operator["keys"] = [k for k in operator["keys"] if k["use"] == "sig"]
    return operator


def write_governed(folder: Path, **files: bytes) -> None:
    """A governed policy folder: root 1, registry 1, the test world's agreements signed by their
    parties, the operator; then ``files`` (``"registry.json"``: bytes, ...) over them."""
    gov_dir = folder / "governance"
    gov_dir.mkdir(parents=True, exist_ok=True)
    (folder / "operators.yaml").write_text(
        yaml.safe_dump({"operators": [operator_entry()]}, width=1 << 16)
    )
    defaults = {
        "root-1.json": root_doc(),
        "registry.json": registry_doc(),
        **{f"agreement-{aid}.json": agreement_doc(aid) for aid in AGREEMENTS},
    }
    for name, data in {**defaults, **files}.items():
        put(folder, name, data)


def put(folder: Path, name: str, data: bytes) -> None:
    """Copy one document in as an operator would: written aside, then renamed into place."""
    target = folder / "governance" / name
    tmp = target.with_name(f".{name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def pinned_root() -> bytes:
    return root_doc()


def dump(document: bytes) -> Any:
    return json.loads(document)
