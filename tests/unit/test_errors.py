"""The one table of error classes and HTTP statuses, read both ways (broker and SDK)."""

from __future__ import annotations

import pytest

from tearline.broker.api.errors import status_of
from tearline.clients.errors import (
    HTTP_STATUS,
    HeadersTooLargeError,
    InputError,
    InternalError,
    RateLimitedError,
    TearlineError,
    UnavailableError,
    error_for_status,
)


@pytest.mark.parametrize(("cls", "status"), HTTP_STATUS, ids=lambda v: getattr(v, "__name__", v))
def test_each_class_round_trips_through_its_status(cls: type[TearlineError], status: int) -> None:
    assert status_of(cls("x")) == status
    assert error_for_status(status) is cls


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        pytest.param(405, InputError, id="unlisted-4xx-is-the-callers-input"),
        pytest.param(422, InputError, id="schema-mismatch"),
        pytest.param(431, HeadersTooLargeError, id="headers-too-large"),
        pytest.param(502, InternalError, id="unlisted-5xx-is-the-peers-failure"),
    ],
)
def test_a_status_maps_to_the_error_a_caller_can_act_on(
    status: int, cls: type[TearlineError]
) -> None:
    assert error_for_status(status) is cls


def test_only_retryable_errors_carry_a_retry_after_by_default() -> None:
    assert RateLimitedError("x").retry_after_s == 1
    assert UnavailableError("x").retry_after_s == 1
    assert InputError("x").retry_after_s is None
    assert UnavailableError("x", retry_after_s=7).retry_after_s == 7
