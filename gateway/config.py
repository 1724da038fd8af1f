"""The gateway's configuration (YAML) and its local users' secrets. Pure: the file's text in, the
configuration out; reading the file is :func:`gateway.configfile.load_config`'s, at the edge.

Secrets are never stored in the clear: a password or bearer token is kept as
``scrypt$N$r$p$<salt>$<hash>`` (or ``pbkdf2-sha256$<iterations>$<salt>$<hash>``), salt and hash
base64url; :func:`hash_secret` makes one (``tearline gateway hash-secret`` prints one) and
:func:`verify_secret` checks a candidate in constant time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from tearline.clients.errors import InputError, LabelError
from tearline.clients.protocol.encoding import EncodingError, b64d, b64e
from tearline.clients.protocol.label import Label
from tearline.gateway.taxii import authority_forms

#: A collection's short name: what users' rights and the id's UUIDv5 are made of.
COLLECTION_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.ASCII)
USER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", re.ASCII)
#: The collection of everything received, and the prefix of the per-originator ones.
RECEIVED: Final = "received"
FROM_PREFIX: Final = "from-"

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
PBKDF2_MIN_ITERATIONS: Final = 100_000
_MAX_SCRYPT_N: Final = 2**20  # a config must not make each login cost a gigabyte


class ConfigError(InputError):
    """The gateway's configuration file is invalid; the message names the key and the fix."""

    code = "invalid_gateway_config"


# --- secrets --------------------------------------------------------------------------------


def hash_secret(
    secret: str,
    *,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
    salt: bytes | None = None,
) -> str:
    """``secret`` as it is stored: scrypt with a fresh 16-byte salt."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r))
    return f"scrypt${n}${r}${p}${b64e(salt)}${b64e(digest)}"


def _maxmem(n: int, r: int) -> int:
    return 128 * r * n * 2 + (1 << 20)


def check_secret_format(encoded: str) -> None:
    """Raise :class:`ConfigError` unless ``encoded`` is a stored secret this module can check."""
    _parse(encoded)


def _parse(encoded: object) -> tuple[str, tuple[int, ...], bytes, bytes]:
    if not isinstance(encoded, str):
        raise ConfigError("a stored secret must be a string like scrypt$16384$8$1$SALT$HASH")
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if (
                n < 2**10
                or n > _MAX_SCRYPT_N
                or n & (n - 1)
                or not 1 <= r <= 32
                or not 1 <= p <= 16
            ):
                raise ConfigError(f"scrypt parameters N={n} r={r} p={p} are out of range")
            return "scrypt", (n, r, p), b64d(parts[4]), b64d(parts[5])
        if parts[0] == "pbkdf2-sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if iterations < PBKDF2_MIN_ITERATIONS:
                raise ConfigError(
                    f"pbkdf2-sha256 with {iterations} iterations is too weak "
                    f"(at least {PBKDF2_MIN_ITERATIONS})"
                )
            return "pbkdf2-sha256", (iterations,), b64d(parts[2]), b64d(parts[3])
    except (ValueError, EncodingError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"a stored secret is malformed: {exc}") from None
    raise ConfigError(
        "a stored secret must be scrypt$N$r$p$SALT$HASH or pbkdf2-sha256$ITERATIONS$SALT$HASH "
        "(tearline gateway hash-secret prints one)"
    )


def verify_secret(candidate: str, encoded: str) -> bool:
    """Whether ``candidate`` is the secret ``encoded`` was made from (constant-time compare)."""
    scheme, params, salt, expected = _parse(encoded)
    if scheme == "scrypt":
        n, r, p = params
        got = hashlib.scrypt(
            candidate.encode(), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r),
            dklen=len(expected),
        )  # fmt: skip
    else:
        got = hashlib.pbkdf2_hmac(
            "sha256", candidate.encode(), salt, params[0], dklen=len(expected)
        )
    return hmac.compare_digest(got, expected)


# --- the configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A local user of the gateway (a SIEM, a TIP): its stored secrets and its rights, each a
    list of collection names or shell patterns (``*``, ``from-*``)."""

    name: str
    password_hash: str | None = None
    token_hashes: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    def can_read(self, collection: str) -> bool:
        return any(fnmatch.fnmatchcase(collection, p) for p in self.read)

    def can_write(self, collection: str) -> bool:
        return any(fnmatch.fnmatchcase(collection, p) for p in self.write)


@dataclass(frozen=True)
class WritableCollection:
    """A collection local tools add objects to: each envelope is published under ``label``."""

    name: str
    label: Label
    title: str
    description: str = ""


@dataclass(frozen=True)
class GatewayConfig:
    broker: str
    identity: PurePath
    database: PurePath
    host: str = "127.0.0.1"
    port: int = 9400
    api_root: str = "tearline"
    title: str = "Tearline gateway"
    #: The URL clients reach the gateway at (behind a proxy): what discovery names, and a
    #: ``Host`` the gateway answers for.
    public_url: str | None = None
    #: Other ``Host`` values the gateway answers for (``host`` or ``host:port``), besides the
    #: address it listens on and ``public_url``'s; any other ``Host`` is 421.
    names: tuple[str, ...] = ()
    #: The largest page of objects served, whatever ``limit`` a client asks for.
    page_size: int = 100
    #: The largest POST body accepted, in bytes (the API root's ``max_content_length``).
    max_content_length: int = 1 << 20
    #: The subscriber session the gateway reads the node's inbox with.
    consumer: str = "gateway"
    users: tuple[User, ...] = ()
    collections: tuple[WritableCollection, ...] = field(default=())

    def writable(self, name: str) -> WritableCollection | None:
        return next((c for c in self.collections if c.name == name), None)

    def authorities(self) -> frozenset[str]:
        """The ``Host`` values configured names stand for (the listening address is added per
        connection): ``public_url``'s authority and each of ``names``, with and without a
        default port."""
        out: set[str] = set()
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            out |= authority_forms(parts.netloc, parts.scheme)
        for name in self.names:
            out |= authority_forms(name, "http") | authority_forms(name, "https")
        return frozenset(out)


