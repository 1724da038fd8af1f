"""The broker's two request-signature paths agree: the canonical fast path in
``broker.signatures`` and the general one through the ``http-message-signatures`` library.

Each case is a signed request with one thing changed; both paths must reach the same outcome
(the same partner, or the same refusal code), and the canonical SDK form must really take the
fast path, so that this table cannot pass with the fast path switched off.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tearline.broker import signatures
from tearline.clients.errors import AuthenticationError
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.protocol.identity import Registry
from tests.factories import NOW, identity, registry

REG: Registry = registry("GBR", "USA")
CREATED = int(NOW.timestamp())
NONCE = "k3Jx9Qp2vB7mN4tZ8wYc1A"
URL = "http://127.0.0.1:8000/v1/reports"
BODY = b'{"header":"eyJ2IjoxfQ","signatures":[],"ciphertext":"AAAA"}'

Headers = dict[str, str]


def _signed(
    method: str = "POST", url: str = URL, body: bytes = BODY, created: int = CREATED
) -> Headers:
    kid, private = signing_key_of(identity("GBR", "pq-hybrid"), NOW)
    return sign_request(
        method, url, {}, body, key_id=kid, private_key=private, created=created, nonce=NONCE
    )


def _outcome(
    path: Callable[..., signatures.Authenticated | None],
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
) -> object:
    fields = signatures.combine_fields(headers.items())
    resolver = signatures._RegistryKeys(REG, NOW)
    try:
        return path(method, url, fields, body, resolver, NOW.timestamp(), 60)
    except AuthenticationError as exc:
        return exc.code


def _library(method: str, url: str, headers: Headers, body: bytes) -> object:
    return _outcome(signatures._verify_with_library, method, url, headers, body)


def _fast(method: str, url: str, headers: Headers, body: bytes) -> object:
    return _outcome(signatures._verify_canonical, method, url, headers, body)


def _replace(headers: Headers, name: str, old: str, new: str) -> Headers:
    return {**headers, name: headers[name].replace(old, new)}


def _flip_signature(headers: Headers) -> Headers:
    value = headers["Signature"]
    raw = bytearray(base64.b64decode(value.split("=:", 1)[1].rstrip(":")))
    raw[0] ^= 1
    return {**headers, "Signature": f"sig1=:{base64.b64encode(bytes(raw)).decode()}:"}


def _other_digest(headers: Headers) -> Headers:
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    return {**headers, "Content-Digest": f"sha-256=:{other}:"}


# (name, method, url, headers, body, whether the fast path takes it)
CASES: list[tuple[str, str, str, Headers, bytes, bool]] = [
    ("the_sdk_form_with_a_body", "POST", URL, _signed(), BODY, True),
    ("the_sdk_form_without_a_body", "GET", URL, _signed("GET", URL, b""), b"", True),
    (
        "a_query_string",
        "GET",
        URL + "?wait=10&limit=5",
        _signed("GET", URL + "?wait=10&limit=5", b""),
        b"",
        True,
    ),
    ("a_tampered_body", "POST", URL, _signed(), BODY + b" ", True),
    ("another_digest_signed_over", "POST", URL, _other_digest(_signed()), BODY, True),
    ("a_flipped_signature_bit", "POST", URL, _flip_signature(_signed()), BODY, True),
    (
        "a_percent_encoded_path",
        "GET",
        URL + "/%7Ex%20y",
        _signed("GET", URL + "/%7Ex%20y", b""),
        b"",
        True,
    ),
    ("another_method", "PUT", URL, _signed(), BODY, True),
    ("another_url", "POST", URL + "x", _signed(), BODY, True),
    ("a_stale_signature", "POST", URL, _signed(created=CREATED - 61), BODY, True),
    ("a_signature_from_the_future", "POST", URL, _signed(created=CREATED + 6), BODY, True),
    (
        "an_unknown_key",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", 'keyid="GBR', 'keyid="XXX'),
        BODY,
        True,
    ),
    (
        "another_partners_key",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", 'keyid="GBR', 'keyid="USA'),
        BODY,
        True,
    ),
    (
        "a_short_nonce",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", NONCE, "short"),
        BODY,
        False,
    ),
    (
        "parameters_in_another_order",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", ';alg="ed25519"', "")
        | {
            "Signature-Input": _signed()["Signature-Input"].replace(';alg="ed25519"', "")
            + ';alg="ed25519"'
        },
        BODY,
        False,
    ),
    (
        "another_algorithm",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", 'alg="ed25519"', 'alg="rsa-pss-sha512"'),
        BODY,
        False,
    ),
    (
        "no_content_digest_covered",
        "POST",
        URL,
        _replace(_signed(), "Signature-Input", ' "content-digest"', ""),
        BODY,
        False,
    ),
    (
        "two_signature_labels",
        "POST",
        URL,
        {**_signed(), "Signature": _signed()["Signature"] + ", sig2=:AAAA:"},
        BODY,
        False,
    ),
    (
        "labels_that_differ",
        "POST",
        URL,
        _replace(_signed(), "Signature", "sig1=", "sig2="),
        BODY,
        False,
    ),
    (
        "an_upper_case_host",
        "POST",
        URL.replace("127.0.0.1", "Broker.Example"),
        _signed(url=URL.replace("127.0.0.1", "Broker.Example")),
        BODY,
        False,
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "fast"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_both_paths_reach_the_same_outcome(
    method: str, url: str, headers: Headers, body: bytes, fast: bool
) -> None:
    library = _library(method, url, headers, body)
    taken = _fast(method, url, headers, body)
    assert (taken is not None) == fast
    if fast:
        assert taken == library
    try:
        whole: object = signatures.verify_request(method, url, headers, body, REG, now=NOW)
    except AuthenticationError as exc:
        whole = exc.code
    assert whole == library


def test_the_sdk_form_is_authenticated_by_the_fast_path() -> None:
    result = _fast("POST", URL, _signed(), BODY)
    assert isinstance(result, signatures.Authenticated)
    assert (result.partner, result.nonce, result.created) == ("GBR", NONCE, CREATED)
    assert result == _library("POST", URL, _signed(), BODY)


_PCT = st.sampled_from(["%7E", "%20", "%2f", "%C3%A9"])
_PATH = st.lists(st.one_of(st.text("abcXYZ0189-._~!$&'()*+,;=:@/", max_size=6), _PCT)).map("".join)
_QUERY = st.lists(st.one_of(st.text("abcXYZ0189=&-._~?/:@", max_size=6), _PCT)).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    host=st.sampled_from(["127.0.0.1", "localhost", "broker.example", "a-b.c"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=_PATH,
    query=_QUERY,
    body=st.binary(max_size=64),
    skew=st.integers(-70, 10),
)
def test_random_requests_get_the_same_answer_from_both_paths(
    host: str, port: int | None, path: str, query: str, body: bytes, skew: int
) -> None:
    url = f"http://{host}{f':{port}' if port else ''}/{path}{'?' + query if query else ''}"
    method = "POST" if body else "GET"
    headers = _signed(method, url, body, created=CREATED + skew)
    library = _library(method, url, headers, body)
    fast = _fast(method, url, headers, body)
    assert fast is not None  # every URL drawn here is canonical
    assert fast == library
