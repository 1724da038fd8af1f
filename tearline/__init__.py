"""Tearline: share signed, end-to-end encrypted threat reports under partnership agreements.

The partner SDK is this package's public API: ``AsyncPartner`` and ``Partner`` talk to a broker,
``AsyncOperator`` and ``Operator`` are its operator's client; ``seal``, ``verify`` and ``open``
work on envelopes offline; every error descends from ``TearlineError`` (the tree is drawn in
:mod:`tearline.clients.errors`). Each name is imported when first used, so ``import
tearline.clients.protocol.envelope`` (the pure core, as the broker imports it) loads none of the
SDK's HTTP stack. The broker is :mod:`tearline.broker`, the TAXII gateway :mod:`tearline.gateway`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tearline.clients import lazy

if TYPE_CHECKING:
    from tearline.clients.errors import (
        AuthenticationError as AuthenticationError,
    )
    from tearline.clients.errors import (
        ConflictError as ConflictError,
    )
    from tearline.clients.errors import (
        DeniedError as DeniedError,
    )
    from tearline.clients.errors import (
        EnvelopeError as EnvelopeError,
    )
    from tearline.clients.errors import (
        IdentityError as IdentityError,
    )
    from tearline.clients.errors import (
        InputError as InputError,
    )
    from tearline.clients.errors import (
        InternalError as InternalError,
    )
    from tearline.clients.errors import (
        LabelError as LabelError,
    )
    from tearline.clients.errors import (
        NotFoundError as NotFoundError,
    )
    from tearline.clients.errors import (
        PolicyError as PolicyError,
    )
    from tearline.clients.errors import (
        RateLimitedError as RateLimitedError,
    )
    from tearline.clients.errors import (
        StixError as StixError,
    )
    from tearline.clients.errors import (
        TearlineError as TearlineError,
    )
    from tearline.clients.errors import (
        TooLargeError as TooLargeError,
    )
    from tearline.clients.errors import (
        TransportError as TransportError,
    )
    from tearline.clients.errors import (
        UnavailableError as UnavailableError,
    )
    from tearline.clients.keyfile import (
        Identity as Identity,
    )
    from tearline.clients.operator import (
        AsyncOperator as AsyncOperator,
    )
    from tearline.clients.operator import (
        Operator as Operator,
    )
    from tearline.clients.partner import (
        AsyncPartner as AsyncPartner,
    )
    from tearline.clients.partner import (
        Directory as Directory,
    )
    from tearline.clients.partner import (
        Gap as Gap,
    )
    from tearline.clients.partner import (
        PreviewDecision as PreviewDecision,
    )
    from tearline.clients.partner import (
        Recall as Recall,
    )
    from tearline.clients.partner import (
        Recalled as Recalled,
    )
    from tearline.clients.partner import (
        Release as Release,
    )
    from tearline.clients.partner import (
        Report as Report,
    )
    from tearline.clients.protocol.envelope import (
        OpenedReport as OpenedReport,
    )
    from tearline.clients.protocol.envelope import (
        VerifiedEnvelope as VerifiedEnvelope,
    )
    from tearline.clients.protocol.envelope import (
        open as open,
    )
    from tearline.clients.protocol.envelope import (
        seal as seal,
    )
    from tearline.clients.protocol.envelope import (
        verify as verify,
    )
    from tearline.clients.protocol.identity import (
        KeyRecord as KeyRecord,
    )
    from tearline.clients.protocol.identity import (
        Registry as Registry,
    )
    from tearline.clients.protocol.label import (
        Label as Label,
    )
    from tearline.clients.protocol.label import (
        Scheme as Scheme,
    )
    from tearline.clients.protocol.receipt import (
        Receipt as Receipt,
    )
    from tearline.clients.sync import (
        Partner as Partner,
    )

#: Where each public name lives.
_WHERE: Final[dict[str, str]] = {
    "AsyncOperator": "tearline.clients.operator",
    "AsyncPartner": "tearline.clients.partner",
    "AuthenticationError": "tearline.clients.errors",
    "ConflictError": "tearline.clients.errors",
    "DeniedError": "tearline.clients.errors",
    "Directory": "tearline.clients.partner",
    "EnvelopeError": "tearline.clients.errors",
    "Gap": "tearline.clients.partner",
    "Identity": "tearline.clients.keyfile",
    "IdentityError": "tearline.clients.errors",
    "InputError": "tearline.clients.errors",
    "InternalError": "tearline.clients.errors",
    "KeyRecord": "tearline.clients.protocol.identity",
    "Label": "tearline.clients.protocol.label",
    "LabelError": "tearline.clients.errors",
    "NotFoundError": "tearline.clients.errors",
    "open": "tearline.clients.protocol.envelope",
    "OpenedReport": "tearline.clients.protocol.envelope",
    "Operator": "tearline.clients.operator",
    "Partner": "tearline.clients.sync",
    "PolicyError": "tearline.clients.errors",
    "PreviewDecision": "tearline.clients.partner",
    "RateLimitedError": "tearline.clients.errors",
    "Recall": "tearline.clients.partner",
    "Recalled": "tearline.clients.partner",
    "Receipt": "tearline.clients.protocol.receipt",
    "Registry": "tearline.clients.protocol.identity",
    "Release": "tearline.clients.partner",
    "Report": "tearline.clients.partner",
    "Scheme": "tearline.clients.protocol.label",
    "seal": "tearline.clients.protocol.envelope",
    "StixError": "tearline.clients.errors",
    "TearlineError": "tearline.clients.errors",
    "TooLargeError": "tearline.clients.errors",
    "TransportError": "tearline.clients.errors",
    "UnavailableError": "tearline.clients.errors",
    "VerifiedEnvelope": "tearline.clients.protocol.envelope",
    "verify": "tearline.clients.protocol.envelope",
}

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
    "Release",
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


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _WHERE, globals(), name)


def __dir__() -> list[str]:
    return lazy.names(globals(), __all__)
