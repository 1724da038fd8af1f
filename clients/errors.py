"""The one exception tree of Tearline, split by who is at fault.

    TearlineError                 root: every error Tearline raises on purpose
    ├── InputError                the caller sent something malformed (HTTP 400/422)
    │   ├── LabelError            a security label breaks §3 or the marking scheme
    │   ├── StixError             a STIX payload is not STIX 2.1, or is marked above its label
    │   ├── IdentityError         an identity file or key record is malformed
    │   ├── PolicyError           a policy file is invalid (names file, line and field)
    │   ├── EnvelopeError         an envelope failed to verify or open (opaque on purpose)
    │   ├── EncodingError         a value is not in its one accepted encoding (base64url, JSON,
    │   │                         RFC 3339): tearline.clients.protocol.encoding
    │   ├── NotFoundError         no such report or entry (HTTP 404)
    │   ├── ConflictError         same id, other bytes (HTTP 409)
    │   ├── MisdirectedError      sent to a host name this broker is not (HTTP 421)
    │   ├── SlowRequestError      the body did not arrive in time (HTTP 408)
    │   ├── UnsupportedMediaTypeError   a body in a format the endpoint does not take (415)
    │   ├── TooLargeError         body over the limit (HTTP 413)
    │   │   ├── HeadersTooLargeError   too many or too long header lines (HTTP 431)
    │   │   └── LabelTooLargeError     a label's list past its limit (413; a LabelError too)
    │   ├── RequestShapeError     the broker: a request's fields do not fit the API (400/422)
    │   ├── StreamIdError         the broker: a stream id past 64 bits, or no id at all (400)
    │   ├── AuditError            `tearline audit verify`: the audit chain or a checkpoint broke
    │   ├── PartnerFileError      `tearline partner add`: the entry cannot be added
    │   └── ConfigError           `tearline gateway`: its configuration file is invalid
    ├── AuthenticationError       the request's signature is missing, bad, stale or replayed (401)
    ├── DeniedError               policy forbids it (HTTP 403)
    │   └── RateLimitedError      too many requests (HTTP 429)
    ├── TransportError            the network or the peer failed (SDK side)
    │   ├── UnavailableError      the broker is not ready (HTTP 503)
    │   │   └── RedisServerNotFoundError   `tearline serve` finds no redis-server to start
    │   └── StreamLost            the inbox stream broke; AsyncPartner.subscribe reconnects
    ├── GovernanceError           a governance document was refused, or the broker withheld
    │                             one (tearline.clients.governance: the code names the rule)
    ├── LogError                  the broker's transparency log does not add up: do not trust
    │                             the broker on it (a fork, a rollback, a document not logged)
    ├── LogProofError             a Merkle proof did not verify (LogError says what it means)
    ├── TaxiiError                `tearline gateway` refuses a TAXII request (its own status)
    └── InternalError             a bug or a broken invariant (HTTP 500)

Every error carries a stable, machine-readable ``code`` and a sentence a person understands.
"""

from __future__ import annotations

from typing import Any, Final


class TearlineError(Exception):
    """Root of every error Tearline raises on purpose."""

    code: str = "tearline_error"
    #: Seconds after which trying again may succeed (HTTP ``Retry-After``); None: don't retry
    #: the same request unchanged.
    retry_after_s: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class InputError(TearlineError):
    """The caller sent something malformed (HTTP 400/422): fix the request; sending it again
    unchanged fails again."""

    code = "invalid_input"


class LabelError(InputError):
    """A security label breaks the label rules or the marking scheme (the message names the
    field)."""

    code = "invalid_label"


class IdentityError(InputError):
    """An identity file or key record is malformed or unusable: the message names the field."""

    code = "invalid_identity"


class StixError(InputError):
    """A STIX payload refused on the partner node, before sealing. ``code`` says which check:
    ``invalid_stix`` (``details["findings"]``: the validator's findings, the first 50, and
    ``details["count"]``) or ``stix_marking_conflict`` (``details["objects"]``: each object
    whose TLP marking is more restrictive than the label's TLP, with that marking)."""

    code = "invalid_stix"


