"""The only module that touches ``cryptography.hazmat`` (and PyNaCl).

Ed25519 verification, the broker's hottest operation, uses libsodium through PyNaCl (another
PyCA project): it verifies the same signatures twice as fast as OpenSSL here (DESIGN §10).

Everything else calls the handful of operations below with raw bytes. Every failure of a
cryptographic check is reported as :class:`CryptoFailure`, which the envelope layer turns into
its one opaque error.

Key encodings (raw, as they appear base64url-encoded in the registry and identity files):

=====================  ======================================  =================================
algorithm              public                                  private
=====================  ======================================  =================================
Ed25519                32-byte raw key                         32-byte raw key
ML-DSA-65              1952-byte raw key                       32-byte seed (FIPS 204 ξ)
X25519                 32-byte raw key                         32-byte raw key
ML-KEM-768+X25519      1184-byte ML-KEM key ‖ 32-byte X25519   64-byte ML-KEM seed ‖ 32-byte X25519
=====================  ======================================  =================================
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey as _SodiumSigningKey
from nacl.signing import VerifyKey as _SodiumVerifyKey

ED25519: Final = "Ed25519"
ML_DSA_65: Final = "ML-DSA-65"
X25519: Final = "X25519"
ML_KEM_768_X25519: Final = "ML-KEM-768+X25519"

SIGNATURE_ALGORITHMS: Final = frozenset({ED25519, ML_DSA_65})
KEM_ALGORITHMS: Final = frozenset({X25519, ML_KEM_768_X25519})

PUBLIC_KEY_BYTES: Final = {ED25519: 32, ML_DSA_65: 1952, X25519: 32, ML_KEM_768_X25519: 1216}
PRIVATE_KEY_BYTES: Final = {ED25519: 32, ML_DSA_65: 32, X25519: 32, ML_KEM_768_X25519: 96}

CONTENT_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_MLKEM_PUBLIC_BYTES: Final = 1184
_MLKEM_SEED_BYTES: Final = 64

_HPKE_SUITES: Final = {
    X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    ML_KEM_768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}


class CryptoFailure(Exception):
    """A signature, tag or key did not check out. Carries a reason for logs only."""


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _check_length(alg: str, raw: bytes, table: dict[str, int], what: str) -> None:
    expected = table.get(alg)
    if expected is None:
        raise CryptoFailure(f"unknown algorithm {alg!r}")
    if len(raw) != expected:
        raise CryptoFailure(f"{alg} {what} key must be {expected} bytes, got {len(raw)}")


# --- keys -----------------------------------------------------------------------------------


def generate_private_key(alg: str) -> bytes:
    """A fresh private key in the raw encoding of the table above."""
    if alg in (ED25519, X25519, ML_DSA_65):
        return random_bytes(32)
    if alg == ML_KEM_768_X25519:
        return random_bytes(_MLKEM_SEED_BYTES + 32)
    raise CryptoFailure(f"unknown algorithm {alg!r}")


def public_key_of(alg: str, private: bytes) -> bytes:
    """The raw public key that belongs to ``private``."""
    _check_length(alg, private, PRIVATE_KEY_BYTES, "private")
    if alg == ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    if alg == ML_DSA_65:
        return mldsa.MLDSA65PrivateKey.from_seed_bytes(private).public_key().public_bytes_raw()
    if alg == X25519:
        return x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:_MLKEM_SEED_BYTES])
    dh = x25519.X25519PrivateKey.from_private_bytes(private[_MLKEM_SEED_BYTES:])
    return kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()


class VerifyKey:
    """A public signature key, parsed once (registry load) and used for many verifications."""

    __slots__ = ("_key", "alg")

    def __init__(self, alg: str, public: bytes) -> None:
        if alg not in SIGNATURE_ALGORITHMS:
            raise CryptoFailure(f"{alg!r} is not a signature algorithm")
        _check_length(alg, public, PUBLIC_KEY_BYTES, "public")
        self.alg = alg
        try:
            if alg == ED25519:
                self._key: _SodiumVerifyKey | mldsa.MLDSA65PublicKey = _SodiumVerifyKey(public)
            else:
                self._key = mldsa.MLDSA65PublicKey.from_public_bytes(public)
        except ValueError as exc:
            raise CryptoFailure(f"malformed {alg} public key: {exc}") from exc

    def verify(self, signature: bytes, message: bytes) -> None:
        try:
            if isinstance(self._key, _SodiumVerifyKey):
                if len(signature) != 64:
                    raise CryptoFailure("Ed25519 signature must be 64 bytes")
                self._key.verify(message, signature)
            else:
                self._key.verify(signature, message)
        except (InvalidSignature, BadSignatureError, ValueError) as exc:
            raise CryptoFailure(f"{self.alg} signature does not verify") from exc


class SigningKey:
    __slots__ = ("_key", "alg")

    def __init__(self, alg: str, private: bytes) -> None:
        if alg not in SIGNATURE_ALGORITHMS:
            raise CryptoFailure(f"{alg!r} is not a signature algorithm")
        _check_length(alg, private, PRIVATE_KEY_BYTES, "private")
        self.alg = alg
        if alg == ED25519:  # libsodium: same signatures, signed in 20 µs rather than 33
            self._key: _SodiumSigningKey | mldsa.MLDSA65PrivateKey = _SodiumSigningKey(private)
        else:
            self._key = mldsa.MLDSA65PrivateKey.from_seed_bytes(private)

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, _SodiumSigningKey):
            return self._key.sign(message).signature
        return self._key.sign(message)


class KemPublicKey:
    """A recipient's public encryption key: wraps content keys with HPKE (RFC 9180, base mode)."""

    __slots__ = ("_key", "_suite", "alg")

    def __init__(self, alg: str, public: bytes) -> None:
        if alg not in KEM_ALGORITHMS:
            raise CryptoFailure(f"{alg!r} is not a key encapsulation algorithm")
        _check_length(alg, public, PUBLIC_KEY_BYTES, "public")
        self.alg = alg
        self._suite = _HPKE_SUITES[alg]
        try:
            if alg == X25519:
                self._key: x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey = (
                    x25519.X25519PublicKey.from_public_bytes(public)
                )
            else:
                self._key = hpke.MLKEM768X25519PublicKey(
                    mlkem.MLKEM768PublicKey.from_public_bytes(public[:_MLKEM_PUBLIC_BYTES]),
                    x25519.X25519PublicKey.from_public_bytes(public[_MLKEM_PUBLIC_BYTES:]),
                )
        except ValueError as exc:
            raise CryptoFailure(f"malformed {alg} public key: {exc}") from exc

    def wrap(self, secret: bytes, info: bytes) -> bytes:
        """HPKE single-shot seal: the encapsulated key followed by the sealed secret."""
        return self._suite.encrypt(secret, self._key, info=info)


