"""The broker's own Ed25519 key, used to sign receipts. Made on first start, kept 0600."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tearline.clients.errors import IdentityError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64d, b64e


@dataclass(frozen=True)
class BrokerKey:
    kid: str
    public: bytes
    signer: crypto.SigningKey


def load(path: Path) -> BrokerKey:
    """The broker key at ``path``; refuses to make one (for checking what it signed)."""
    if not path.exists():
        raise IdentityError(f"no broker key at {path}")
    return load_or_create(path)


def load_or_create(path: Path) -> BrokerKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        private = crypto.generate_private_key(crypto.ED25519)
        # Written aside, then linked into place: a worker starting at the same moment sees
        # either no file or a complete one, never half of one.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(b64e(private) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another worker made it first: use theirs
            pass
        finally:
            tmp.unlink()
    try:
        private = b64d(path.read_text().strip())
        public = crypto.public_key_of(crypto.ED25519, private)
    except (OSError, ValueError, crypto.CryptoFailure) as exc:
        raise IdentityError(f"broker key {path} is unreadable: {exc}") from None
    kid = "broker-" + b64e(crypto.sha256(public))[:12]
    return BrokerKey(kid, public, crypto.SigningKey(crypto.ED25519, private))