class PolicyError(InputError):
    """A policy file is invalid. ``file``, ``line`` and ``field`` say where."""

    code = "invalid_policy"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        where = ":".join(p for p in (file, str(line) if line else None) if p)
        prefix = f"{where}: " if where else ""
        at = f" (field {field})" if field else ""
        super().__init__(f"{prefix}{message}{at}", code=code, details=details)
        self.problem = message  # without the location, for callers that place it themselves
        self.file = file
        self.line = line
        self.field = field


class EnvelopeError(InputError):
    """An envelope failed to verify or open.

    Deliberately opaque: callers (and attackers) learn only that it failed. The precise cause is
    in ``reason``, for logs and tests, never for a response body.
    """

    code = "envelope_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__("the envelope could not be verified or opened")
        self.reason = reason


class NotFoundError(InputError):
    """No such report, entry or partner here (HTTP 404): check the id."""

    code = "not_found"


class ConflictError(InputError):
    """The id is taken by other bytes (HTTP 409): a new report takes a new id."""

    code = "conflict"


class TooLargeError(InputError):
    """Over a size limit (HTTP 413): the message names the limit; make it smaller."""

    code = "too_large"


class HeadersTooLargeError(TooLargeError):
    """Too many, or too long, header lines (HTTP 431): send fewer."""

    code = "headers_too_large"


class LabelTooLargeError(LabelError, TooLargeError):
    """A label with more entries in a list than clients.protocol.label allows (HTTP 413):
    ``details`` names the field, its count and the limit."""

    code = "label_too_large"


class MisdirectedError(InputError):
    """Sent to a host name this server does not answer for (HTTP 421): sign for its public URL."""

    code = "misdirected_request"


class SlowRequestError(InputError):
    """The body did not arrive in time (HTTP 408): send it again on a faster link."""

    code = "request_timeout"


class UnsupportedMediaTypeError(InputError):
    """A body in a format the endpoint does not take (HTTP 415): send the media type it names."""

    code = "unsupported_media_type"


class AuthenticationError(TearlineError):
    """The request's signature is missing, bad, stale or replayed (HTTP 401): sign it afresh with
    a registered key."""

    code = "unauthenticated"


class DeniedError(TearlineError):
    """Policy forbids it (HTTP 403): the message and ``details`` say which rule."""

    code = "denied"


class RateLimitedError(DeniedError):
    """Too many requests or too much queued (HTTP 429): wait ``retry_after_s`` and try again."""

    code = "rate_limited"
    retry_after_s = 1


class TransportError(TearlineError):
    """The network or the peer failed: trying again later may succeed."""

    code = "transport_error"


class UnavailableError(TransportError):
    """The broker is not ready, or its store is away (HTTP 503): try again after
    ``retry_after_s``."""

    code = "unavailable"
    retry_after_s = 1


class InternalError(TearlineError):
    """A bug or a broken invariant (HTTP 500): report it; nothing was half-written."""

    code = "internal_error"


#: Each error class's HTTP status, most specific first. The broker answers an error with the
#: status of the first class it is an instance of; the SDK raises the first class listed for a
#: status it receives. One table, so the two sides cannot drift apart.
HTTP_STATUS: Final[tuple[tuple[type[TearlineError], int], ...]] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (HeadersTooLargeError, 431),
    (TooLargeError, 413),
    (MisdirectedError, 421),
    (SlowRequestError, 408),
    (UnsupportedMediaTypeError, 415),
    (InputError, 400),
    (AuthenticationError, 401),
    (RateLimitedError, 429),
    (DeniedError, 403),
    (UnavailableError, 503),
    (InternalError, 500),
)


def error_for_status(status: int) -> type[TearlineError]:
    """The error class for an HTTP status: the table's, else by family (a 4xx the table does
    not name, 422 among them, is the caller's input; any other status is the peer's failure)."""
    known = next((cls for cls, code in HTTP_STATUS if code == status), None)
    if known is not None:
        return known
    return InputError if 400 <= status < 500 else InternalError
