"""TAXII 2.1 as the gateway speaks it, pure: media types and content negotiation, error
messages, timestamps, the filters of a request (``match[...]``, ``added_after``, ``limit``,
``next``), the opaque paging token, and the shapes of envelopes, manifests, versions and status
resources.

Paging: every stored object version has a place in one insertion sequence (an SQLite
``INTEGER PRIMARY KEY AUTOINCREMENT``, never reused) and a ``date_added`` that is strictly
increasing along it. A page is the first ``limit`` rows after a cursor in that sequence, and
``next`` is the cursor of its last row, so a client that follows ``next`` sees each row of the
query once, however many reports arrive meanwhile; ``added_after`` with the last page's
``X-TAXII-Date-Added-Last`` is exact for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tearline.clients.errors import TearlineError
from tearline.clients.protocol.encoding import EncodingError, b64d, b64e

MEDIA_TYPE_TAXII: Final = "application/taxii+json;version=2.1"
MEDIA_TYPE_STIX: Final = "application/stix+json;version=2.1"
#: The namespace of the gateway's collection ids: uuid5(this, "<partner>/<collection name>").
COLLECTION_NAMESPACE: Final = uuid.UUID("6f1c9d3e-2a4b-5c8d-9e0f-7a1b2c3d4e5f")

_STIX_ID: Final = re.compile(
    r"[a-z][a-z0-9-]{1,249}--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII
)
_STIX_TYPE: Final = re.compile(r"[a-z][a-z0-9-]{1,249}", re.ASCII)
_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z", re.ASCII
)
_SPEC_VERSION: Final = re.compile(r"\d\.\d", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class TaxiiError(TearlineError):
    """A refusal, answered as a TAXII error message with ``status``; ``code`` is its
    ``error_code`` (or ``taxii_<status>``)."""

    code = "taxii_error"

    def __init__(
        self,
        status: int,
        title: str,
        description: str,
        *,
        error_code: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description, code=error_code or f"taxii_{status}")
        self.status = status
        self.title = title
        self.description = description
        self.error_code = error_code
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": self.title,
            "description": self.description,
            "http_status": str(self.status),
        }
        if self.error_code:
            body["error_code"] = self.error_code
        if self.details:
            body["details"] = self.details
        return body


def bad_request(description: str, error_code: str = "invalid_parameter") -> TaxiiError:
    return TaxiiError(400, "Bad request", description, error_code=error_code)


def collection_id(partner: str, name: str) -> str:
    """A collection's id: stable for a node and a name, across restarts and reinstalls."""
    return str(uuid.uuid5(COLLECTION_NAMESPACE, f"{partner}/{name}"))


# --- content negotiation ----------------------------------------------------------------------


def _media_ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        out.append((parts[0].lower(), params))
    return out


