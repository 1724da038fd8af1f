"""docs/protocol.md cannot drift from the code: every example in it is checked here.

The document marks what is checked:

- a fenced block whose info string has ``check=NAME`` (```` ```json check=label ````) must hold
  exactly what ``RENDER[NAME]()`` makes from the code and ``tests/vectors/``, or pass
  ``VALIDATE[NAME]`` (for tables whose prose is written by hand);
- a region between ``<!-- check=NAME -->`` and ``<!-- /check -->`` likewise (tables);
- any other fenced block must be a ```` ```layout ```` block: notation, with no example value.

Besides, the claims the examples cannot show are checked against independent code: an RFC 9180
HPKE opener written from the RFC (mode, suite and KEM ids, ``info``, enc ‖ ct) opens the vectors'
wrapped keys, AES-GCM opens their ciphertext as nonce ‖ ciphertext ‖ tag, and the key layouts
derive the registered public keys.

After a deliberate change, rewrite the checked blocks: ``python -m tests.unit.test_protocol_doc``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.requests import Request

from tearline.broker import keys as broker_keys
from tearline.broker import signatures
from tearline.broker.api.deps import target_uri
from tearline.broker.api.errors import STATUS, RequestShapeError, error_response, redis_outage
from tearline.broker.api.inbox import Entry, InboxPage, entry_event, error_event
from tearline.broker.delivery import Delivered
from tearline.broker.settings import LONG_POLL_LIMIT_S, Settings
from tearline.clients import errors as client_errors
from tearline.clients.errors import AuthenticationError, MisdirectedError, TearlineError
from tearline.clients.governance import documents as gov_documents
from tearline.clients.governance import log as gov_log
from tearline.clients.governance import merkle
from tearline.clients.governance.trust import TrustedState
from tearline.clients.keyfile import write_keypair
from tearline.clients.protocol import crypto, envelope
from tearline.clients.protocol.encoding import b64d, b64e, canonical_json, format_time
from tearline.clients.protocol.identity import KEY_ID, PARTNER_ID, Identity
from tearline.clients.protocol.label import MARKING, TLP_LEVELS, TOPIC
from tearline.clients.protocol.receipt import (
    RECEIPT_TYPE,
    Delivery,
    Receipt,
    sign_receipt,
    verify_receipt,
)
from tests.vectors import generate_request_signatures as request_vectors

ROOT: Final = Path(__file__).resolve().parents[2]
DOC: Final = ROOT / "docs" / "protocol.md"
VECTORS: Final = ROOT / "tests" / "vectors"

# RFC 9180 identifiers, as this module's own HPKE implementation uses them.
MODE_BASE: Final = 0x00
KEM_IDS: Final = {"classic": 0x0020, "pq-hybrid": 0x647A}
KEM_NAMES: Final = {
    "classic": "DHKEM(X25519, HKDF-SHA256)",
    "pq-hybrid": "X-Wing (MLKEM768-X25519)",
}
ENC_BYTES: Final = {"classic": 32, "pq-hybrid": 1120}
KDF_HKDF_SHA256: Final = 0x0001
AEAD_AES_256_GCM: Final = 0x0002
XWING_LABEL: Final = b"\\.//^\\"


@cache
def vector(suite: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"envelope-{suite}.json").read_text())
    return data


@cache
def request_vector(name: str) -> dict[str, Any]:
    data = json.loads(request_vectors.OUT.read_text())
    found: dict[str, Any] = next(v for v in data["vectors"] if v["name"] == name)
    return found


def header_of(suite: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(vector(suite)["header"])
    return parsed


# --- an RFC 9180 opener, written from the RFC, sharing nothing with the code under test -----


def _extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def _decap_x25519(enc: bytes, private: bytes) -> bytes:
    """DHKEM(X25519, HKDF-SHA256) Decap, RFC 9180 §4.1."""
    key = x25519.X25519PrivateKey.from_private_bytes(private)
    dh = key.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    kem_suite = b"KEM" + KEM_IDS["classic"].to_bytes(2, "big")
    prk = _extract(kem_suite, b"", b"eae_prk", dh)
    context = enc + key.public_key().public_bytes_raw()
    return _expand(kem_suite, prk, b"shared_secret", context, 32)


def _decap_xwing(enc: bytes, private: bytes) -> bytes:
    """X-Wing Decap (draft-connolly-cfrg-xwing-kem) from the expanded 96-byte private key."""
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64]).decapsulate(ct_m)
    key_x = x25519.X25519PrivateKey.from_private_bytes(private[64:])
    ss_x = key_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = key_x.public_key().public_bytes_raw()
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def hpke_open(suite: str, private: bytes, wrapped: bytes, info: bytes) -> bytes:
    """RFC 9180 single-shot Open in mode_base, empty aad, with ``wrapped = enc ‖ ct``."""
    enc, ct = wrapped[: ENC_BYTES[suite]], wrapped[ENC_BYTES[suite] :]
    decap = _decap_x25519 if suite == "classic" else _decap_xwing
    shared = decap(enc, private)
    suite_id = (
        b"HPKE"
        + KEM_IDS[suite].to_bytes(2, "big")
        + KDF_HKDF_SHA256.to_bytes(2, "big")
        + AEAD_AES_256_GCM.to_bytes(2, "big")
    )
    context = (
        bytes([MODE_BASE])
        + _extract(suite_id, b"", b"psk_id_hash", b"")
        + _extract(suite_id, b"", b"info_hash", info)
    )
    secret = _extract(suite_id, shared, b"secret", b"")
    key = _expand(suite_id, secret, b"key", context, 32)
    nonce = _expand(suite_id, secret, b"base_nonce", context, 12)
    return AESGCM(key).decrypt(nonce, ct, b"")


def private_key(suite: str, partner: str, alg: str) -> bytes:
    keys = vector(suite)["identities"][partner]["keys"]
    return b64d(next(k["private"] for k in keys if k["alg"] == alg))


def parse_bind(data: bytes, purpose: bytes) -> list[bytes]:
    """``purpose (SP len SP field)*`` with decimal lengths, parsed as the document says."""
    assert data.startswith(purpose)
    rest, fields = data[len(purpose) :], []
    while rest:
        match = re.match(rb" (0|[1-9][0-9]*) ", rest)
        assert match is not None, rest[:20]
        length = int(match[1])
        fields.append(rest[match.end() : match.end() + length])
        rest = rest[match.end() + length :]
    return fields


# --- what the document's examples must hold --------------------------------------------------


def _json_block(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _shown(field: bytes) -> str:
    """A bound field as the document writes it: ASCII text as is, other bytes as ⟨hex⟩."""
    if field.isascii() and field.decode().isprintable() and " " not in field.decode():
        return field.decode()
    return f"⟨{field.hex()}⟩"


def render_bind(data: bytes, purpose: bytes) -> str:
    parts = [purpose.decode()]
    for f in parse_bind(data, purpose):
        parts += [str(len(f)), _shown(f)]
    return " ".join(parts)


def _default(name: str) -> Any:
    """A setting's declared default, whatever this process's environment says."""
    return Settings.model_fields[name].default


def render_constants() -> str:
    window = signatures.DEFAULT_REPLAY_WINDOW_S
    wrapped = {
        "classic": envelope._WRAPPED_KEY_BYTES[crypto.X25519],
        "pq-hybrid": envelope._WRAPPED_KEY_BYTES[crypto.ML_KEM_768_X25519],
    }
    rows = [
        ("envelope version (`header.v`)", f"`{envelope.VERSION}`"),
        ("header payload type (DSSE)", f"`{envelope.PAYLOAD_TYPE.decode()}`"),
        ("receipt payload type (DSSE)", f"`{RECEIPT_TYPE.decode()}`"),
        ("content key", f"{crypto.CONTENT_KEY_BYTES} bytes, AES-256-GCM"),
        ("content nonce", f"{crypto.NONCE_BYTES} bytes; tag 16 bytes"),
        ("HPKE mode", f"mode_base (`0x{MODE_BASE:02x}`), single shot, empty aad"),
        (
            "HPKE KDF, AEAD",
            f"HKDF-SHA256 (`0x{KDF_HKDF_SHA256:04x}`), AES-256-GCM (`0x{AEAD_AES_256_GCM:04x}`)",
        ),
        *((f"HPKE KEM, `{s}`", f"{KEM_NAMES[s]}, `0x{KEM_IDS[s]:04X}`") for s in KEM_IDS),
        *(
            (f"`wrapped_key`, `{s}`", f"{n} bytes = enc ({ENC_BYTES[s]}) ‖ ct ({n - ENC_BYTES[s]})")
            for s, n in wrapped.items()
        ),
        ("partner id", f"`{PARTNER_ID.pattern}`"),
        ("key id (`kid`)", f"`{KEY_ID.pattern}`"),
        ("level, caveat, policy name", f"`{MARKING.pattern}`"),
        ("topic", f"`{TOPIC.pattern}`"),
        ("TLP", ", ".join(f"`{t}`" for t in TLP_LEVELS)),
        ("request signature label, algorithm", "`sig1`, `ed25519`"),
        (
            "request `created`, oldest accepted",
            f"now − replay window (default {window} s, at most 60: `TEARLINE_REPLAY_WINDOW_S`)",
        ),
        (
            "request `created`, newest accepted",
            f"now + {signatures.MAX_FUTURE_S} s (`MAX_FUTURE_S`)",
        ),
        (
            "request nonce",
            f"`{signatures.NONCE.pattern}`, remembered per partner for {2 * window} s",
        ),
        (
            "envelope `created` at ingest",
            f"at most {_default('max_report_age_s')} s old, at most 5 min ahead",
        ),
        (
            "envelope size",
            f"at most {_default('max_envelope_bytes')} bytes (`TEARLINE_MAX_ENVELOPE_BYTES`)",
        ),
        ("long poll `wait`", f"0 to {LONG_POLL_LIMIT_S} s; `limit` 1 to 100 (10)"),
        (
            "SSE heartbeat",
            f"a comment every {_default('sse_heartbeat_s')} s (`TEARLINE_SSE_HEARTBEAT_S`)",
        ),
        (
            "request headers",
            f"at most {_default('max_header_count')} lines and "
            f"{_default('max_header_bytes')} bytes, else 431",
        ),
    ]
    return _table(("what", "value"), rows)


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_key_table() -> str:
    encodings = {
        crypto.ED25519: ("raw public key", "raw private key (RFC 8032 seed)"),
        crypto.ML_DSA_65: ("raw public key (FIPS 204)", "seed ξ (FIPS 204)"),
        crypto.X25519: ("raw public key", "raw private key (RFC 7748)"),
        crypto.ML_KEM_768_X25519: (
            "ML-KEM-768 encapsulation key (1184) ‖ X25519 public key (32)",
            "ML-KEM-768 seed d ‖ z (64) ‖ X25519 private key (32)",
        ),
    }
    rows = []
    for alg, (public, private) in encodings.items():
        use = "sig" if alg in crypto.SIGNATURE_ALGORITHMS else "enc"
        rows.append(
            (
                f"`{alg}`",
                f"`{use}`",
                f"{crypto.PUBLIC_KEY_BYTES[alg]}: {public}",
                f"{crypto.PRIVATE_KEY_BYTES[alg]}: {private}",
            )
        )
    return _table(("`alg`", "`use`", "public bytes", "private bytes"), rows)


def _error_classes() -> list[type[TearlineError]]:
    found: list[type[TearlineError]] = [RequestShapeError]
    for name in dir(client_errors):
        obj = getattr(client_errors, name)
        if isinstance(obj, type) and issubclass(obj, TearlineError) and obj is not TearlineError:
            found.append(obj)
    return found


def render_status_table() -> str:
    """Every error class of clients.errors (and the API's RequestShapeError): the status the
    broker answers it with (broker.api.errors.STATUS, first match) and its default code."""
    rows = []
    for cls in _error_classes():
        status = next((s for k, s in STATUS if issubclass(cls, k)), None)
        parent = cls.__mro__[1].__name__
        retry = "yes" if status in (429, 503) else ""
        shown = "— (SDK only)" if status is None else str(status)
        rows.append((shown, f"`{cls.__name__}`", f"`{parent}`", f"`{cls.code}`", retry))
    rows.sort(key=lambda r: (r[0], r[1]))
    return _table(("status", "error class", "subclass of", "default `code`", "`Retry-After`"), rows)


def render_label() -> str:
    v = vector("classic")
    return f"{v['label_canonical']}\nlabel_digest = {v['label_digest']}"


def render_header() -> str:
    return str(vector("classic")["header"])


def render_envelope() -> str:
    return _json_block(json.loads(vector("classic")["envelope"]))


def render_pae() -> str:
    return b64d(vector("classic")["pae"]).decode()


def render_content_aad() -> str:
    return render_bind(b64d(vector("classic")["content_aad"]), b"tearline-v1 content")


def render_wrap_info() -> str:
    info = vector("classic")["wrap_info"]
    return "\n".join(render_bind(b64d(info[p]), b"tearline-v1 wrap") for p in info)


def render_ciphertext() -> str:
    v = vector("classic")
    ct = b64d(v["ciphertext"])
    payload = v["payload"].encode()
    return "\n".join(
        [
            f"content_key = {b64d(v['content_key']).hex()}",
            f"nonce       = {ct[:12].hex()}",
            f"ciphertext  = nonce ‖ {len(payload)} bytes ‖ tag {ct[-16:].hex()}"
            f"   ({len(ct)} bytes)",
            f"header.ciphertext_sha256 = {header_of('classic')['ciphertext_sha256']}",
        ]
    )


def render_wrapped_keys() -> str:
    lines = []
    for suite in ("classic", "pq-hybrid"):
        slot = header_of(suite)["recipients"][0]
        wrapped = b64d(slot["wrapped_key"])
        enc = ENC_BYTES[suite]
        lines.append(
            f"{suite:<9}  {slot['kid']:<12}  {len(wrapped)} bytes = enc ({enc}) ‖ ct "
            f"({len(wrapped) - enc}: 32-byte content key + 16-byte tag)"
        )
    return "\n".join(lines)


def _identity() -> Identity:
    return Identity.from_dict(vector("classic")["identities"]["GBR"])


@cache
def _keypair_files() -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        private, public = write_keypair(_identity(), Path(folder), "United Kingdom")
        return private.read_text(), public.read_text()


def render_identity_file() -> str:
    return _keypair_files()[0].rstrip("\n")


def render_public_entry() -> str:
    # Without the comment lines keygen puts above the entry: they are advice, not format.
    lines = _keypair_files()[1].rstrip("\n").split("\n")
    return "\n".join(line for line in lines if not line.startswith("#"))


def render_hybrid_key() -> str:
    key = next(
        k for k in vector("pq-hybrid")["identities"]["USA"]["keys"]
        if k["alg"] == crypto.ML_KEM_768_X25519
    )  # fmt: skip
    private, public = b64d(key["private"]), b64d(key["public"])
    return "\n".join(
        [
            f"kid {key['kid']}, alg {key['alg']}",
            f"private[0:64]      ML-KEM-768 seed d ‖ z  {private[:64].hex()}",
            f"private[64:96]     X25519 private key     {private[64:].hex()}",
            f"public[0:1184]     ML-KEM-768 encapsulation key, from the seed (FIPS 203 "
            f"ML-KEM.KeyGen_internal(d, z)); starts {public[:8].hex()}",
            f"public[1184:1216]  X25519 public key      {public[1184:].hex()}",
        ]
    )


ACCEPTED_MS: Final = int(datetime(2026, 5, 1, 9, 30, 0, 250_000, tzinfo=UTC).timestamp() * 1000)


@cache
def _broker_key() -> broker_keys.BrokerKey:
    private = hashlib.shake_256(b"tearline TEST ONLY key broker").digest(32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "broker.key"
        path.write_text(b64e(private) + "\n")
        return broker_keys.load(path)


def _receipt() -> Receipt:
    v = vector("classic")
    position = f"{ACCEPTED_MS}-0"
    return Receipt(
        id=header_of("classic")["id"],
        originator="GBR",
        envelope_sha256=b64e(hashlib.sha256(v["envelope"].encode()).digest()),
        accepted_at=format_time(datetime.fromtimestamp(ACCEPTED_MS / 1000, UTC)),
        recipients=(
            Delivery("USA", "fvey-cyber", position),
            Delivery("EST", "nordic-baltic-cyber", position),
        ),
    )


def render_receipt() -> str:
    key = _broker_key()
    signed = sign_receipt(_receipt(), key.kid, key.signer)
    body = canonical_json(signed["receipt"])
    return "\n".join(
        [
            "# the response body of POST /v1/reports (201)",
            json.dumps(signed, separators=(",", ":")),
            "# what the signature covers: PAE(receipt type, canonical JSON of `receipt`)",
            f"DSSEv1 {len(RECEIPT_TYPE)} {RECEIPT_TYPE.decode()} {len(body)} {body.decode()}",
        ]
    )


def render_directory_broker() -> str:
    key = _broker_key()
    return _json_block({"kid": key.kid, "alg": "Ed25519", "public": b64e(key.public)})


def _http_request(name: str) -> str:
    v = request_vector(name)
    target = v["url"].partition("://")[2]
    target = target[target.index("/") :]
    lines = [f"{v['method']} {target} HTTP/1.1", *(f"{n}: {val}" for n, val in v["headers"])]
    return "\n".join([*lines, "", v["body"]] if v["body"] else lines)


def render_request_post() -> str:
    return _http_request("accepted-post")


def render_signature_base_post() -> str:
    return str(request_vector("accepted-post")["signature_base"])


def render_request_get() -> str:
    return (
        _http_request("accepted-get-with-query")
        + "\n\n"
        + str(request_vector("accepted-get-with-query")["signature_base"])
    )


@dataclass(frozen=True)
class UriCase:
    public_url: str | None
    host: str
    server: tuple[str, int]
    raw_path: str
    scheme: str = "http"


URI_CASES: Final = (
    UriCase(None, "127.0.0.1:8000", ("127.0.0.1", 8000), "/v1/inbox?wait=30&limit=10"),
    UriCase(None, "LOCALHOST:8000", ("127.0.0.1", 8000), "/v1/inbox?limit=10&wait=30"),
    UriCase(None, "192.0.2.7", ("192.0.2.7", 80), "/v1/dead-letters?partner=EE%2DCERT"),
    UriCase(None, "192.0.2.7:80", ("192.0.2.7", 80), "/v1/partners"),
    UriCase(None, "broker.example", ("192.0.2.7", 80), "/v1/partners"),
    UriCase(None, "127.0.0.1:8000", ("127.0.0.1", 8000), "/v1/inbox?"),
    UriCase("https://tearline.example", "10.0.0.5:8000", ("10.0.0.5", 8000), "/v1/inbox?wait=5"),
    UriCase("https://a.example,https://b.example", "B.example", ("10.0.0.5", 8000), "/v1/inbox"),
    UriCase("https://a.example,https://b.example", "c.example", ("10.0.0.5", 8000), "/v1/inbox"),
)


def _target_uri(case: UriCase) -> str:
    path, _, query = case.raw_path.partition("?")
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": case.scheme,
        "server": case.server,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", case.host.encode())],
        "root_path": "",
    }
    public = Settings(public_url=case.public_url).public_urls
    try:
        return f"`{target_uri(Request(scope), public)}`"
    except MisdirectedError as exc:
        return f"421 `{exc.code}`"


def render_target_uri_table() -> str:
    rows = [
        (
            f"`{c.public_url}`" if c.public_url else "—",
            f"`{c.host}`",
            f"`{c.server[0]}:{c.server[1]}`",
            f"`{c.raw_path}`",
            _target_uri(c),
        )
        for c in URI_CASES
    ]
    return _table(
        ("`TEARLINE_PUBLIC_URL`", "`Host`", "server address", "request target", "`@target-uri`"),
        rows,
    )


def _deliveries() -> list[Delivered]:
    report_id = header_of("classic")["id"]
    first = f"{ACCEPTED_MS}-0"
    return [
        Delivered(first, report_id, "GBR", vector("classic")["envelope"].encode(), 1),
        Delivered(f"{ACCEPTED_MS + 300_000}-0", report_id, "GBR", None, 1, "recall"),
        Delivered(
            f"{ACCEPTED_MS + 86_400_000}-0", "", "", None, 2, "gap", {"lost": 3, "before": first}
        ),
    ]


def render_inbox_page() -> str:
    page = InboxPage(entries=[Entry(**d.to_dict()) for d in _deliveries()])
    return _json_block(page.model_dump(mode="json"))


def render_sse() -> str:
    events = [entry_event(d) for d in _deliveries()[1:]]
    events.append(error_event(RedisConnectionError("connection refused")))
    raw = b"".join(e.encode() for e in events)
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends with CRLF
    return raw.decode().replace("\r\n", "\n").rstrip("\n")


def _http_response(exc: TearlineError) -> str:
    response = error_response(exc)
    reason = {401: "Unauthorized", 503: "Service Unavailable", 421: "Misdirected Request"}
    lines = [f"HTTP/1.1 {response.status_code} {reason[response.status_code]}"]
    lines += [
        f"{name}: {value}"
        for name, value in response.headers.items()
        if name in ("content-type", "www-authenticate", "retry-after")
    ]
    return "\n".join([*lines, "", bytes(response.body).decode()])


def render_error_responses() -> str:
    stale = request_vector("stale_signature")
    try:
        request_check(stale)
    except AuthenticationError as exc:
        refused = exc
    else:  # pragma: no cover
        raise AssertionError("the stale vector was accepted")
    return _http_response(refused) + "\n\n" + _http_response(redis_outage(RedisConnectionError()))


def request_check(v: dict[str, Any]) -> signatures.Authenticated:
    from tests.unit.test_request_signature_vectors import check

    return check(v)


def validate_refusal_table(text: str) -> None:
    """Hand-written rows: the codes of broker.signatures's docstring, in order, each with vectors of
    that code."""
    from tests.unit.test_request_signature_vectors import documented_codes, vectors

    rows = [line for line in text.splitlines() if line.startswith("| `")]
    codes = [re.match(r"\| `([a-z_]+)`", r)[1] for r in rows]  # type: ignore[index]
    assert codes == documented_codes()
    by_name = {v["name"]: v for v in vectors()["vectors"]}
    for row, code in zip(rows, codes, strict=True):
        named = re.findall(r"`([a-z_]+(?:-[a-z0-9-]+)?)`", row.split("|")[-2])
        if code == "replayed_request":
            assert named == [], row
            continue
        assert named, f"row {code} names no vector"
        for name in named:
            assert by_name[name]["expect"]["code"] == code, (name, code)


def validate_error_codes(text: str) -> None:
    """Each code the hand-written list names is a string literal of clients/ or broker/."""
    source = "\n".join(
        p.read_text() for folder in ("clients", "broker") for p in (ROOT / folder).rglob("*.py")
    )
    codes = re.findall(r"^- `([a-z_]+)`", text, re.MULTILINE)
    assert codes, "no codes listed"
    for code in codes:
        assert f'"{code}"' in source, f"no string {code!r} in clients/ or broker/"


# --- governance (§11) -------------------------------------------------------------------------

GOV_EXPIRES: Final = "2036-01-01T00:00:00Z"
GOV_TIMESTAMP: Final = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _gov_private(holder: str) -> bytes:
    return hashlib.shake_256(f"tearline TEST ONLY key governance {holder}".encode()).digest(32)


@cache
def _gov_documents() -> tuple[bytes, bytes]:
    private = _gov_private("GBR")
    public = crypto.public_key_of(crypto.ED25519, private)
    root = gov_documents.add_signature(
        gov_documents.new_document(
            {
                "type": "root",
                "version": 1,
                "expires": GOV_EXPIRES,
                "threshold": 1,
                "keys": [{"public": b64e(public), "holder": "GBR"}],
            }
        ),
        private,
    )
    registry = gov_documents.add_signature(
        gov_documents.new_document(
            {
                "type": "registry",
                "version": 1,
                "expires": GOV_EXPIRES,
                "partners": [yaml_entry()],
                "scheme": {"policy": "TEARLINE-TEST", "levels": ["UNCLASSIFIED", "SECRET"]},
            }
        ),
        private,
    )
    return root, registry


def yaml_entry() -> dict[str, Any]:
    """The vectors' GBR as ``public-entry`` shows it (§2)."""
    entry: dict[str, Any] = yaml.safe_load(render_public_entry())
    return entry


def render_governance_root() -> str:
    return _json_block(json.loads(_gov_documents()[0]))


def render_governance_registry() -> str:
    return _json_block(json.loads(_gov_documents()[1]))


def render_governance_log() -> str:
    leaves = list(_gov_documents())
    key = _broker_key()
    head = merkle.TreeHead(2, merkle.root_hash(leaves))
    signed_head = gov_log.sign_tree_head(head, kid=key.kid, signer=key.signer, now=GOV_TIMESTAMP)
    lines = [
        "# leaf 0 is the root's bytes above, leaf 1 the registry's (canonical JSON, as served)",
        *(f"leaf_hash[{i}] = {merkle.leaf_hash(d).hex()}" for i, d in enumerate(leaves)),
        f"root_hash (2 leaves) = {head.root_hash.hex()}",
        f"root_hash (1 leaf)   = {merkle.root_hash(leaves[:1]).hex()}",
        "inclusion(index=1, tree_size=2) = "
        + json.dumps([b64e(h) for h in merkle.inclusion_proof(leaves, 1)]),
        "consistency(first=1, second=2) = "
        + json.dumps([b64e(h) for h in merkle.consistency_proof(leaves, 1, 2)]),
        "# GET /v1/log/head",
        json.dumps(signed_head, separators=(",", ":")),
    ]
    return "\n".join(lines)


@cache
def _gov_agreement() -> bytes:
    terms = {
        "id": "gbr-usa",
        "title": "UK-US exchange",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2028-01-01T00:00:00Z",
        "ceiling": "SECRET",
        "topics": ["apt"],
        "parties": {"GBR": {}, "USA": {}},
    }
    return gov_documents.add_signature(
        gov_documents.new_document({"type": "agreement", "agreement": terms}),
        _gov_private("GBR"),
    )


def render_governance_commitment() -> str:
    agreement = _gov_agreement()
    leaf = gov_log.log_leaf(agreement)
    return "\n".join(
        [
            "# an agreement (signed by GBR's key above; USA's signature would follow), as served",
            agreement.decode(),
            "# its leaf in the log: the commitment, canonical JSON",
            leaf.decode(),
            f"sha256(agreement) = {hashlib.sha256(agreement).hexdigest()}",
            f"leaf_hash = {merkle.leaf_hash(leaf).hex()}",
        ]
    )


def test_an_agreements_leaf_commits_to_it_and_shows_no_term() -> None:
    agreement = _gov_agreement()
    leaf = gov_log.log_leaf(agreement)
    commitment = gov_log.parse_commitment(leaf)
    assert commitment is not None
    assert commitment.commits_to(agreement)
    assert commitment.agreement == "gbr-usa"
    assert commitment.parties == {"GBR", "USA"}
    assert not commitment.commits_to(agreement + b" ")
    for term in (b"SECRET", b"apt", b"UK-US", b"2028"):
        assert term not in leaf
    # Every other document is its own leaf.
    assert [gov_log.log_leaf(d) for d in _gov_documents()] == list(_gov_documents())


def test_the_governance_vectors_verify_as_a_node_checks_them() -> None:
    # The trust rules accept them, and the log's hashes are RFC 9162's, recomputed with hashlib.
    root, registry = _gov_documents()
    state = TrustedState(root, GOV_TIMESTAMP)
    state.check_root_not_expired(GOV_TIMESTAMP)
    assert state.update_registry(registry, GOV_TIMESTAMP).version == 1
    leaf = [hashlib.sha256(b"\x00" + d).digest() for d in (root, registry)]
    top = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    key = _broker_key()
    head_doc = gov_log.sign_tree_head(
        merkle.TreeHead(2, top), kid=key.kid, signer=key.signer, now=GOV_TIMESTAMP
    )
    head = gov_log.verify_tree_head(head_doc, kid=key.kid, public=key.public)
    gov_log.check_included(registry, 1, head, [leaf[0]])
    assert merkle.consistency_proof([root, registry], 1, 2) == [leaf[1]]


RENDER: Final[dict[str, Callable[[], str]]] = {
    "constants": render_constants,
    "key-table": render_key_table,
    "identity-file": render_identity_file,
    "public-entry": render_public_entry,
    "hybrid-key": render_hybrid_key,
    "label": render_label,
    "header": render_header,
    "envelope": render_envelope,
    "pae": render_pae,
    "content-aad": render_content_aad,
    "wrap-info": render_wrap_info,
    "ciphertext": render_ciphertext,
    "wrapped-keys": render_wrapped_keys,
    "receipt": render_receipt,
    "directory-broker": render_directory_broker,
    "request-post": render_request_post,
    "signature-base-post": render_signature_base_post,
    "request-get": render_request_get,
    "target-uri": render_target_uri_table,
    "inbox-page": render_inbox_page,
    "sse": render_sse,
    "error-responses": render_error_responses,
    "status-table": render_status_table,
    "governance-root": render_governance_root,
    "governance-registry": render_governance_registry,
    "governance-log": render_governance_log,
    "governance-commitment": render_governance_commitment,
}
VALIDATE: Final[dict[str, Callable[[str], None]]] = {
    "refusal-codes": validate_refusal_table,
    "error-codes": validate_error_codes,
}


# --- reading the document --------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    name: str | None  # the check=NAME, or None for a layout block
    info: str
    start: int  # index of the first content line
    end: int  # index of the closing line
    text: str


_FENCE = re.compile(r"^```(.*)$")
_REGION = re.compile(r"^<!-- check=([a-z0-9-]+) -->$")
_CHECK = re.compile(r"(?:^|\s)check=([a-z0-9-]+)(?:\s|$)")


def blocks(lines: list[str]) -> Iterator[Block]:
    i = 0
    while i < len(lines):
        fence, region = _FENCE.match(lines[i]), _REGION.match(lines[i])
        if fence:
            close = lines.index("```", i + 1)
            info = fence[1].strip()
            check = _CHECK.search(info)
            text = "\n".join(lines[i + 1 : close])
            yield Block(check[1] if check else None, info, i + 1, close, text)
            i = close + 1
        elif region:
            close = lines.index("<!-- /check -->", i + 1)
            text = "\n".join(lines[i + 1 : close])
            yield Block(region[1], "region", i + 1, close, text)
            i = close + 1
        else:
            i += 1


def doc_blocks() -> list[Block]:
    return list(blocks(DOC.read_text().splitlines()))


def checked_names() -> list[str]:
    return [b.name for b in doc_blocks() if b.name]


def test_every_block_is_checked_or_layout() -> None:
    for block in doc_blocks():
        if block.name is None:
            assert block.info == "layout", f"line {block.start}: ```{block.info} is not checked"
            # A layout block is notation; an example value (base64, hex, a key) is checked.
            assert not re.search(r"[A-Za-z0-9_-]{24,}", block.text), block.text


def test_every_check_in_the_document_exists_and_every_renderer_is_used() -> None:
    names = checked_names()
    assert sorted(set(names)) == sorted(set(RENDER) | set(VALIDATE))


@pytest.mark.parametrize("name", sorted(RENDER))
def test_rendered_block_matches_the_code(name: str) -> None:
    found = [b for b in doc_blocks() if b.name == name]
    assert found, f"docs/protocol.md has no check={name}"
    for block in found:
        assert block.text == RENDER[name](), (
            f"docs/protocol.md line {block.start}: check={name} has drifted from the code; "
            "rewrite with `python -m tests.unit.test_protocol_doc` after checking the change"
        )


@pytest.mark.parametrize("name", sorted(VALIDATE))
def test_validated_block_holds(name: str) -> None:
    for block in (b for b in doc_blocks() if b.name == name):
        VALIDATE[name](block.text)


# --- the claims behind the examples, checked independently -----------------------------------


@pytest.mark.parametrize("suite", ["classic", "pq-hybrid"])
def test_wrapped_keys_open_with_rfc_9180_as_documented(suite: str) -> None:
    v = vector(suite)
    alg = crypto.X25519 if suite == "classic" else crypto.ML_KEM_768_X25519
    for slot in header_of(suite)["recipients"]:
        info = b64d(v["wrap_info"][slot["partner"]])
        assert parse_bind(info, b"tearline-v1 wrap") == [
            header_of(suite)["id"].encode(),
            b"GBR",
            slot["partner"].encode(),
            b64d(v["label_digest"]),
        ]
        content_key = hpke_open(
            suite, private_key(suite, slot["partner"], alg), b64d(slot["wrapped_key"]), info
        )
        assert content_key == b64d(v["content_key"])


@pytest.mark.parametrize("suite", ["classic", "pq-hybrid"])
def test_ciphertext_is_nonce_then_aes_gcm_with_the_documented_aad(suite: str) -> None:
    v = vector(suite)
    ct, aad = b64d(v["ciphertext"]), b64d(v["content_aad"])
    assert parse_bind(aad, b"tearline-v1 content") == [
        header_of(suite)["id"].encode(),
        b"GBR",
        b64d(v["label_digest"]),
    ]
    assert ct[:12] == b64d(v["nonce"])
    assert AESGCM(b64d(v["content_key"])).decrypt(ct[:12], ct[12:], aad) == v["payload"].encode()
    assert hashlib.sha256(ct).digest() == b64d(header_of(suite)["ciphertext_sha256"])
    assert hashlib.sha256(canonical_json(v["label"])).digest() == b64d(v["label_digest"])


def test_key_layouts_derive_the_registered_public_keys() -> None:
    for key in vector("pq-hybrid")["identities"]["USA"]["keys"]:
        private, public = b64d(key["private"]), b64d(key["public"])
        if key["alg"] == crypto.ML_KEM_768_X25519:
            kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64])
            dh = x25519.X25519PrivateKey.from_private_bytes(private[64:])
            assert public == (
                kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
            )
        assert len(private) == crypto.PRIVATE_KEY_BYTES[key["alg"]]
        assert len(public) == crypto.PUBLIC_KEY_BYTES[key["alg"]]


