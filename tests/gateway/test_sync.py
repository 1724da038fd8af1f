"""The subscription inside the gateway: store, then acknowledge; a store that fails means no
acknowledgement, and the delivery is read again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tearline.clients.partner import Delivery, Gap, Recall, Report
from tearline.clients.protocol.label import Label
from tearline.clients.stix import TLP2_MARKING_IDS
from tearline.gateway import sync
from tearline.gateway.store import Store
from tests.gateway.test_store import indicator, query

LABEL = Label("RESTRICTED", ["USA"], "GREEN")


class Acks:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, entry_id: str) -> None:
        self.ids.append(entry_id)


def report(
    acks: Acks,
    rid: str,
    objects: list[Any],
    content_type: str = "application/stix+json;version=2.1",
) -> Report:
    payload = json.dumps({"type": "bundle", "id": "bundle--x", "objects": objects}).encode()
    return Report(rid, "GBR", datetime.now(UTC), LABEL, content_type, payload, f"e-{rid}", acks)


async def test_a_report_is_stored_then_acknowledged(tmp_path: Path) -> None:
    store, acks = Store(tmp_path / "g.db"), Acks()
    await sync.handle(report(acks, "r1", [indicator(1), indicator(2)]), store)
    assert acks.ids == ["e-r1"]
    indicators = [("match[type]", "indicator")]
    rows = store.page("received", query(indicators), "objects").rows
    assert len(rows) == 2
    assert len(store.page("from-GBR", query(indicators), "objects").rows) == 2
    # Stamped with the label: its TLP 2.0 marking, and the definitions come along.
    assert TLP2_MARKING_IDS["GREEN"] in json.loads(rows[0].json)["object_marking_refs"]
    assert store.has_object("received", TLP2_MARKING_IDS["GREEN"])
    await sync.handle(report(acks, "r1", [indicator(1)]), store)  # redelivered: acked again
    assert acks.ids == ["e-r1", "e-r1"]
    await sync.handle(Recall("r1", "GBR", "e-c1", acks), store)
    assert store.page("received", query(), "objects").rows == ()
    await sync.handle(Gap(3, "1-0", "e-g", acks), store)
    assert acks.ids[-2:] == ["e-c1", "e-g"]
    store.close()


async def test_content_that_is_not_stix_is_acknowledged_and_not_stored(tmp_path: Path) -> None:
    store, acks = Store(tmp_path / "g.db"), Acks()
    await sync.handle(report(acks, "r2", [indicator(1)], content_type="application/pdf"), store)
    assert acks.ids == ["e-r2"]
    assert store.page("received", query(), "objects").rows == ()
    assert store.report("r2") is not None
    store.close()


async def test_a_failing_store_leaves_the_report_unacknowledged(tmp_path: Path) -> None:
    store, acks = Store(tmp_path / "g.db"), Acks()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    store.add_report = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        await sync.handle(report(acks, "r3", [indicator(1)]), store)
    assert acks.ids == []
    store.close()


async def test_run_resubscribes_after_a_store_failure(tmp_path: Path) -> None:
    """The SDK acknowledges unseen a copy of a report it already yielded, so after a failure
    the loop subscribes afresh, and the redelivered report is stored."""
    store, acks = Store(tmp_path / "g.db"), Acks()
    real = store.add_report
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(*args, **kwargs)

    store.add_report = flaky  # type: ignore[method-assign]
    subscriptions = {"n": 0}

    class Node:
        async def subscribe(self, *, consumer: str = "default") -> AsyncIterator[Delivery]:
            subscriptions["n"] += 1
            yield report(acks, "r4", [indicator(1)])
            await asyncio.sleep(3600)

    task = asyncio.create_task(sync.run(Node(), store, resubscribe_s=0.01))
    for _ in range(200):
        if acks.ids:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert subscriptions["n"] == 2
    assert acks.ids == ["e-r4"]
    assert len(store.page("received", query([("match[type]", "indicator")]), "objects").rows) == 1
    store.close()
