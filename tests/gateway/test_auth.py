"""Local authentication: Basic and bearer against stored hashes, the cache, the failure budget."""

from __future__ import annotations

import base64

from tearline.gateway.auth import Authenticator, FailureBudget
from tearline.gateway.config import User, hash_secret

N = 2**10


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def users() -> list[User]:
    return [
        User("siem", password_hash=hash_secret("pw-siem-123456", n=N), read=("*",)),
        User("bot", token_hashes=(hash_secret("tok-abc", n=N),), read=("received",)),
    ]


def test_basic_and_bearer() -> None:
    auth = Authenticator(users())
    siem = auth.authenticate(basic("siem", "pw-siem-123456"))
    assert siem is not None
    assert siem.name == "siem"
    bot = auth.authenticate("Bearer tok-abc")
    assert bot is not None
    assert bot.name == "bot"
    assert auth.authenticate("bearer tok-abc") is not None  # the scheme is case-insensitive


def test_refusals() -> None:
    auth = Authenticator(users())
    for header in (
        None,
        "",
        basic("siem", "wrong"),
        basic("nobody", "pw-siem-123456"),
        basic("bot", "tok-abc"),  # a token is not a password
        "Bearer wrong",
        "Bearer ",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Digest x",
    ):
        assert auth.authenticate(header) is None, header


def test_a_verified_credential_is_remembered_but_not_a_wrong_one() -> None:
    auth = Authenticator(users())
    header = basic("siem", "pw-siem-123456")
    assert auth.authenticate(header) is not None
    assert len(auth._verified) == 1
    assert auth.authenticate(basic("siem", "nope")) is None
    assert len(auth._verified) == 1


def test_failure_budget() -> None:
    now = [0.0]
    budget = FailureBudget(rate_per_s=1.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        assert budget.retry_after("10.0.0.1") is None
        budget.failed("10.0.0.1")
    assert budget.retry_after("10.0.0.1") == 1
    assert budget.retry_after("10.0.0.2") is None  # per address
    now[0] += 1.0
    assert budget.retry_after("10.0.0.1") is None