class KemPrivateKey:
    __slots__ = ("_key", "_suite", "alg")

    def __init__(self, alg: str, private: bytes) -> None:
        if alg not in KEM_ALGORITHMS:
            raise CryptoFailure(f"{alg!r} is not a key encapsulation algorithm")
        _check_length(alg, private, PRIVATE_KEY_BYTES, "private")
        self.alg = alg
        self._suite = _HPKE_SUITES[alg]
        if alg == X25519:
            self._key: x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey = (
                x25519.X25519PrivateKey.from_private_bytes(private)
            )
        else:
            self._key = hpke.MLKEM768X25519PrivateKey(
                mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:_MLKEM_SEED_BYTES]),
                x25519.X25519PrivateKey.from_private_bytes(private[_MLKEM_SEED_BYTES:]),
            )

    def unwrap(self, wrapped: bytes, info: bytes) -> bytes:
        try:
            return self._suite.decrypt(wrapped, self._key, info=info)
        except (InvalidTag, ValueError) as exc:
            raise CryptoFailure(f"HPKE unwrap failed ({self.alg})") from exc


# --- content encryption ---------------------------------------------------------------------


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM; returns nonce ‖ ciphertext ‖ tag."""
    if len(key) != CONTENT_KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise CryptoFailure("content key must be 32 bytes and nonce 12 bytes")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(key) != CONTENT_KEY_BYTES:
        raise CryptoFailure("content key must be 32 bytes")
    if len(sealed) < NONCE_BYTES + 16:
        raise CryptoFailure("ciphertext too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise CryptoFailure("content AEAD tag does not verify") from exc
