"""Regenerate the fixed test vectors in this folder: ``python tests/vectors/generate.py``.

The keys are TEST ONLY, derived from public seeds. HPKE and ML-DSA are randomised, so a run
writes new wrapped keys and ML-DSA signatures; every other value is reproducible, and
``tests/unit/test_vectors.py`` checks each one byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64d, b64e, canonical_json, format_time
from tearline.clients.protocol.envelope import _seal, content_aad, pae, wrap_info
from tearline.clients.protocol.identity import Identity, Partner, Suite
from tearline.clients.protocol.label import Label, label_digest

HERE = Path(__file__).parent
CREATED = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
NOT_BEFORE = "2026-01-01T00:00:00Z"
NOT_AFTER = "2028-01-01T00:00:00Z"
ENVELOPE_IDS = {
    "classic": "019de2a5-6e40-7c3a-9f1e-2b4d6a8c0e13",
    "pq-hybrid": "019de2a5-6e40-7c3a-9f1e-2b4d6a8c0e14",
}
PAYLOAD = {
    "type": "bundle",
    "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2026-05-01T09:00:00.000Z",
            "modified": "2026-05-01T09:00:00.000Z",
            "name": "TEST ONLY: C2 domain",
            "pattern": "[domain-name:value = 'c2.test-vector.invalid']",
            "pattern_type": "stix",
            "valid_from": "2026-05-01T09:00:00Z",
        }
    ],
}
SCHEME = {
    "policy": "TEARLINE-DEMO",
    "levels": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
    "caveats": ["CYBER-OPS", "NUC"],
    "groups": {"FVEY": ["AUS", "CAN", "GBR", "NZL", "USA"]},
}
LABEL = {
    "classification": "CONFIDENTIAL",
    "releasable_to": ["USA", "EST"],
    "topics": ["apt"],
    "tlp": "AMBER",
}


def _seed(kid: str, size: int) -> bytes:
    return hashlib.shake_256(f"tearline TEST ONLY key {kid}".encode()).digest(size)


def test_identity(partner: str, suite: Suite) -> Identity:
    algs = [("sig-1", crypto.ED25519, "sig"), ("enc-1", crypto.X25519, "enc")]
    if suite == "pq-hybrid":
        algs += [
            ("sig-pq-1", crypto.ML_DSA_65, "sig"),
            ("enc-pq-1", crypto.ML_KEM_768_X25519, "enc"),
        ]
    keys = []
    for suffix, alg, use in algs:
        kid = f"{partner}-{suffix}"
        private = _seed(kid, crypto.PRIVATE_KEY_BYTES[alg])
        keys.append(
            {
                "kid": kid,
                "use": use,
                "alg": alg,
                "public": b64e(crypto.public_key_of(alg, private)),
                "private": b64e(private),
                "not_before": NOT_BEFORE,
                "not_after": NOT_AFTER,
                "revoked": False,
            }
        )
    return Identity.from_dict({"partner": partner, "keys": keys})


def vector(suite: Suite) -> dict[str, Any]:
    ids = {p: test_identity(p, suite) for p in ("GBR", "USA", "EST")}
    registry = [i.public_entry() for i in ids.values()]
    payload = canonical_json(PAYLOAD)
    content_key = _seed(f"content-key-{suite}", 32)
    nonce = _seed(f"nonce-{suite}", 12)
    envelope_id = ENVELOPE_IDS[suite]
    recipients = [
        (p, key)
        for p in ("USA", "EST")
        if (key := Partner.from_dict(ids[p].public_entry()).enc_key(suite, CREATED)) is not None
    ]
    envelope = _seal(
        payload,
        Label.from_dict(LABEL),
        recipients,
        ids["GBR"],
        now=CREATED,
        suite=suite,
        content_type="application/stix+json;version=2.1",
        envelope_id=envelope_id,
        content_key=content_key,
        nonce=nonce,
    )
    outer = json.loads(envelope)
    header_bytes = b64d(outer["header"])
    digest = label_digest(LABEL)
    return {
        "description": f"Tearline envelope v1, suite {suite}. TEST ONLY keys: never use them.",
        "suite": suite,
        "created": format_time(CREATED),
        "scheme": SCHEME,
        "registry": registry,
        "identities": {p: i.to_dict() for p, i in ids.items()},
        "payload": payload.decode(),
        "label": LABEL,
        "label_canonical": canonical_json(LABEL).decode(),
        "label_digest": b64e(digest),
        "content_key": b64e(content_key),
        "nonce": b64e(nonce),
        "content_aad": b64e(content_aad(envelope_id, "GBR", digest)),
        "wrap_info": {p: b64e(wrap_info(envelope_id, "GBR", p, digest)) for p, _ in recipients},
        "header": header_bytes.decode(),
        "pae": b64e(pae(header_bytes)),
        "ciphertext": outer["ciphertext"],
        "envelope": envelope.decode(),
    }


def main() -> None:
    for suite in ("classic", "pq-hybrid"):
        path = HERE / f"envelope-{suite}.json"
        path.write_text(json.dumps(vector(suite), indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
