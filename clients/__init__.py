"""Tearline's partner SDK: seal, verify and open reports; read identities; the error tree."""

from clients.errors import (
    AuthenticationError,
    ConflictError,
    DeniedError,
    EnvelopeError,
    IdentityError,
    InputError,
    InternalError,
    LabelError,
    NotFoundError,
    PolicyError,
    RateLimitedError,
    TearlineError,
    TooLargeError,
    TransportError,
    UnavailableError,
)
from clients.keyfile import Identity
from clients.protocol.envelope import OpenedReport, VerifiedEnvelope, open, seal, verify
from clients.protocol.identity import KeyRecord, Registry
from clients.protocol.label import Label, Scheme

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DeniedError",
    "EnvelopeError",
    "Identity",
    "IdentityError",
    "InputError",
    "InternalError",
    "KeyRecord",
    "Label",
    "LabelError",
    "NotFoundError",
    "OpenedReport",
    "PolicyError",
    "RateLimitedError",
    "Registry",
    "Scheme",
    "TearlineError",
    "TooLargeError",
    "TransportError",
    "UnavailableError",
    "VerifiedEnvelope",
    "open",
    "seal",
    "verify",
]
