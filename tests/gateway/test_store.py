"""The SQLite store: filters, versions, recall with tombstones, and paging that skips and
repeats nothing while reports keep arriving."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tearline.gateway.store import Store
from tearline.gateway.taxii import Page, Query, parse_query

NOW = 1_800_000_000_000_000


def indicator(n: int, modified: str = "2026-01-01T00:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n)}", "created": "2026-01-01T00:00:00.000Z",
            "modified": modified, "pattern": "[ipv4-addr:value = '192.0.2.1']",
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z", **extra}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "gateway.db")
    yield s
    s.close()


def query(pairs: list[tuple[str, str]] | None = None, endpoint: str = "objects") -> Query:
    return parse_query(pairs or [], endpoint, page_size=1000, scope="received")


def ids(page: Page) -> list[str]:
    return [r.id for r in page.rows]


def test_the_store_is_wal_and_synchronous_full(store: Store) -> None:
    db = store._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_report_is_stored_once_in_each_collection(store: Store) -> None:
    objs = [indicator(1), indicator(2), {"type": "bad"}]
    got = store.add_report("r1", "GBR", ["received", "from-GBR"], objs, now_us=NOW)
    assert (got.added, got.skipped, got.duplicate) == (4, 1, False)
    assert store.add_report("r1", "GBR", ["received"], objs, now_us=NOW).duplicate
    assert ids(store.page("received", query(), "objects")) == [
        indicator(1)["id"],
        indicator(2)["id"],
    ]
    assert len(store.page("from-GBR", query(), "objects").rows) == 2
    dates = [r.date_added for r in store.page("received", query(), "objects").rows]
    assert dates[0] < dates[1]  # strictly increasing even at the same clock reading


def test_versions_first_last_all_and_a_timestamp(store: Store) -> None:
    store.add_report(
        "r1", "GBR", ["received"], [indicator(1, "2026-01-01T00:00:00.000Z")], now_us=NOW
    )
    store.add_report(
        "r2", "GBR", ["received"], [indicator(1, "2026-03-01T00:00:00.000Z")], now_us=NOW
    )
    store.add_report(
        "r3", "GBR", ["received"], [indicator(1, "2026-02-01T00:00:00.000Z")], now_us=NOW
    )

    def versions(pairs: list[tuple[str, str]]) -> list[str]:
        return [r.version for r in store.page("received", query(pairs), "objects").rows]

    assert versions([]) == ["2026-03-01T00:00:00.000Z"]  # last by default
    assert versions([("match[version]", "first")]) == ["2026-01-01T00:00:00.000Z"]
    assert len(versions([("match[version]", "all")])) == 3
    assert versions([("match[version]", "2026-02-01T00:00:00Z")]) == ["2026-02-01T00:00:00.000Z"]
    assert versions([("match[version]", "first,last")]) == [
        "2026-01-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"
    ]  # fmt: skip
    all_versions = store.page("received", query([], "versions"), "versions", indicator(1)["id"])
    assert [r.version for r in all_versions.rows] == [
        "2026-01-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"
    ]  # in the order they were added  # fmt: skip


def test_type_id_spec_version_and_added_after(store: Store) -> None:
    malware = {"type": "malware", "spec_version": "2.1", "id": f"malware--{uuid.UUID(int=9)}",
               "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
               "name": "x", "is_family": False}  # fmt: skip
    store.add_report("r1", "GBR", ["received"], [indicator(1), malware], now_us=NOW)
    store.add_report("r2", "GBR", ["received"], [indicator(2)], now_us=NOW + 10)
    assert ids(store.page("received", query([("match[type]", "malware")]), "objects")) == [
        malware["id"]
    ]
    assert ids(store.page("received", query([("match[id]", indicator(2)["id"])]), "objects")) == [
        indicator(2)["id"]
    ]
    assert ids(store.page("received", query([("match[spec_version]", "2.0")]), "objects")) == []
    first = store.page("received", query(), "objects").rows
    after = [("added_after", _stamp(first[1].date_added))]
    assert ids(store.page("received", query(after), "objects")) == [indicator(2)["id"]]
    latest = [("added_after", _stamp(first[-1].date_added + 10))]
    assert store.page("received", query(latest), "objects").rows == ()
    # With a cursor too: both bounds hold.
    page = store.page("received", query([("limit", "1"), ("added_after", _stamp(0))]), "objects")
    assert page.next is not None
    rest = [("limit", "5"), ("added_after", _stamp(0)), ("next", page.next)]
    assert len(store.page("received", query(rest), "objects").rows) == 2


def _stamp(us: int) -> str:
    from tearline.gateway.taxii import format_timestamp

    return format_timestamp(us)


def test_recall_removes_the_reports_objects_and_leaves_tombstones(store: Store) -> None:
    store.add_report(
        "r1", "GBR", ["received", "from-GBR"], [indicator(1), indicator(2)], now_us=NOW
    )
    store.add_report("r2", "USA", ["received", "from-USA"], [indicator(2)], now_us=NOW)
    assert store.recall("r1", "USA", now_us=NOW) == 0  # only its originator recalls it
    assert store.recall("r1", "GBR", now_us=NOW) == 3  # indicator 2 stays in received: r2 has it
    assert ids(store.page("received", query(), "objects")) == [indicator(2)["id"]]
    assert ids(store.page("from-GBR", query(), "objects")) == []
    assert not store.has_object("received", indicator(1)["id"])
    (stone,) = store.tombstones("received", indicator(1)["id"])
    assert stone.report_id == "r1"
    assert store.recall("r1", "GBR", now_us=NOW) == 0  # twice: nothing more
    # A recall that arrives before its report: the report is dropped when it comes.
    assert store.recall("r9", "GBR", now_us=NOW) == 0
    assert store.add_report("r9", "GBR", ["received"], [indicator(5)], now_us=NOW).duplicate
    assert not store.has_object("received", indicator(5)["id"])


def test_sequence_numbers_are_never_reused_after_a_recall(store: Store) -> None:
    store.add_report("r1", "GBR", ["received"], [indicator(1)], now_us=NOW)
    store.add_report("r2", "GBR", ["received"], [indicator(2)], now_us=NOW)
    page = store.page("received", query([("limit", "1")]), "objects")
    store.recall("r2", "GBR", now_us=NOW)  # deletes the newest row
    store.add_report("r3", "GBR", ["received"], [indicator(3)], now_us=NOW)
    assert page.next is not None
    rest = store.page("received", query([("limit", "1"), ("next", page.next)]), "objects")
    assert ids(rest) == [indicator(3)["id"]]  # not hidden behind the cursor


def test_paging_skips_and_repeats_nothing_while_reports_arrive(store: Store) -> None:
    for r in range(30):
        store.add_report(
            f"a{r}", "GBR", ["received"], [indicator(r * 10 + i) for i in range(10)], now_us=NOW
        )
    before = {
        r.id for r in store.page("received", query([("match[version]", "all")]), "objects").rows
    }
    assert len(before) == 300
    stop = threading.Event()
    inserted: list[str] = []

    def keep_inserting() -> None:
        writer = Store(store.path)
        n = 10_000
        while not stop.is_set():
            objs = [indicator(n + i) for i in range(5)]
            writer.add_report(f"b{n}", "USA", ["received"], objs, now_us=NOW)
            inserted.extend(o["id"] for o in objs)
            n += 5
        writer.close()

    def wait_for_an_insert(after: int) -> None:
        # Each page is read after at least one more report arrived: on a busy machine the
        # writer thread could otherwise not run at all while the pages are read.
        deadline = time.monotonic() + 30
        while len(inserted) <= after and time.monotonic() < deadline:
            time.sleep(0.001)

    thread = threading.Thread(target=keep_inserting)
    thread.start()
    seen: list[str] = []
    try:
        token: str | None = None
        pages = 0
        while True:
            wait_for_an_insert(len(inserted))
            pairs = [("limit", "7"), ("match[version]", "all")] + (
                [("next", token)] if token else []
            )
            page = store.page("received", query(pairs), "objects")
            seen += ids(page)
            pages += 1
            if not page.more or pages > 200:
                break
            token = page.next
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen)), "an object was repeated across pages"
    assert before <= set(seen), "an object stored before paging began was skipped"
    assert set(seen) - before <= set(inserted)
    assert inserted, "the writer inserted nothing while the pages were read"


def test_status_resources_are_kept_a_week(store: Store) -> None:
    from tearline.gateway.store import STATUS_RETENTION_US

    store.put_status("old", "share", "siem", {"id": "old"}, now_us=NOW)
    store.put_status("new", "share", "siem", {"id": "new"}, now_us=NOW + STATUS_RETENTION_US)
    assert store.status("new") == ("share", "siem", {"id": "new"})
    assert store.status("old") is not None  # exactly a week: still there
    store.put_status("newer", "share", "siem", {}, now_us=NOW + STATUS_RETENTION_US + 1)
    assert store.status("old") is None


def test_statuses_left_pending_by_a_stop_end_as_failures(store: Store) -> None:
    from tearline.gateway.taxii import StatusDetail, status_resource

    pending = status_resource("s1", NOW, [], [], [StatusDetail("indicator--a", "v1")])
    done = status_resource("s2", NOW, [StatusDetail("indicator--b", "v1")], [], [])
    store.put_status("s1", "share", "siem", pending, now_us=NOW)
    store.put_status("s2", "share", "siem", done, now_us=NOW)
    assert store.end_pending("interrupted") == 1
    found = store.status("s1")
    assert found is not None
    body = found[2]
    assert (body["status"], body["pending_count"], body["failure_count"]) == ("complete", 0, 1)
    assert body["failures"] == [{"id": "indicator--a", "version": "v1", "message": "interrupted"}]
    assert store.status("s2") == ("share", "siem", done)


def test_a_store_made_before_holders_kept_their_stamps_is_upgraded(tmp_path: Path) -> None:
    """The holders table of the first release had no json or tlp_rank: opening adds them, and
    the versions stored then keep the copy they have when one of their holders is recalled."""
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE holders (collection TEXT NOT NULL, id TEXT NOT NULL,"
        " version_key TEXT NOT NULL, report_id TEXT NOT NULL,"
        " PRIMARY KEY (collection, id, version_key, report_id)) WITHOUT ROWID;"
    )
    old.close()
    store = Store(path)
    columns = {r[1] for r in store._db().execute("PRAGMA table_info(holders)")}
    assert {"json", "tlp_rank"} <= columns
    store.add_report("r1", "GBR", ["received"], [indicator(1, name="one")], now_us=NOW)
    store.add_report("r2", "GBR", ["received"], [indicator(1, name="two")], now_us=NOW)
    store._db().execute("UPDATE holders SET json = NULL")  # as the first release left them
    assert store.recall("r1", "GBR", now_us=NOW) == 0
    (row,) = store.page("received", query(), "objects").rows
    assert '"one"' in row.json  # kept as it was: there is no stamp of r2's to serve instead
    store.close()


@pytest.mark.parametrize(
    ("ranks", "recalled", "served"),
    [
        pytest.param((0, 4), None, "r2", id="a-stricter-second-holder-is-served"),
        pytest.param((4, 0), None, "r1", id="a-laxer-second-holder-is-not"),
        pytest.param((2, 2), None, "r1", id="among-equals-the-first"),
        pytest.param((0, 4), "r1", "r2", id="recall-the-laxer"),
        pytest.param((0, 4), "r2", "r1", id="recall-the-stricter"),
        pytest.param((2, 2), "r1", "r2", id="recall-the-first-of-equals"),
        pytest.param((0, 4, 2), "r2", "r3", id="recall-leaves-the-strictest-remaining"),
    ],
)
def test_a_shared_version_is_served_as_its_strictest_holder_stamped_it(
    store: Store, ranks: tuple[int, ...], recalled: str | None, served: str
) -> None:
    for n, rank in enumerate(ranks, start=1):
        stamped_by = indicator(1, name=f"r{n}")  # the same version, each report's own stamp
        store.add_report(f"r{n}", "GBR", ["received"], [stamped_by], now_us=NOW + n, tlp_rank=rank)
    if recalled is not None:
        assert store.recall(recalled, "GBR", now_us=NOW + 10) == 0  # still held: not removed
    (row,) = store.page("received", query(), "objects").rows
    assert f'"name":"{served}"' in row.json
