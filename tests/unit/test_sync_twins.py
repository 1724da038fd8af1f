"""The sync clients are twins of the async ones: every public method of ``AsyncPartner`` and
``AsyncOperator`` exists on ``Partner`` and ``Operator`` with the same parameters, and is plain
(not a coroutine); every delivery type they hand out acknowledges synchronously there too."""

from __future__ import annotations

import inspect

import pytest

from tearline import AsyncOperator, AsyncPartner, Gap, Operator, Partner, Recall, Report

# The one method that differs by name: closing (``aclose`` is the async spelling of ``close``).
RENAMED = {"aclose": "close"}
TWINS = [pytest.param(AsyncPartner, Partner, id="partner"),
         pytest.param(AsyncOperator, Operator, id="operator")]  # fmt: skip


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        RENAMED.get(name, name): inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("async_cls", "sync_cls"), TWINS)
def test_every_async_method_has_a_plain_twin_with_the_same_parameters(
    async_cls: type, sync_cls: type
) -> None:
    async_methods = public_methods(async_cls)
    sync_methods = public_methods(sync_cls)
    missing = set(async_methods) - set(sync_methods)
    assert not missing, f"{sync_cls.__name__} lacks {sorted(missing)}"
    for name, signature in async_methods.items():
        assert parameters(sync_methods[name]) == parameters(signature), name
        assert not inspect.iscoroutinefunction(getattr(sync_cls, name)), name


@pytest.mark.parametrize(("async_cls", "sync_cls"), TWINS)
def test_the_constructors_take_the_same_options(async_cls: type, sync_cls: type) -> None:
    sync_options = {p.name for p in inspect.signature(sync_cls).parameters.values()}
    async_options = {p.name for p in inspect.signature(async_cls).parameters.values()}
    # The clock is the async client's test seam; everything a user sets is on both.
    assert async_options - sync_options <= {"clock"}


@pytest.mark.parametrize("delivery", [Report, Recall, Gap])
def test_a_delivery_acks_without_a_coroutine_method(delivery: type[Report | Recall | Gap]) -> None:
    """``ack`` returns an awaitable rather than being ``async def``: the sync twin's deliveries
    acknowledge when called; the async client's are awaited."""
    assert not inspect.iscoroutinefunction(delivery.ack)