def test_the_receipt_example_verifies_and_its_kid_is_derived_from_the_key() -> None:
    key = _broker_key()
    signed = json.loads(render_receipt().splitlines()[1])
    assert verify_receipt(signed, key.kid, key.public) == _receipt()
    assert key.kid == "broker-" + b64e(hashlib.sha256(key.public).digest())[:12]


def test_ml_dsa_signatures_are_pure_ml_dsa_65_with_an_empty_context() -> None:
    v = vector("pq-hybrid")
    outer = json.loads(v["envelope"])
    registry = {k["kid"]: k for p in v["registry"] for k in p["keys"]}
    (sig,) = [s for s in outer["signatures"] if registry[s["kid"]]["alg"] == crypto.ML_DSA_65]
    public = mldsa.MLDSA65PublicKey.from_public_bytes(b64d(registry[sig["kid"]]["public"]))
    public.verify(b64d(sig["sig"]), b64d(v["pae"]), b"")
    assert len(b64d(sig["sig"])) == 3309


def test_envelope_signatures_cover_the_documented_pae() -> None:
    for suite in ("classic", "pq-hybrid"):
        v = vector(suite)
        header = v["header"].encode()
        payload_type = b"application/vnd.tearline.header+json;version=1"
        assert b64d(v["pae"]) == b"DSSEv1 %d %s %d %s" % (
            len(payload_type),
            payload_type,
            len(header),
            header,
        )


