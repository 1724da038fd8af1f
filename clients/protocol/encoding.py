"""Byte-level encodings shared by every protocol module: base64url, strict JSON, time, ids.

All pure. Decoders are strict on purpose: a value has exactly one accepted encoding, so two
different byte strings never mean the same thing to a verifier.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from tearline.clients.errors import InputError

#: The content type of a STIX 2.1 payload (the envelope's default): here, with no cryptography
#: imported, so that a command can name it as a default without loading the envelope.
STIX_CONTENT_TYPE: Final = "application/stix+json;version=2.1"

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)


class EncodingError(InputError, ValueError):
    """A value is not in its one accepted encoding (base64url without padding, strict JSON,
    RFC 3339 in UTC range). Bad input; a ValueError too, for code that parses with stdlib
    habits."""

    code = "invalid_encoding"


# --- base64url ------------------------------------------------------------------------------


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_SIX_BITS = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_PADDING = (b"", None, b"==", b"=")


def b64d(text: str) -> bytes:
    """Decode unpadded base64url, refusing padding, other alphabets and non-zero spare bits."""
    # On the broker's hot path: checks are ordered cheapest first and avoid a regex.
    if type(text) is not str:
        raise EncodingError("not unpadded base64url")
    spare = len(text) % 4
    padding = _PADDING[spare]
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise EncodingError("not unpadded base64url") from None
    if padding is None or b"+" in raw or b"/" in raw or b"=" in raw:
        raise EncodingError("not unpadded base64url")
    try:
        data = binascii.a2b_base64(raw.translate(_TO_STANDARD) + padding, strict_mode=True)
    except binascii.Error:
        raise EncodingError("not unpadded base64url") from None
    # The last character carries 2 (3 chars) or 4 (2 chars) spare bits; canonical is zero.
    if spare and _SIX_BITS[raw[-1]] & (0b1111 if spare == 2 else 0b11):
        raise EncodingError("non-canonical base64url")
    return data


# --- JSON -----------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise EncodingError(f"non-finite number {name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise EncodingError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to infinity
        raise EncodingError(f"number {text} is out of range")
    return value


def strict_loads(data: bytes | str) -> Any:
    """Parse JSON, refusing duplicate keys, non-finite numbers and invalid UTF-8."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except EncodingError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EncodingError(f"not valid JSON: {exc}") from exc


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: byte for byte RFC 8785 on what labels and receipts can hold (plain ASCII
    strings, lists, objects, null; tests/unit/test_canonical_json.py proves it), though not on
    floats or keys past U+FFFF."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def compact_json(value: Any) -> bytes:
    """Compact JSON keeping key order, for bytes that are signed as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# --- signatures ---------------------------------------------------------------------------


def dsse_pae(payload_type: bytes, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a signature over ``body`` really covers."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)


# --- time -----------------------------------------------------------------------------------


def parse_time(text: object) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset; naive times are refused."""
    # One spelling per instant: at most microseconds (what datetime keeps), and no "-00:00".
    if not isinstance(text, str) or not _RFC3339.fullmatch(text) or text.endswith("-00:00"):
        raise EncodingError(f"{text!r} is not an RFC 3339 timestamp with a time zone")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EncodingError(f"{text!r} is not a valid timestamp: {exc}") from exc
    try:
        # "9999-12-31T23:59:59-23:59" parses, but its UTC instant is in year 10000: comparing
        # or formatting it later would raise OverflowError far from here (a 500 at ingest).
        moment.astimezone(UTC)
    except OverflowError:
        raise EncodingError(
            f"{text!r} is outside the representable range (years 0001 to 9999 in UTC)"
        ) from None
    return moment


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise EncodingError("naive datetimes are not allowed; pass an aware UTC time")
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


# --- ids ------------------------------------------------------------------------------------


def new_uuid7(now: datetime) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds of ``now``, then 74 random bits."""
    ms = int(now.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def is_uuid7(text: object) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return False
    return str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
