"""Tearline's partner SDK: ``AsyncPartner`` and ``Partner`` talk to a broker, ``AsyncOperator``
and ``Operator`` are its operator's client; ``seal``, ``verify`` and ``open`` work on envelopes
offline; every error descends from ``TearlineError``."""

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
    StixError,
    TearlineError,
    TooLargeError,
    TransportError,
    UnavailableError,
)
from clients.keyfile import Identity
from clients.operator import AsyncOperator, Operator
from clients.partner import (
    AsyncPartner,
    Directory,
    Gap,
    PreviewDecision,
    Recall,
    Recalled,
    Report,
)
from clients.protocol.envelope import OpenedReport, VerifiedEnvelope, open, seal, verify
from clients.protocol.identity import KeyRecord, Registry
from clients.protocol.label import Label, Scheme
from clients.protocol.receipt import Receipt
from clients.sync import Partner

__all__ = [
    "AsyncOperator",
    "AsyncPartner",
    "AuthenticationError",
    "ConflictError",
    "DeniedError",
    "Directory",
    "EnvelopeError",
    "Gap",
    "Identity",
    "IdentityError",
    "InputError",
    "InternalError",
    "KeyRecord",
    "Label",
    "LabelError",
    "NotFoundError",
    "OpenedReport",
    "Operator",
    "Partner",
    "PolicyError",
    "PreviewDecision",
    "RateLimitedError",
    "Recall",
    "Recalled",
    "Receipt",
    "Registry",
    "Report",
    "Scheme",
    "StixError",
    "TearlineError",
    "TooLargeError",
    "TransportError",
    "UnavailableError",
    "VerifiedEnvelope",
    "open",
    "seal",
    "verify",
]