def test_inbox_page_and_events_agree() -> None:
    page = json.loads(render_inbox_page())["entries"]
    sse = render_sse().split("\n\n")
    for entry, event in zip(page[1:], sse, strict=False):
        lines = dict(line.split(": ", 1) for line in event.splitlines())
        assert lines["id"] == entry["entry_id"]
        assert lines["event"] == entry["kind"]
        assert json.loads(lines["data"]) == entry


def test_created_timestamps_in_the_examples_are_what_format_time_writes() -> None:
    assert header_of("classic")["created"] == "2026-05-01T09:30:00Z"
    assert _receipt().accepted_at == "2026-05-01T09:30:00.250000Z"
    assert format_time(datetime(2026, 5, 1, 9, 30, tzinfo=UTC) + timedelta(microseconds=1)) == (
        "2026-05-01T09:30:00.000001Z"
    )


# --- rewriting the document after a deliberate change ----------------------------------------


def rewrite() -> int:
    lines = DOC.read_text().splitlines()
    changed = 0
    for block in reversed(list(blocks(lines))):
        if block.name in RENDER:
            new = RENDER[block.name]().split("\n")
            if lines[block.start : block.end] != new:
                lines[block.start : block.end] = new
                changed += 1
    DOC.write_text("\n".join(lines) + "\n")
    return changed


if __name__ == "__main__":
    print(f"rewrote {rewrite()} block(s) of {DOC}", file=sys.stderr)
