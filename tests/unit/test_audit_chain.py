"""The audit hash chain and its signed checkpoints catch every change to covered entries."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tearline.broker.audit import GENESIS, AuditError, Checkpoint, Entry, link, verify_trail
from tearline.clients.protocol import crypto

KEY = crypto.SigningKey(crypto.ED25519, bytes(range(32)))  # TEST ONLY
PUBLIC = crypto.public_key_of(crypto.ED25519, bytes(range(32)))
OTHER = crypto.SigningKey(crypto.ED25519, bytes(range(1, 33)))  # TEST ONLY


def trail(n: int) -> list[Entry]:
    return [
        (f"{1000 + i}-0", {"event": "accepted", "report": f"r{i}", "data": f'{{"n":{i}}}'})
        for i in range(n)
    ]


def checkpoints_over(
    entries: list[Entry], at: list[int], key: crypto.SigningKey = KEY
) -> list[dict[str, str]]:
    out, chain = [], GENESIS
    for count, (entry_id, fields) in enumerate(entries, start=1):
        chain = link(chain, entry_id, fields)
        if count in at:
            out.append(Checkpoint(entry_id, count, chain, "2026-11-28T00:00:00Z").signed("k", key))
    return out


def test_an_untouched_trail_verifies_and_says_how_much_is_covered() -> None:
    entries = trail(10)
    result = verify_trail(entries, checkpoints_over(entries, [4, 8]), PUBLIC)
    assert (result.entries, result.checkpoints, result.covered) == (10, 2, 8)


def _drop(i: int) -> Callable[[list[Entry]], list[Entry]]:
    return lambda e: e[:i] + e[i + 1 :]


def _alter(i: int) -> Callable[[list[Entry]], list[Entry]]:
    def change(entries: list[Entry]) -> list[Entry]:
        entry_id, fields = entries[i]
        return [*entries[:i], (entry_id, {**fields, "data": '{"n":999}'}), *entries[i + 1 :]]

    return change


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_drop(0), id="first-entry-deleted"),
        pytest.param(_drop(5), id="middle-entry-deleted"),
        pytest.param(_drop(7), id="last-covered-entry-deleted"),
        pytest.param(_alter(3), id="entry-altered"),
        pytest.param(lambda e: [e[1], e[0], *e[2:]], id="entries-reordered"),
        pytest.param(lambda e: e[:6], id="trail-truncated-before-a-checkpoint"),
        pytest.param(lambda e: [("999-0", {"event": "accepted"}), *e], id="entry-inserted"),
    ],
)
def test_a_change_before_a_checkpoint_is_detected(
    tamper: Callable[[list[Entry]], list[Entry]],
) -> None:
    entries = trail(10)
    checkpoints = checkpoints_over(entries, [4, 8])
    with pytest.raises(AuditError):
        verify_trail(tamper(entries), checkpoints, PUBLIC)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda c: {**c, "sig": c["sig"][:-2] + "AA"}, id="signature-altered"),
        pytest.param(
            lambda c: {**c, "body": c["body"].replace('"count":4', '"count":3')}, id="body-altered"
        ),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "sig"}, id="signature-missing"),
    ],
)
def test_a_forged_checkpoint_is_refused(forge: Callable[[dict[str, str]], dict[str, str]]) -> None:
    entries = trail(6)
    (checkpoint,) = checkpoints_over(entries, [4])
    with pytest.raises(AuditError):
        verify_trail(entries, [forge(checkpoint)], PUBLIC)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    entries = trail(6)
    with pytest.raises(AuditError):
        verify_trail(entries, checkpoints_over(entries, [4], key=OTHER), PUBLIC)


def test_entries_after_the_last_checkpoint_are_reported_as_not_yet_covered() -> None:
    entries = trail(5)
    result = verify_trail(entries, checkpoints_over(entries, [3]), PUBLIC)
    assert result.entries - result.covered == 2
