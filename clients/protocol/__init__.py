"""The pure Tearline protocol: identities, labels, the envelope. No I/O, no clock reads."""

from tearline.clients.protocol.envelope import OpenedReport, VerifiedEnvelope, open, seal, verify
from tearline.clients.protocol.identity import Identity, KeyRecord, Partner, Registry
from tearline.clients.protocol.label import Label, Scheme

__all__ = [
    "Identity",
    "KeyRecord",
    "Label",
    "OpenedReport",
    "Partner",
    "Registry",
    "Scheme",
    "VerifiedEnvelope",
    "open",
    "seal",
    "verify",
]
