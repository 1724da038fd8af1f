"""The gateway's SQLite store: object versions per collection, the reports they came in, the
tombstones of recalled ones, status resources.

WAL mode with ``synchronous=FULL``: a transaction that returned is on disk. Every write is one
``BEGIN IMMEDIATE`` transaction (a report's objects all, or none), so a crash never leaves half a
report, and the sync loop acknowledges a report to the broker only once its transaction
committed. Rows are numbered by ``seq`` (``AUTOINCREMENT``: never reused, even after a recall
deletes the newest rows) and given a ``date_added`` strictly greater than every earlier one, so
the paging of :mod:`gateway.taxii` skips and repeats nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tearline.gateway.taxii import (
    Page,
    Query,
    Row,
    epoch_us,
    facts,
    format_timestamp,
    make_page,
    object_problem,
)

#: How long a status resource is kept (7 days), in microseconds.
STATUS_RETENTION_US: Final = 7 * 86_400 * 1_000_000


def clock_us() -> int:
    """The gateway's clock: now, in microseconds since the epoch (``date_added``'s unit). Read
    here, at the edge; the pure :mod:`gateway.taxii` is handed the value."""
    return epoch_us(datetime.now(UTC))


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS objects (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    collection   TEXT NOT NULL,
    id           TEXT NOT NULL,
    type         TEXT NOT NULL,
    version_key  TEXT NOT NULL,      -- modified, else created, as written; '' for neither
    version_us   INTEGER NOT NULL,   -- that instant, or date_added for ''
    spec_version TEXT NOT NULL,
    date_added   INTEGER NOT NULL,   -- microseconds since the epoch, strictly increasing
    json         TEXT NOT NULL,
    UNIQUE (collection, id, version_key)
);
CREATE INDEX IF NOT EXISTS objects_by_collection ON objects (collection, seq);
CREATE INDEX IF NOT EXISTS objects_by_id ON objects (collection, id, version_us);
CREATE INDEX IF NOT EXISTS objects_by_type ON objects (collection, type, seq);
CREATE INDEX IF NOT EXISTS objects_by_added ON objects (collection, date_added);
CREATE TABLE IF NOT EXISTS holders (
    collection  TEXT NOT NULL,
    id          TEXT NOT NULL,
    version_key TEXT NOT NULL,
    report_id   TEXT NOT NULL,
    json        TEXT,                -- the version as this report stamped it
    tlp_rank    INTEGER NOT NULL DEFAULT 0,  -- its label's TLP, 0 (CLEAR) to 4 (RED)
    PRIMARY KEY (collection, id, version_key, report_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holders_by_report ON holders (report_id);
CREATE TABLE IF NOT EXISTS reports (
    report_id   TEXT PRIMARY KEY,
    originator  TEXT NOT NULL,
    agreement   TEXT,
    state       TEXT NOT NULL,       -- stored, recalled
    received_at INTEGER NOT NULL,
    recalled_at INTEGER,
    objects     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tombstones (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    collection  TEXT NOT NULL,
    id          TEXT NOT NULL,
    version     TEXT NOT NULL,
    report_id   TEXT NOT NULL,
    removed_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_id ON tombstones (collection, id);
CREATE TABLE IF NOT EXISTS collections (
    name        TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS statuses (
    id          TEXT PRIMARY KEY,
    collection  TEXT NOT NULL,
    owner       TEXT NOT NULL,
    created     INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS statuses_by_age ON statuses (created);
CREATE TABLE IF NOT EXISTS clock (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_us INTEGER NOT NULL
);
INSERT OR IGNORE INTO clock (one, last_us) VALUES (1, 0);
"""


@dataclass(frozen=True)
class Stored:
    """What :meth:`Store.add_report` did: objects added, objects already held (same id and
    version), objects skipped as malformed; ``duplicate`` when the report was seen before
    (redelivered, or recalled before it arrived) and nothing changed."""

    added: int
    already: int
    skipped: int
    duplicate: bool = False


@dataclass(frozen=True)
class Tombstone:
    id: str
    version: str
    report_id: str
    removed_at: int


