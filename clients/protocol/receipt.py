"""The broker's signed receipt for an accepted report (§6). Pure: bytes and models in and out.

The signature covers the DSSE encoding of the receipt's canonical JSON, so any client can
re-derive the signed bytes from the parsed object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tearline.clients.errors import EnvelopeError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import EncodingError, b64d, b64e, canonical_json, dsse_pae

RECEIPT_TYPE: Final = b"application/vnd.tearline.receipt+json;version=1"


def _pae(body: bytes) -> bytes:
    return dsse_pae(RECEIPT_TYPE, body)


@dataclass(frozen=True, slots=True)
class Delivery:
    partner: str
    agreement: str
    position: str


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    originator: str
    envelope_sha256: str
    accepted_at: str
    recipients: tuple[Delivery, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "originator": self.originator,
            "envelope_sha256": self.envelope_sha256,
            "accepted_at": self.accepted_at,
            "recipients": [
                {"partner": d.partner, "agreement": d.agreement, "position": d.position}
                for d in self.recipients
            ],
        }

    @classmethod
    def from_dict(cls, obj: Any) -> Receipt:
        return cls(
            id=obj["id"],
            originator=obj["originator"],
            envelope_sha256=obj["envelope_sha256"],
            accepted_at=obj["accepted_at"],
            recipients=tuple(
                Delivery(r["partner"], r["agreement"], r["position"]) for r in obj["recipients"]
            ),
        )


def sign_receipt(receipt: Receipt, kid: str, key: crypto.SigningKey) -> dict[str, Any]:
    body = receipt.to_dict()
    return {
        "receipt": body,
        "signature": {"kid": kid, "sig": b64e(key.sign(_pae(canonical_json(body))))},
    }


def verify_receipt(signed: Any, kid: str, public_key: bytes) -> Receipt:
    """Check a receipt against the broker's published key; raises EnvelopeError if it fails."""
    try:
        if signed["signature"]["kid"] != kid:
            raise EnvelopeError("receipt signed by another key")
        sig = b64d(signed["signature"]["sig"])
        crypto.VerifyKey(crypto.ED25519, public_key).verify(
            sig, _pae(canonical_json(signed["receipt"]))
        )
        return Receipt.from_dict(signed["receipt"])
    except (KeyError, TypeError, EncodingError, crypto.CryptoFailure) as exc:
        raise EnvelopeError(f"receipt does not verify: {exc}") from None
