"""The pure Tearline protocol: identities, labels, the envelope. No I/O, no clock reads.

Each name is imported when first used (as :mod:`tearline` does), so importing one module of the
protocol, ``tearline.clients.protocol.encoding`` say, does not load the envelope's cryptography.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tearline.clients import lazy

if TYPE_CHECKING:
    from tearline.clients.protocol.envelope import OpenedReport as OpenedReport
    from tearline.clients.protocol.envelope import VerifiedEnvelope as VerifiedEnvelope
    from tearline.clients.protocol.envelope import open as open
    from tearline.clients.protocol.envelope import seal as seal
    from tearline.clients.protocol.envelope import verify as verify
    from tearline.clients.protocol.identity import Identity as Identity
    from tearline.clients.protocol.identity import KeyRecord as KeyRecord
    from tearline.clients.protocol.identity import Partner as Partner
    from tearline.clients.protocol.identity import Registry as Registry
    from tearline.clients.protocol.label import Label as Label
    from tearline.clients.protocol.label import Scheme as Scheme

#: Where each public name lives.
_WHERE: Final[dict[str, str]] = {
    "Identity": "tearline.clients.protocol.identity",
    "KeyRecord": "tearline.clients.protocol.identity",
    "Label": "tearline.clients.protocol.label",
    "OpenedReport": "tearline.clients.protocol.envelope",
    "Partner": "tearline.clients.protocol.identity",
    "Registry": "tearline.clients.protocol.identity",
    "Scheme": "tearline.clients.protocol.label",
    "VerifiedEnvelope": "tearline.clients.protocol.envelope",
    "open": "tearline.clients.protocol.envelope",
    "seal": "tearline.clients.protocol.envelope",
    "verify": "tearline.clients.protocol.envelope",
}

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


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _WHERE, globals(), name)


def __dir__() -> list[str]:
    return lazy.names(globals(), __all__)
