"""The configuration file and the stored secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tearline.gateway.config import (
    ConfigError,
    check_secret_format,
    hash_secret,
    parse_config,
    verify_secret,
)
from tearline.gateway.configfile import load_config

FAST_N = 2**10  # the tests' scrypt cost; the default is 2**14


def base(**extra: Any) -> dict[str, Any]:
    return {"broker": "http://127.0.0.1:8000", "identity": "keys/GBR.identity.json",
            "database": "gateway.db", **extra}  # fmt: skip


def test_hash_and_verify_a_secret() -> None:
    stored = hash_secret("correct horse", n=FAST_N)
    assert stored.startswith("scrypt$1024$8$1$")
    assert "correct horse" not in stored
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horse!", stored)
    assert hash_secret("correct horse", n=FAST_N) != stored  # a fresh salt each time


def test_pbkdf2_secrets_verify_too() -> None:
    import hashlib

    from tearline.clients.protocol.encoding import b64e

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 100_000)
    stored = f"pbkdf2-sha256$100000${b64e(salt)}${b64e(digest)}"
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3cret2", stored)


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("hunter2", "must be scrypt"),
        ("scrypt$1000$8$1$AAAA$AAAA", "out of range"),  # N not a power of two
        ("scrypt$16384$8$1$!!$AAAA", "malformed"),
        ("pbkdf2-sha256$1000$AAAA$AAAA", "too weak"),
    ],
)
def test_malformed_or_weak_secrets_are_refused(stored: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        check_secret_format(stored)


def test_a_full_config_parses_with_paths_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(
        f"""
broker: http://127.0.0.1:8000
identity: keys/GBR.identity.json
database: data/gateway.db
listen: {{port: 9401}}
users:
  siem:
    password: "{hash_secret("pw", n=FAST_N)}"
    read: ["*"]
    write: [share-usa]
collections:
  share-usa:
    title: Shared with the US
    label: {{classification: CONFIDENTIAL, releasable_to: [USA], tlp: AMBER, topics: [apt]}}
"""
    )
    config = load_config(tmp_path / "gateway.yaml")
    assert config.host == "127.0.0.1"  # loopback unless told otherwise
    assert config.port == 9401
    assert config.identity == tmp_path / "keys/GBR.identity.json"
    assert config.database == tmp_path / "data/gateway.db"
    (user,) = config.users
    assert user.can_read("from-USA")
    assert user.can_write("share-usa")
    assert not user.can_write("received")
    share = config.writable("share-usa")
    assert share is not None
    assert share.label.releasable_to == ("USA",)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"colour": "red"}, "unknown setting"),
        ({"users": {"siem": {"read": ["*"]}}}, "needs a password or a token"),
        ({"users": {"siem": {"password": "plain"}}}, "users.siem: a stored secret"),
        ({"collections": {"received": {"label": {}}}}, "reserved"),
        ({"collections": {"from-usa": {"label": {}}}}, "reserved"),
        ({"collections": {"share": {}}}, "label is required"),
        ({"collections": {"share": {"label": {"classification": "X"}}}}, "collections.share"),
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"page_size": 0}, "page_size"),
        ({"public_url": "taxii.gbr.example"}, "public_url must be the http"),
        ({"public_url": "ftp://taxii.gbr.example"}, "public_url must be the http"),
        ({"public_url": "https://user@taxii.gbr.example"}, "public_url must be the http"),
        ({"public_url": "https://taxii.gbr.example/?x=1"}, "public_url must be the http"),
        ({"names": "taxii.gbr.example"}, "names must be a list"),
        ({"names": ["evil.example/path"]}, "names: 'evil.example/path' is not a host"),
        ({"names": ["*.gbr.example"]}, "is not a host name"),
    ],
)
def test_named_refusals(changes: dict[str, Any], problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(base(**changes), tmp_path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the gateway configuration"):
        load_config(tmp_path / "nope.yaml")


def test_the_names_a_gateway_answers_for(tmp_path: Path) -> None:
    """public_url's authority and each of names, with and without a default port; the
    listening address is added per connection (tests/gateway/test_attacks.py)."""
    config = parse_config(
        base(public_url="https://TAXII.gbr.example/", names=["taxii-internal:9400", "[::1]:9400"]),
        tmp_path,
    )
    assert config.public_url == "https://TAXII.gbr.example"
    assert config.authorities() == {
        "taxii.gbr.example", "taxii.gbr.example:443", "taxii-internal:9400", "[::1]:9400",
    }  # fmt: skip
    assert parse_config(base(), tmp_path).authorities() == frozenset()