_TOP: Final = {
    "listen", "broker", "identity", "database", "api_root", "title", "public_url", "names",
    "page_size", "max_content_length", "consumer", "users", "collections",
}  # fmt: skip


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _int(value: object, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high}")
    return value


_NAME: Final = re.compile(
    r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?", re.ASCII
)


def _public_url(value: object) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or "@" in parts.netloc
        or not _NAME.fullmatch(parts.netloc)
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            "public_url must be the http(s) URL clients reach the gateway at, like "
            "https://taxii.gbr.example (no user, query or fragment)"
        )
    return str(value).rstrip("/")


def _names(value: object) -> tuple[str, ...]:
    names = _str_list(value, "names")
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        raise ConfigError(
            f"names: {bad[0]!r} is not a host name or address, with an optional :port "
            "(taxii.gbr.example, 10.0.0.5:9400)"
        )
    return names


def parse_config(data: object, base: PurePath) -> GatewayConfig:
    """The configuration from a parsed YAML document; relative paths are from ``base``."""
    top = _mapping(data, "the gateway configuration")
    unknown = sorted(set(top) - _TOP)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    for required in ("broker", "identity", "database"):
        if not isinstance(top.get(required), str) or not top[required]:
            raise ConfigError(f"{required} is required (a string)")
    listen = _mapping(top.get("listen"), "listen")
    if set(listen) - {"host", "port"}:
        raise ConfigError("listen takes only host and port")
    host = listen.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError("listen.host must be a host name or address")
    api_root = top.get("api_root", "tearline")
    if not isinstance(api_root, str) or not COLLECTION_NAME.fullmatch(api_root):
        raise ConfigError("api_root must be a short name like tearline")
    collections = []
    for name, spec in _mapping(top.get("collections"), "collections").items():
        collections.append(_collection(name, spec))
    users = [_user(name, spec) for name, spec in _mapping(top.get("users"), "users").items()]
    return GatewayConfig(
        broker=top["broker"],
        identity=base / top["identity"],
        database=base / top["database"],
        host=host,
        port=_int(listen.get("port", 9400), "listen.port", 0, 65535),
        api_root=api_root,
        title=str(top.get("title", "Tearline gateway")),
        public_url=_public_url(top.get("public_url")),
        names=_names(top.get("names")),
        page_size=_int(top.get("page_size", 100), "page_size", 1, 10_000),
        max_content_length=_int(
            top.get("max_content_length", 1 << 20), "max_content_length", 1024, 64 << 20
        ),
        consumer=str(top.get("consumer", "gateway")),
        users=tuple(users),
        collections=tuple(collections),
    )


def _collection(name: object, spec: object) -> WritableCollection:
    if not isinstance(name, str) or not COLLECTION_NAME.fullmatch(name):
        raise ConfigError(f"collection name {name!r} must match {COLLECTION_NAME.pattern}")
    if name == RECEIVED or name.startswith(FROM_PREFIX):
        raise ConfigError(
            f"collection name {name!r} is reserved for received reports "
            f"({RECEIVED}, {FROM_PREFIX}<originator>)"
        )
    body = _mapping(spec, f"collections.{name}")
    if set(body) - {"label", "title", "description"}:
        raise ConfigError(f"collections.{name} takes only label, title and description")
    if "label" not in body:
        raise ConfigError(f"collections.{name}.label is required: what its objects are shared as")
    try:
        label = Label.from_dict(body["label"])
    except LabelError as exc:
        raise ConfigError(f"collections.{name}: {exc.message}") from None
    return WritableCollection(
        name=name,
        label=label,
        title=str(body.get("title", name)),
        description=str(body.get("description", "")),
    )


def _user(name: object, spec: object) -> User:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise ConfigError(f"user name {name!r} must match {USER_NAME.pattern}")
    body = _mapping(spec, f"users.{name}")
    if set(body) - {"password", "tokens", "read", "write"}:
        raise ConfigError(f"users.{name} takes only password, tokens, read and write")
    password = body.get("password")
    tokens = _str_list(body.get("tokens"), f"users.{name}.tokens")
    if password is None and not tokens:
        raise ConfigError(f"users.{name} needs a password or a token (stored hashed)")
    for secret in (*([password] if password is not None else []), *tokens):
        try:
            check_secret_format(secret)
        except ConfigError as exc:
            raise ConfigError(f"users.{name}: {exc.message}") from None
    return User(
        name=name,
        password_hash=password,
        token_hashes=tokens,
        read=_str_list(body.get("read"), f"users.{name}.read"),
        write=_str_list(body.get("write"), f"users.{name}.write"),
    )


def parse_config_text(text: str, source: str, base: PurePath) -> GatewayConfig:
    """The configuration in ``text``, the YAML of the file ``source`` (named in errors); relative
    paths are from ``base``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    try:
        return parse_config(data, base)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