class Store:
    """One SQLite file; a connection per thread (FastAPI runs sync endpoints in a pool)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.executescript(_SCHEMA)  # each statement idempotent
        # A store made before holders kept each report's stamp: the columns are added (NULL
        # json: such a version keeps the copy it has when a holder is recalled).
        columns = {r[1] for r in db.execute("PRAGMA table_info(holders)")}
        if "json" not in columns:
            db.execute("ALTER TABLE holders ADD COLUMN json TEXT")
        if "tlp_rank" not in columns:
            db.execute("ALTER TABLE holders ADD COLUMN tlp_rank INTEGER NOT NULL DEFAULT 0")

    # --- connections ------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    @staticmethod
    def _tick(db: sqlite3.Connection, now_us: int) -> int:
        """The next ``date_added``: now, or one microsecond after the last, whichever is later."""
        (last,) = db.execute("SELECT last_us FROM clock WHERE one = 1").fetchone()
        value = max(now_us, int(last) + 1)
        db.execute("UPDATE clock SET last_us = ? WHERE one = 1", (value,))
        return value

    # --- writes ---------------------------------------------------------------------------------

    def add_report(
        self,
        report_id: str,
        originator: str,
        collections: Sequence[str],
        objects: Sequence[Any],
        *,
        now_us: int,
        agreement: str | None = None,
        titles: Mapping[str, str] | None = None,
        tlp_rank: int = 0,
    ) -> Stored:
        """Store a report's objects in each of ``collections``, in one transaction. A report
        already known (stored or recalled) changes nothing.

        An object version several reports bring is one row, served as the holder with the
        most restrictive TLP (``tlp_rank``, the report label's: 0 for CLEAR to 4 for RED)
        stamped it, the first of them among equals; each holder's own stamp is kept, so a
        recall leaves the version as a report that still holds it stamped it."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM reports WHERE report_id = ?", (report_id,)).fetchone():
                return Stored(0, 0, 0, duplicate=True)
            for name, title in (titles or {}).items():
                db.execute(
                    "INSERT OR IGNORE INTO collections (name, title, description) VALUES (?, ?, ?)",
                    (name, title, f"Reports from {originator}" if name != "received" else ""),
                )
            added = already = skipped = 0
            for obj in objects:
                if object_problem(obj) is not None:
                    skipped += 1
                    continue
                f = facts(obj)
                text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
                key = f.version or ""
                for collection in collections:
                    exists = db.execute(
                        "SELECT 1 FROM objects WHERE collection = ? AND id = ? AND version_key = ?",
                        (collection, f.id, key),
                    ).fetchone()
                    if exists:
                        already += 1
                        (served,) = db.execute(
                            "SELECT COALESCE(MAX(tlp_rank), -1) FROM holders"
                            " WHERE collection = ? AND id = ? AND version_key = ?",
                            (collection, f.id, key),
                        ).fetchone()
                        if tlp_rank > served:  # stricter than every holder so far: served
                            db.execute(
                                "UPDATE objects SET json = ?"
                                " WHERE collection = ? AND id = ? AND version_key = ?",
                                (text, collection, f.id, key),
                            )
                    else:
                        date_added = self._tick(db, now_us)
                        db.execute(
                            "INSERT INTO objects (collection, id, type, version_key, version_us,"
                            " spec_version, date_added, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (collection, f.id, f.type, key,
                             f.version_us if f.version_us is not None else date_added,
                             f.spec_version, date_added, text),
                        )  # fmt: skip
                        added += 1
                    db.execute(
                        "INSERT OR IGNORE INTO holders (collection, id, version_key, report_id,"
                        " json, tlp_rank) VALUES (?, ?, ?, ?, ?, ?)",
                        (collection, f.id, key, report_id, text, tlp_rank),
                    )
            db.execute(
                "INSERT INTO reports (report_id, originator, agreement, state, received_at,"
                " objects, skipped) VALUES (?, ?, ?, 'stored', ?, ?, ?)",
                (report_id, originator, agreement, now_us, len(objects) - skipped, skipped),
            )
            return Stored(added, already, skipped)

    def recall(self, report_id: str, originator: str, *, now_us: int) -> int:
        """Remove what report ``report_id`` brought (an object version another report also
        brought stays), leaving a tombstone for each version removed; returns how many. A
        recall of a report not (yet) held is remembered, so the report is dropped if it comes."""
        with self._write() as db:
            row = db.execute(
                "SELECT originator, state FROM reports WHERE report_id = ?", (report_id,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO reports (report_id, originator, state, received_at, recalled_at)"
                    " VALUES (?, ?, 'recalled', ?, ?)",
                    (report_id, originator, now_us, now_us),
                )
                return 0
            if row[0] != originator or row[1] == "recalled":
                return 0
            held = db.execute(
                "SELECT collection, id, version_key FROM holders WHERE report_id = ?",
                (report_id,),
            ).fetchall()
            db.execute("DELETE FROM holders WHERE report_id = ?", (report_id,))
            removed = 0
            for collection, oid, key in held:
                # The most restrictive holder left, the first among equals (as add_report
                # chose): the version is served as that report stamped it, never as the
                # recalled report did.
                remaining = db.execute(
                    "SELECT h.json FROM holders h LEFT JOIN reports r USING (report_id)"
                    " WHERE h.collection = ? AND h.id = ? AND h.version_key = ?"
                    " ORDER BY h.tlp_rank DESC, r.received_at, h.report_id LIMIT 1",
                    (collection, oid, key),
                ).fetchone()
                if remaining is not None:  # another report holds this version too
                    if remaining[0] is not None:
                        db.execute(
                            "UPDATE objects SET json = ?"
                            " WHERE collection = ? AND id = ? AND version_key = ?",
                            (remaining[0], collection, oid, key),
                        )
                    continue
                gone = db.execute(
                    "DELETE FROM objects WHERE collection = ? AND id = ? AND version_key = ?"
                    " RETURNING date_added",
                    (collection, oid, key),
                ).fetchone()
                if gone is None:
                    continue
                version = key or format_timestamp(gone[0])
                db.execute(
                    "INSERT INTO tombstones (collection, id, version, report_id, removed_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (collection, oid, version, report_id, now_us),
                )
                removed += 1
            db.execute(
                "UPDATE reports SET state = 'recalled', recalled_at = ? WHERE report_id = ?",
                (now_us, report_id),
            )
            return removed

    def put_status(self, status_id: str, collection: str, owner: str, body: Mapping[str, Any],
                   *, now_us: int) -> None:  # fmt: skip
        """Make or update a status resource; those older than :data:`STATUS_RETENTION_US` go."""
        with self._write() as db:
            db.execute(
                "INSERT INTO statuses (id, collection, owner, created, body) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (status_id, collection, owner, now_us, json.dumps(body)),
            )
            db.execute("DELETE FROM statuses WHERE created < ?", (now_us - STATUS_RETENTION_US,))

    def end_pending(self, message: str) -> int:
        """Turn every pending status (its publish was cut short by a stop) into failures with
        ``message``; returns how many. Run at start, before any publish."""
        with self._write() as db:
            rows = db.execute("SELECT id, body FROM statuses").fetchall()
            ended = 0
            for status_id, text in rows:
                body = json.loads(text)
                if body.get("status") != "pending":
                    continue
                failures = [{**d, "message": message} for d in body.get("pendings", [])]
                body.update(
                    status="complete",
                    pending_count=0,
                    pendings=[],
                    failure_count=body.get("failure_count", 0) + len(failures),
                    failures=[*body.get("failures", []), *failures],
                )
                db.execute(
                    "UPDATE statuses SET body = ? WHERE id = ?", (json.dumps(body), status_id)
                )
                ended += 1
            return ended

    # --- reads ----------------------------------------------------------------------------------

    def status(self, status_id: str) -> tuple[str, str, dict[str, Any]] | None:
        """A status resource: its collection, the user who made it, its body."""
        row = (
            self._db()
            .execute("SELECT collection, owner, body FROM statuses WHERE id = ?", (status_id,))
            .fetchone()
        )
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def dynamic_collections(self) -> list[tuple[str, str, str]]:
        """The collections reports made (``received``, ``from-<originator>``): name, title,
        description."""
        return [
            (r[0], r[1], r[2])
            for r in self._db().execute(
                "SELECT name, title, description FROM collections ORDER BY name"
            )
        ]

    def report(self, report_id: str) -> dict[str, Any] | None:
        row = (
            self._db()
            .execute(
                "SELECT originator, agreement, state, objects, skipped FROM reports"
                " WHERE report_id = ?",
                (report_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        keys = ("originator", "agreement", "state", "objects", "skipped")
        return dict(zip(keys, row, strict=True))

    def has_object(self, collection: str, object_id: str) -> bool:
        return (
            self._db()
            .execute(
                "SELECT 1 FROM objects WHERE collection = ? AND id = ?", (collection, object_id)
            )
            .fetchone()
            is not None
        )

    def tombstones(self, collection: str, object_id: str) -> list[Tombstone]:
        return [
            Tombstone(r[0], r[1], r[2], r[3])
            for r in self._db().execute(
                "SELECT id, version, report_id, removed_at FROM tombstones"
                " WHERE collection = ? AND id = ? ORDER BY seq",
                (collection, object_id),
            )
        ]

    def page(
        self, collection: str, query: Query, endpoint: str, object_id: str | None = None
    ) -> Page:
        """One page of ``endpoint`` (objects, manifest, object, versions) of ``collection``:
        the first ``limit`` rows after the query's cursor that pass its filters, in one read."""
        floor = query.after_seq
        if query.filter.added_after is not None:
            # date_added grows with seq, so added_after is a place in the sequence: start there
            # rather than scan every row added before it.
            first = (
                self._db()
                .execute(
                    "SELECT seq FROM objects WHERE collection = ? AND date_added > ?"
                    " ORDER BY date_added LIMIT 1",
                    (collection, query.filter.added_after),
                )
                .fetchone()
            )
            if first is None:
                return make_page([], query)
            floor = max(floor, int(first[0]) - 1)
        sql, args = _select(collection, query, endpoint, object_id, floor)
        rows = [
            Row(
                seq=r[0],
                id=r[1],
                version=r[2] or format_timestamp(r[4]),
                spec_version=r[3],
                date_added=r[4],
                json=r[5],
            )
            for r in self._db().execute(sql, args)
        ]
        return make_page(rows, query)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _select(
    collection: str, query: Query, endpoint: str, object_id: str | None, floor: int = 0
) -> tuple[str, list[Any]]:
    """The SELECT of one page, rows after ``floor`` (at least the query's cursor); every clause
    is indexed, the version tests are per id."""
    f = query.filter
    where = ["o.collection = ?", "o.seq > ?"]
    args: list[Any] = [collection, max(floor, query.after_seq)]
    ids = (object_id,) if object_id is not None else f.ids
    if ids:
        where.append(f"o.id IN ({_marks(ids)})")
        args += ids
    if f.types:
        where.append(f"o.type IN ({_marks(f.types)})")
        args += f.types
    if f.added_after is not None:
        where.append("o.date_added > ?")
        args.append(f.added_after)
    same_id = "x.collection = o.collection AND x.id = o.id"
    spec_args: list[Any]
    if f.spec_versions:
        where.append(f"o.spec_version IN ({_marks(f.spec_versions)})")
        args += f.spec_versions
        spec_x, spec_args = f"x.spec_version IN ({_marks(f.spec_versions)})", list(f.spec_versions)
    else:  # the default: each object's latest spec_version only
        where.append(
            f"NOT EXISTS (SELECT 1 FROM objects x WHERE {same_id}"  # noqa: S608 - constants only
            " AND x.spec_version > o.spec_version)"
        )
        spec_x, spec_args = "x.spec_version >= o.spec_version", []
    if endpoint != "versions" and "all" not in f.version_set:
        parts: list[str] = []
        for which, op in (("last", ">"), ("first", "<")):
            if which in f.version_set:
                parts.append(
                    f"NOT EXISTS (SELECT 1 FROM objects x WHERE {same_id} AND {spec_x}"  # noqa: S608
                    f" AND x.version_us {op} o.version_us)"
                )
                args += spec_args
        stamps = [v for v in f.version_set if isinstance(v, int)]
        if stamps:
            parts.append(f"(o.version_key != '' AND o.version_us IN ({_marks(stamps)}))")
            args += stamps
        where.append("(" + " OR ".join(parts) + ")")
    body = "o.json" if endpoint in ("objects", "object") else "''"
    sql = (
        # Only constant fragments and "?" marks are formatted in; every value is bound.
        f"SELECT o.seq, o.id, o.version_key, o.spec_version, o.date_added, {body}"  # noqa: S608
        f" FROM objects o WHERE {' AND '.join(where)} ORDER BY o.seq LIMIT ?"
    )
    args.append(query.limit + 1)
    return sql, args