def accepts_taxii(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits ``application/taxii+json;version=2.1``: that type
    with no version or version 2.1, ``application/*`` or ``*/*`` (no header admits anything)."""
    if accept is None or not accept.strip():
        return True
    for media, params in _media_ranges(accept):
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if media in ("*/*", "application/*"):
            return True
        if media == "application/taxii+json" and params.get("version", "2.1") == "2.1":
            return True
    return False


def is_taxii_content_type(content_type: str | None) -> bool:
    """Whether a POST body's ``Content-Type`` is ``application/taxii+json;version=2.1``."""
    if not content_type:
        return False
    ranges = _media_ranges(content_type)
    if len(ranges) != 1:
        return False
    media, params = ranges[0]
    return media == "application/taxii+json" and params.get("version", "2.1") == "2.1"


# --- timestamps -------------------------------------------------------------------------------


def parse_timestamp(text: object) -> int:
    """An RFC 3339 UTC timestamp (``...Z``, any number of fractional digits) as microseconds
    since the epoch (digits past the sixth are dropped). Raises ``ValueError``."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a timestamp")
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a timestamp like 2026-01-01T00:00:00.000Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = (m.group(7) or "")[:6].ljust(6, "0")
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + int(fraction)


def format_timestamp(us: int) -> str:
    """Microseconds since the epoch as TAXII writes ``date_added``: always six digits."""
    seconds, micro = divmod(us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micro:06d}Z"


def epoch_us(moment: datetime) -> int:
    """``moment`` (timezone-aware) as microseconds since the epoch, as ``date_added`` is kept; the
    clock is read by the caller (:func:`gateway.store.clock_us`)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- the names the gateway answers for --------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def authority_forms(authority: str, scheme: str = "http") -> frozenset[str]:
    """The ``Host`` values that name ``authority`` (``host`` or ``host:port``, lower-cased):
    itself, and with or without the scheme's default port."""
    name = authority.lower()
    host, sep, port = name.rpartition(":")
    default = _DEFAULT_PORTS.get(scheme)
    if sep and "]" not in port and port.isdigit():  # host:port (an IPv6 literal is bracketed)
        return frozenset({name, host}) if int(port) == default else frozenset({name})
    return frozenset({name, f"{name}:{default}"}) if default else frozenset({name})


def check_host(host: str | None, allowed: frozenset[str]) -> str:
    """``host`` (a request's ``Host``) if it is one of the names the gateway answers for;
    421 otherwise: an address the gateway does not know it has (DNS rebinding, a misrouted
    proxy) gets nothing, and the Host it sent is not written into the answer either."""
    name = (host or "").strip().lower()
    if name not in allowed:
        known = ", ".join(sorted(allowed))
        raise TaxiiError(
            421,
            "Misdirected request",
            f"this gateway answers only for {known}, and the request's Host is none of them; "
            "send it to one of those (behind a proxy, set public_url or names in the "
            "gateway's configuration)",
            error_code="misdirected_request",
        )
    return name


# --- STIX objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StixFacts:
    """What the store indexes of one STIX object."""

    id: str
    type: str
    #: ``modified``, else ``created``; ``None`` for an object with neither (most SCOs), whose
    #: version is then the date it was added.
    version: str | None
    version_us: int | None
    spec_version: str


def object_problem(obj: object) -> str | None:
    """Why ``obj`` cannot be stored as a STIX object, or None."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    oid, otype = obj.get("id"), obj.get("type")
    if not isinstance(otype, str) or not _STIX_TYPE.fullmatch(otype):
        return "its type is missing or malformed"
    if not isinstance(oid, str) or not _STIX_ID.fullmatch(oid):
        return "its id is missing or not TYPE--UUID"
    if oid.split("--", 1)[0] != otype:
        return f"its id {oid} does not start with its type {otype}"
    for name in ("modified", "created"):
        if name in obj:
            try:
                parse_timestamp(obj[name])
            except ValueError as exc:
                return f"{name}: {exc}"
    spec = obj.get("spec_version")
    if spec is not None and (not isinstance(spec, str) or not _SPEC_VERSION.fullmatch(spec)):
        return "its spec_version is malformed"
    return None


def facts(obj: Mapping[str, Any]) -> StixFacts:
    """The indexed facts of an object :func:`object_problem` passed."""
    version = obj.get("modified", obj.get("created"))
    if "spec_version" in obj:
        spec = str(obj["spec_version"])
    else:  # STIX 2.0 SDOs had no spec_version; 2.1 SCOs may omit it (and have no created)
        spec = "2.1" if "created" not in obj and "modified" not in obj else "2.0"
    return StixFacts(
        id=str(obj["id"]),
        type=str(obj["type"]),
        version=str(version) if version is not None else None,
        version_us=parse_timestamp(version) if version is not None else None,
        spec_version=spec,
    )


def media_type(spec_version: str) -> str:
    return f"application/stix+json;version={spec_version}"


# --- request filters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """The ``match[...]`` and ``added_after`` of a request. ``versions`` holds ``first``,
    ``last``, ``all`` and timestamps in microseconds; empty means the default, ``last``."""

    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str | int, ...] = ()
    spec_versions: tuple[str, ...] = ()
    added_after: int | None = None

    @property
    def version_set(self) -> tuple[str | int, ...]:
        return self.versions or ("last",)

    def fingerprint(self, scope: str) -> str:
        """A digest of the query, so a ``next`` token is used only with the query it came from."""
        data = json.dumps(
            [scope, self.ids, self.types, [str(v) for v in self.versions],
             self.spec_versions, self.added_after],
            separators=(",", ":"),
        )  # fmt: skip
        return hashlib.sha256(data.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Query:
    filter: Filter
    limit: int
    #: The sequence number after which this page starts (0: from the beginning).
    after_seq: int = 0
    scope: str = ""


#: The filters each endpoint takes (TAXII 2.1 §5): ``objects``, ``manifest``, ``object`` (one
#: id), ``versions``.
ALLOWED: Final[Mapping[str, frozenset[str]]] = {
    "objects": frozenset({"id", "type", "version", "spec_version"}),
    "manifest": frozenset({"id", "type", "version", "spec_version"}),
    "object": frozenset({"version", "spec_version"}),
    "versions": frozenset({"spec_version"}),
}


def _values(raw: Sequence[str], name: str) -> tuple[str, ...]:
    values = tuple(v.strip() for item in raw for v in item.split(","))
    if not values or any(not v for v in values):
        raise bad_request(f"{name} has an empty value")
    if len(values) > 100:
        raise bad_request(f"{name} lists more than 100 values")
    return values


def parse_query(
    params: Iterable[tuple[str, str]], endpoint: str, *, page_size: int, scope: str
) -> Query:
    """The filters, limit and cursor of a request's query string (pairs as sent), refusing
    what the endpoint does not take with 400."""
    allowed = ALLOWED[endpoint]
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: list[str | int] = []
    spec_versions: tuple[str, ...] = ()
    added_after: int | None = None
    limit = page_size
    token: str | None = None
    for key, raw in grouped.items():
        m = re.fullmatch(r"match\[([a-z_]+)\]", key)
        if m is not None:
            what = m.group(1)
            if what not in allowed:
                raise bad_request(
                    f"{key} is not a filter this endpoint supports", "unsupported_filter"
                )
            values = _values(raw, key)
            if what == "id":
                bad = [v for v in values if not _STIX_ID.fullmatch(v)]
                if bad:
                    raise bad_request(f"match[id] {bad[0]!r} is not a STIX id")
                ids = values
            elif what == "type":
                bad = [v for v in values if not _STIX_TYPE.fullmatch(v)]
                if bad:
                    raise bad_request(f"match[type] {bad[0]!r} is not a STIX type")
                types = values
            elif what == "version":
                for v in values:
                    if v in ("first", "last", "all"):
                        versions.append(v)
                        continue
                    try:
                        versions.append(parse_timestamp(v))
                    except ValueError:
                        raise bad_request(
                            f"match[version] {v!r} is not first, last, all or a timestamp"
                        ) from None
            else:
                bad = [v for v in values if not _SPEC_VERSION.fullmatch(v)]
                if bad:
                    raise bad_request(f"match[spec_version] {bad[0]!r} is not like 2.1")
                spec_versions = values
        elif key == "added_after":
            if len(raw) != 1:
                raise bad_request("added_after is given more than once")
            try:
                added_after = parse_timestamp(raw[0])
            except ValueError as exc:
                raise bad_request(f"added_after: {exc}") from None
        elif key == "limit":
            if len(raw) != 1 or not re.fullmatch(r"[0-9]{1,9}", raw[0]) or int(raw[0]) < 1:
                raise bad_request("limit must be a positive integer")
            limit = min(int(raw[0]), page_size)
        elif key == "next":
            if len(raw) != 1:
                raise bad_request("next is given more than once")
            token = raw[0]
        else:
            raise bad_request(f"{key} is not a parameter of this endpoint", "unsupported_parameter")
    filter_ = Filter(
        ids=tuple(sorted(set(ids))),
        types=tuple(sorted(set(types))),
        versions=tuple(sorted(set(versions), key=str)),
        spec_versions=tuple(sorted(set(spec_versions))),
        added_after=added_after,
    )
    after = decode_next(token, filter_.fingerprint(scope)) if token is not None else 0
    return Query(filter=filter_, limit=limit, after_seq=after, scope=scope)


#: The largest cursor a ``next`` token may hold: SQLite's INTEGER is a signed 64-bit number, and
#: a larger one would fail in the query (a 500) instead of being refused here (a 400).
MAX_SEQ: Final = 2**63 - 1
_SEQ: Final = re.compile(r"[0-9]{1,19}", re.ASCII)


def encode_next(seq: int, fingerprint: str) -> str:
    return b64e(f"{seq}.{fingerprint}".encode())


def decode_next(token: str, fingerprint: str) -> int:
    """The cursor in a ``next`` token; 400 for a token that is not one, or of another query."""
    try:
        seq_text, _, fp = b64d(token).decode("ascii").partition(".")
    except (EncodingError, UnicodeDecodeError, ValueError):
        seq_text = fp = ""
    # Digits only (int() would take "+1", " 1", "1_0"), and within SQLite's 64-bit INTEGER.
    if not _SEQ.fullmatch(seq_text) or int(seq_text) > MAX_SEQ:
        raise bad_request(
            "next is not a token this server gave: send the next of the previous page as it "
            "came, or leave it out to start from the first page",
            "invalid_next",
        )
    seq = int(seq_text)
    if fp != fingerprint:
        raise bad_request(
            "next belongs to another query: send it with the filters of the request that "
            "returned it",
            "invalid_next",
        )
    return seq


# --- pages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One stored object version, as the store returns it for a page."""

    seq: int
    id: str
    version: str
    spec_version: str
    date_added: int
    json: str = ""


@dataclass(frozen=True)
class Page:
    rows: tuple[Row, ...]
    more: bool
    next: str | None = None

    def headers(self) -> dict[str, str]:
        if not self.rows:
            return {}
        return {
            "X-TAXII-Date-Added-First": format_timestamp(self.rows[0].date_added),
            "X-TAXII-Date-Added-Last": format_timestamp(self.rows[-1].date_added),
        }


def make_page(rows: Sequence[Row], query: Query) -> Page:
    """A page from up to ``limit + 1`` rows after the cursor: the extra row says there is more."""
    more = len(rows) > query.limit
    kept = tuple(rows[: query.limit])
    token = encode_next(kept[-1].seq, query.filter.fingerprint(query.scope)) if more else None
    return Page(rows=kept, more=more, next=token)


def _paged(page: Page, key: str, items: list[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"more": page.more}
    if page.next is not None:
        body["next"] = page.next
    if items:
        body[key] = items
    return body


def envelope(page: Page) -> dict[str, Any]:
    """An envelope (§3.7): ``more``, ``next`` while there is more, the objects if any."""
    return _paged(page, "objects", [json.loads(r.json) for r in page.rows])


def manifest(page: Page) -> dict[str, Any]:
    return _paged(
        page,
        "objects",
        [
            {
                "id": r.id,
                "date_added": format_timestamp(r.date_added),
                "version": r.version,
                "media_type": media_type(r.spec_version),
            }
            for r in page.rows
        ],
    )


def versions(page: Page) -> dict[str, Any]:
    return _paged(page, "versions", [r.version for r in page.rows])


# --- status resources ------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusDetail:
    id: str
    version: str
    message: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"id": self.id, "version": self.version}
        if self.message:
            out["message"] = self.message
        return out


def status_resource(
    status_id: str,
    request_timestamp: int,
    successes: Sequence[StatusDetail],
    failures: Sequence[StatusDetail],
    pendings: Sequence[StatusDetail],
) -> dict[str, Any]:
    """A status resource (§4.3.1): ``complete`` once nothing is pending."""
    return {
        "id": status_id,
        "status": "pending" if pendings else "complete",
        "request_timestamp": format_timestamp(request_timestamp),
        "total_count": len(successes) + len(failures) + len(pendings),
        "success_count": len(successes),
        "successes": [d.to_dict() for d in successes],
        "failure_count": len(failures),
        "failures": [d.to_dict() for d in failures],
        "pending_count": len(pendings),
        "pendings": [d.to_dict() for d in pendings],
    }
