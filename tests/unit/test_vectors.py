"""The fixed vectors in tests/vectors/ still verify, open and recompute byte for byte.

Another language's client is checked against the same files: each intermediate value is there.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64d, b64e, canonical_json
from tearline.clients.protocol.envelope import open, pae, verify
from tearline.clients.protocol.identity import Identity, Registry
from tearline.clients.protocol.label import Scheme

VECTORS = Path(__file__).parent.parent / "vectors"


def load(suite: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"envelope-{suite}.json").read_text())
    return data


def scheme_of(vector: dict[str, Any]) -> Scheme:
    s = vector["scheme"]
    groups = {k: frozenset(v) for k, v in s["groups"].items()}
    return Scheme(s["policy"], tuple(s["levels"]), frozenset(s["caveats"]), groups)


SUITES = ["classic", "pq-hybrid"]


@pytest.mark.parametrize("suite", SUITES)
def test_vector_envelope_verifies_and_opens_for_each_recipient(suite: str) -> None:
    v = load(suite)
    registry = Registry.from_dicts(v["registry"])
    now = datetime.fromisoformat(v["created"])
    envelope = v["envelope"].encode()
    verified = verify(envelope, registry, scheme_of(v), now=now)
    assert verified.header.originator == "GBR"
    assert verified.header_bytes == v["header"].encode()
    for partner in v["wrap_info"]:
        me = Identity.from_dict(v["identities"][partner])
        opened = open(envelope, me, registry, scheme_of(v), now=now)
        assert opened.payload == v["payload"].encode()


@pytest.mark.parametrize("suite", SUITES)
def test_vector_intermediate_values_recompute_byte_for_byte(suite: str) -> None:
    v = load(suite)
    outer = json.loads(v["envelope"])
    header = json.loads(v["header"])
    assert outer["header"] == b64e(v["header"].encode())
    assert canonical_json(v["label"]).decode() == v["label_canonical"]
    assert b64d(v["label_digest"]) == hashlib.sha256(v["label_canonical"].encode()).digest()
    payload_type = b"application/vnd.tearline.header+json;version=1"
    header_bytes = v["header"].encode()
    expected_pae = b"DSSEv1 %d %s %d %s" % (
        len(payload_type),
        payload_type,
        len(header_bytes),
        header_bytes,
    )
    assert b64d(v["pae"]) == expected_pae == pae(header_bytes)
    digest = b64d(v["label_digest"])
    aad = b"tearline-v1 content %d %s %d %s %d %s" % (
        len(header["id"]),
        header["id"].encode(),
        3,
        b"GBR",
        32,
        digest,
    )
    assert b64d(v["content_aad"]) == aad
    for partner, info in v["wrap_info"].items():
        assert b64d(info) == b"tearline-v1 wrap %d %s 3 GBR %d %s 32 %s" % (
            len(header["id"]),
            header["id"].encode(),
            len(partner),
            partner.encode(),
            digest,
        )
    ciphertext = crypto.aead_seal(
        b64d(v["content_key"]), b64d(v["nonce"]), v["payload"].encode(), aad
    )
    assert b64e(ciphertext) == v["ciphertext"] == outer["ciphertext"]
    assert b64d(header["ciphertext_sha256"]) == hashlib.sha256(ciphertext).digest()


@pytest.mark.parametrize("suite", SUITES)
def test_vector_ed25519_signature_is_reproducible(suite: str) -> None:
    v = load(suite)
    outer = json.loads(v["envelope"])
    gbr = Identity.from_dict(v["identities"]["GBR"])
    ed_key = next(k for k in gbr.keys if k.record.alg == "Ed25519")
    signature = crypto.SigningKey("Ed25519", ed_key.private).sign(b64d(v["pae"]))
    stored = next(s for s in outer["signatures"] if s["kid"] == ed_key.record.kid)
    assert b64e(signature) == stored["sig"]


@pytest.mark.parametrize("suite", SUITES)
def test_vector_keys_derive_their_registered_public_keys(suite: str) -> None:
    v = load(suite)
    for identity in v["identities"].values():
        for key in identity["keys"]:
            derived = crypto.public_key_of(key["alg"], b64d(key["private"]))
            assert b64e(derived) == key["public"]
