"""The fixed request-signature vectors (tests/vectors/request-signatures.json) against the broker.

Every vector goes through :func:`broker.signatures.verify_request` with the file's registry, ``now``
and replay window, and must end as the file says: accepted as GBR-sig-1, or refused with its
code. The file is what its generator writes, byte for byte; it names every refusal code of
``broker.signatures``; the SDK signs the accepted requests to the same bytes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from starlette.datastructures import Headers

from tearline.broker import signatures
from tearline.broker.auth import remember_nonce
from tearline.broker.signatures import MAX_FUTURE_S, Authenticated, verify_request
from tearline.clients.errors import AuthenticationError
from tearline.clients.httpsig import sign_request
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.identity import Registry
from tests.vectors import generate_request_signatures as generator


@cache
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(generator.OUT.read_text())
    return data


def by_name(name: str) -> dict[str, Any]:
    return next(v for v in vectors()["vectors"] if v["name"] == name)


def field_lines(vector: dict[str, Any]) -> Headers:
    """The vector's field lines as a server hands them over: in order, names repeating."""
    return Headers(
        raw=[(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in vector["headers"]]
    )


def check(vector: dict[str, Any]) -> Authenticated:
    data = vectors()
    return verify_request(
        vector["method"],
        vector["url"],
        field_lines(vector),
        vector["body"].encode(),
        Registry.from_dicts(data["registry"]),
        now=datetime.fromtimestamp(data["now"], UTC),
        replay_window_s=data["replay_window_s"],
    )


def documented_codes() -> list[str]:
    """The refusal codes ``broker.signatures``'s docstring lists, in its order."""
    doc = signatures.__doc__ or ""
    listed = doc.partition("Refusal codes:")[2].partition("They name")[0]
    return re.findall(r"``([a-z_]+)``", listed)


def test_the_file_is_what_the_generator_writes() -> None:
    assert generator.OUT.read_text() == generator.render()


def test_the_files_clock_is_the_brokers() -> None:
    assert vectors()["max_future_s"] == MAX_FUTURE_S
    assert vectors()["replay_window_s"] == signatures.DEFAULT_REPLAY_WINDOW_S
    assert vectors()["now_rfc3339"] == "2026-05-01T09:30:00Z"


def test_every_refusal_code_has_a_vector() -> None:
    codes = documented_codes()
    assert "signature_ambiguous" in codes
    assert "replayed_request" in codes
    stateless = {v["expect"].get("code") for v in vectors()["vectors"]} - {None}
    stateful = {e.get("code") for s in vectors()["stateful"] for e in s["expect"]} - {None}
    assert stateless | stateful == set(codes)
    assert stateful == {"replayed_request"}


@pytest.mark.parametrize("name", [v["name"] for v in vectors()["vectors"]])
def test_vector(name: str) -> None:
    vector = by_name(name)
    expect = vector["expect"]
    if expect["status"] == 200:
        auth = check(vector)
        assert (auth.partner, auth.kid) == (expect["partner"], expect["kid"])
        return
    with pytest.raises(AuthenticationError) as refused:
        check(vector)
    assert refused.value.code == expect["code"]
    assert expect["status"] == 401


def _signable_by_the_sdk(vector: dict[str, Any]) -> bool:
    # The SDK always sends alg="ed25519"; the broker also takes a signature without it.
    return vector["expect"]["status"] == 200 and 'alg="ed25519"' in dict(vector["headers"]).get(
        "Signature-Input", ""
    )


@pytest.mark.parametrize(
    "name", [v["name"] for v in vectors()["vectors"] if _signable_by_the_sdk(v)]
)
def test_the_sdk_signs_the_accepted_requests_to_the_same_bytes(name: str) -> None:
    vector = by_name(name)
    sent = dict(vector["headers"])
    params = dict(re.findall(r';(\w+)=("[^"]*"|\d+)', sent["Signature-Input"]))
    signed = sign_request(
        vector["method"],
        vector["url"],
        {"Host": sent["Host"]},
        vector["body"].encode(),
        key_id=params["keyid"].strip('"'),
        private_key=b64d(vectors()["private_keys"][vector["signed_with"]]),
        created=int(params["created"]),
        nonce=params["nonce"].strip('"'),
    )
    own = {"Content-Digest", "Signature-Input", "Signature"}
    assert signed == {k: v for k, v in sent.items() if k in own}


def test_signature_bases_are_what_the_library_builds() -> None:
    """The hand-built RFC 9421 signature base of a vector is the one the broker verifies:
    each accepted vector verifies, and changing one byte of its base breaks it."""
    vector = by_name("accepted-post")
    base = vector["signature_base"]
    assert base.splitlines() == [
        '"@method": POST',
        '"@target-uri": https://broker.example/v1/reports',
        f'"content-digest": {dict(vector["headers"])["Content-Digest"]}',
        '"@signature-params": ("@method" "@target-uri" "content-digest");created=1777627800;'
        'keyid="GBR-sig-1";alg="ed25519";nonce="tX3vQ9kR2mB7nW4pZ8yL1c"',
    ]


class _Nonces:
    """Just enough of redis.asyncio.Redis for remember_nonce: SET NX EX."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    async def set(self, key: str, value: bytes, *, nx: bool, ex: int) -> bool:
        assert nx
        if key in self.keys:
            return False
        self.keys[key] = ex
        return True


@pytest.mark.parametrize("scenario", vectors()["stateful"], ids=lambda s: s["name"])
async def test_stateful_vector(scenario: dict[str, Any]) -> None:
    nonces = _Nonces()
    window = vectors()["replay_window_s"]
    for name, expect in zip(scenario["requests"], scenario["expect"], strict=True):
        auth = check(by_name(name))
        if expect["status"] == 200:
            await remember_nonce(nonces, auth, window)  # type: ignore[arg-type]
            assert (auth.partner, auth.kid) == (expect["partner"], expect["kid"])
            continue
        with pytest.raises(AuthenticationError) as refused:
            await remember_nonce(nonces, auth, window)  # type: ignore[arg-type]
        assert refused.value.code == expect["code"]
    assert list(nonces.keys.values()) == [2 * window]
