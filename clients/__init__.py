"""Tearline's partner SDK: seal, verify and open reports; read identities; the error tree."""

from clients.errors import (
    DeniedError,
    EnvelopeError,
    IdentityError,
    InputError,
    InternalError,
    LabelError,
    PolicyError,
    TearlineError,
    TransportError,
)
from clients.keyfile import Identity
from clients.protocol.envelope import OpenedReport, VerifiedEnvelope, open, seal, verify
from clients.protocol.identity import KeyRecord, Registry
from clients.protocol.label import Label, Scheme

__all__ = [
    "DeniedError",
    "EnvelopeError",
    "Identity",
    "IdentityError",
    "InputError",
    "InternalError",
    "KeyRecord",
    "Label",
    "LabelError",
    "OpenedReport",
    "PolicyError",
    "Registry",
    "Scheme",
    "TearlineError",
    "TransportError",
    "VerifiedEnvelope",
    "open",
    "seal",
    "verify",
]
