"""The index: one SQLite file through sqlite-utils, with migrations, WAL and a busy timeout.

Only the daemon writes it (the CLI's ``cleanup`` is the one exception, run by hand). Readers —
``dupligone status``, the review page — open it too; WAL lets them read while the daemon writes.

Tables (times are Unix seconds, REAL):

* ``folders``: a watched library folder (``path``, ``protected``, ``first_scan_done_at``).
* ``photos``: one file. Identity is the row id: a move or rename updates ``path`` and keeps the
  figures. ``status`` is ``queued`` (waiting for analysis), ``ok``, ``error`` (with ``error``,
  the reason) or ``gone`` (the file vanished; ``gone_at``). Figures: ``content_hash``,
  ``phash``/``dhash`` (signed 64-bit, the bits of the unsigned hash), ``phash_dhash`` (hex),
  ``width``, ``height``, ``format``, ``lossless``, ``jpeg_quality``, ``sharpness``,
  ``brightness``, ``contrast``, ``noise``, ``faces``, ``taken_at``, ``camera``, ``has_gps``,
  ``thumb`` (path relative to the thumbnail store). ``analyses`` counts analysis results written.
* ``sessions``: a batch that arrived together (``kind``: ``upload``, ``first_scan``, ``burst``),
  ``token`` (unguessable), ``closed_at`` (null while files may still join), ``clustered_at``,
  ``reviewed_at``, ``dirty`` (1: must be clustered again).
* ``groups`` / ``group_members``: the current groups of a session (``uncertain``: the keeper
  said its choice was close) with the recommendation per
  member (``recommended`` = ``keep`` | ``delete``, ``reason``). Replaced at every re-clustering.
* ``decisions``: what a person decided per (session, photo): ``keep``, ``delete`` or ``split``
  ("not a duplicate"). Never touched by clustering, so decisions survive it.
* ``trash``: files moved to trash (``original_path``, ``trash_path``, ``state``: ``moving`` →
  ``trashed`` → ``restored`` | ``purged``; ``moved_at``, ``restored_at``, ``purged_at``). A row is
  written before the file moves, so an interrupted move is finished or undone at the next start.
* ``meta``: small key/value facts (the library's eps, schema notes).
* ``photo_features``: the crop stage's local features of an analysed photo (``data``, the
  ``LocalFeatures.to_bytes`` blob, about 2 KB), beside ``photos`` so that the many queries reading
  whole photo rows never load them; ``crops_searched`` is 1 once the photo was matched against
  the library. ``crop_pairs``: verified heavy crops (``crop_id`` is cut from ``original_id``).
  Both go with their photo rows (``ON DELETE CASCADE``). ``crop_kth``: the votes a later photo
  needs to be among this photo's crop candidates (``adapters/crop_store.py``, both-way matching).
* ``trash_companions``: the companion files (Live Photo video, sidecars, Takeout JSON; see
  ``adapters/companions.py``) that went to the trash with a ``trash`` entry: ``original_path``,
  ``trash_path``, ``size_bytes``, ``sha256`` (of the bytes when they left). Written in the same
  transaction as their entry, before anything moves.
* ``review_views``: which photos of a session's groups a person has had in front of them
  (a group opened in the review). A confirmation moves only groups opened, decided or
  accepted; the rest wait unless the person includes them.
* ``library_keeps``: photos a person chose to keep (Keep, "not a duplicate", a restore from
  the trash), library-wide: such a photo is never recommended for deletion again, in any later
  session. ``session_id`` is where it was decided (null once that session is cleaned up).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT_MS = 30_000

migrations = Migrations("dupligone")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE folders (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            protected INTEGER NOT NULL DEFAULT 0,
            mode TEXT NOT NULL DEFAULT 'auto',
            added_at REAL NOT NULL,
            first_scan_done_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            folder_id INTEGER REFERENCES folders(id),
            created_at REAL NOT NULL,
            last_added_at REAL NOT NULL,
            closed_at REAL,
            clustered_at REAL,
            reviewed_at REAL,
            dirty INTEGER NOT NULL DEFAULT 1,
            params_fp TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            folder_id INTEGER REFERENCES folders(id),
            session_id INTEGER REFERENCES sessions(id),
            path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            dev INTEGER,
            inode INTEGER,
            status TEXT NOT NULL,
            error TEXT,
            first_seen_at REAL NOT NULL,
            queued_at REAL,
            analysed_at REAL,
            gone_at REAL,
            analyses INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT,
            phash INTEGER,
            dhash INTEGER,
            phash_dhash TEXT,
            width INTEGER,
            height INTEGER,
            format TEXT,
            lossless INTEGER,
            jpeg_quality INTEGER,
            sharpness REAL,
            brightness REAL,
            contrast REAL,
            noise REAL,
            faces INTEGER,
            taken_at TEXT,
            camera TEXT,
            has_gps INTEGER,
            thumb TEXT
        )"""
    )
    # One live row per path; rows of vanished files keep their path for the record.
    db.execute("CREATE UNIQUE INDEX photos_live_path ON photos(path) WHERE status != 'gone'")
    db.execute("CREATE INDEX photos_path ON photos(path)")
    db.execute("CREATE INDEX photos_status ON photos(status)")
    db.execute("CREATE INDEX photos_session ON photos(session_id)")
    db.execute("CREATE INDEX photos_content ON photos(content_hash)")
    db.execute("CREATE INDEX photos_inode ON photos(inode, size_bytes)")
    db.execute(
        """CREATE TABLE groups (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            position INTEGER NOT NULL,
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX groups_session ON groups(session_id)")
    db.execute(
        """CREATE TABLE group_members (
            group_id INTEGER NOT NULL REFERENCES groups(id),
            photo_id INTEGER NOT NULL REFERENCES photos(id),
            position INTEGER NOT NULL,
            recommended TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (group_id, photo_id)
        )"""
    )
    db.execute("CREATE INDEX group_members_photo ON group_members(photo_id)")
    db.execute(
        """CREATE TABLE decisions (
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            photo_id INTEGER NOT NULL REFERENCES photos(id),
            action TEXT NOT NULL CHECK (action IN ('keep', 'delete', 'split')),
            decided_at REAL NOT NULL,
            PRIMARY KEY (session_id, photo_id)
        )"""
    )
    db.execute(
        """CREATE TABLE trash (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER REFERENCES photos(id),
            session_id INTEGER REFERENCES sessions(id),
            original_path TEXT NOT NULL,
            trash_path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            content_hash TEXT,
            state TEXT NOT NULL DEFAULT 'moving' CHECK (state IN ('moving', 'trashed', 'restored', 'purged')),
            moved_at REAL NOT NULL,
            restored_at REAL,
            purged_at REAL
        )"""
    )
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")


@migrations()
def m002_mirror_outbox(db: sqlite_utils.Database) -> None:
    # The mirrors' outbox and its triggers (see ``outbox.py``): every change to the tables
    # above is queued for the mirrors in the same transaction that makes it.
    from dupligoned.adapters import outbox

    outbox.create(db)


@migrations()
def m003_crop_features(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE photo_features (
            photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
            data BLOB NOT NULL,
            crops_searched INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX photo_features_pending ON photo_features(crops_searched) WHERE crops_searched = 0")
    db.execute(
        """CREATE TABLE crop_pairs (
            crop_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            original_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            inliers INTEGER NOT NULL,
            found_at REAL NOT NULL,
            PRIMARY KEY (crop_id, original_id)
        )"""
    )
    db.execute("CREATE INDEX crop_pairs_original ON crop_pairs(original_id)")


@migrations()
def m004_trash_companions(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE trash_companions (
            id INTEGER PRIMARY KEY,
            trash_id INTEGER NOT NULL REFERENCES trash(id) ON DELETE CASCADE,
            original_path TEXT NOT NULL,
            trash_path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX trash_companions_entry ON trash_companions(trash_id)")


@migrations()
def m005_review_views(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE review_views (
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            photo_id INTEGER NOT NULL REFERENCES photos(id),
            seen_at REAL NOT NULL,
            PRIMARY KEY (session_id, photo_id)
        )"""
    )
    db.execute(
        """CREATE TABLE library_keeps (
            photo_id INTEGER PRIMARY KEY REFERENCES photos(id),
            session_id INTEGER REFERENCES sessions(id),
            why TEXT NOT NULL,
            decided_at REAL NOT NULL
        )"""
    )


@migrations()
def m006_crop_kth(db: sqlite_utils.Database) -> None:
    # The votes a later photo needs to enter this photo's crop candidates (the crop index's
    # both-way matching), and the searched photos in id order (the crop index's rebuild).
    db.execute("ALTER TABLE photo_features ADD COLUMN crop_kth INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX photo_features_searched ON photo_features(crops_searched, photo_id)")


@migrations()
def m007_photos_format(db: sqlite_utils.Database) -> None:
    # Clustering looks up the library's RAWs (RAW+JPEG pairs across sessions) by format.
    db.execute("CREATE INDEX photos_format ON photos(format)")


@migrations()
def m008_group_uncertain(db: sqlite_utils.Database) -> None:
    # The keeper's own "this choice was close" flag for a group (1), when it gives one.
    db.execute("ALTER TABLE groups ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0")


class Index:
    """An open index. ``db`` is the sqlite-utils ``Database``; ``conn`` its connection."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.isolation_level = None  # autocommit; write transactions are explicit (``tx``)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL survives a kill -9 of the process; only a power cut may lose the
            # last commits, which the next rescan finds again.
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            migrations.apply(self.db)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, params))

    def one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Row | None:
        cur = self.conn.execute(sql, params)
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def scalar(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def get_meta(self, key: str) -> str | None:
        v = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if v is None else str(v)

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, value))

    # ------------------------------------------------------------ crop stage

    def crop_searched_count(self) -> int:
        """Photos whose features were matched against the library (the crop index holds them)."""
        return int(self.scalar("SELECT COUNT(*) FROM photo_features WHERE crops_searched = 1") or 0)

    def crop_searched_blobs_after(self, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        """(photo id, features blob) of searched photos with ids above ``after_id``, in id order."""
        return [(int(r[0]), bytes(r[1])) for r in self.conn.execute(
            "SELECT photo_id, data FROM photo_features WHERE crops_searched = 1 AND photo_id > ? "
            "ORDER BY photo_id LIMIT ?", (after_id, limit))]

    def crop_pending_ids(self, limit: int) -> list[int]:
        """Analysed photos whose features were not yet matched against the library."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT f.photo_id FROM photo_features f JOIN photos p ON p.id = f.photo_id "
            "WHERE f.crops_searched = 0 AND p.status = 'ok' ORDER BY f.photo_id LIMIT ?", (limit,))]

    def crop_pending_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM photo_features WHERE crops_searched = 0") or 0)

    def _by_ids(self, sql: str, ids: Iterable[int], chunk: int = 500) -> Iterator[sqlite3.Row]:
        """Rows of ``sql`` (one ``{ids}`` placeholder list) for ``ids``, in chunks."""
        lst = sorted(set(int(i) for i in ids))
        for k in range(0, len(lst), chunk):
            part = lst[k : k + chunk]
            yield from self.conn.execute(sql.format(ids=",".join("?" * len(part))), part)

    def crop_feature_blobs(self, ids: Iterable[int]) -> dict[int, bytes]:
        """Features blobs of the analysed (``ok``) photos among ``ids``."""
        return {int(r[0]): bytes(r[1]) for r in self._by_ids(
            "SELECT f.photo_id, f.data FROM photo_features f JOIN photos p ON p.id = f.photo_id "
            "WHERE f.photo_id IN ({ids}) AND p.status = 'ok'", ids)}

    def crop_kth(self, ids: Iterable[int]) -> dict[int, int]:
        return {int(r[0]): int(r[1]) for r in self._by_ids(
            "SELECT photo_id, crop_kth FROM photo_features WHERE photo_id IN ({ids})", ids)}

    def photo_paths_widths(self, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """(path, width) of each photo among ``ids``."""
        return {int(r[0]): (str(r[1]), int(r[2] or 0)) for r in self._by_ids(
            "SELECT id, path, width FROM photos WHERE id IN ({ids})", ids)}

    def record_crop_search(self, searched: Sequence[int], kth: dict[int, int],
                           found: Sequence[tuple[int, int, int]], now: float) -> None:
        """One transaction: verified crops ``found`` (crop id, original id, inliers), and the
        photos ``searched`` marked so with their ``kth`` — only those still as they were
        searched (a result applied meanwhile reset its row to be searched again)."""
        with self.tx() as conn:
            alive = {int(r[0]) for r in self._by_ids(
                "SELECT photo_id FROM photo_features WHERE photo_id IN ({ids}) AND crops_searched = 0", searched)}
            conn.executemany(
                "INSERT INTO crop_pairs(crop_id, original_id, inliers, found_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(crop_id, original_id) DO UPDATE SET inliers = excluded.inliers",
                [(c, o, n, now) for c, o, n in found])
            conn.executemany("UPDATE photo_features SET crops_searched = 1, crop_kth = ? WHERE photo_id = ?",
                             [(int(kth.get(i, 0)), i) for i in searched if i in alive])

    def crop_relations(self, member_ids: Iterable[int]) -> list[tuple[int, int]]:
        """Recorded (crop id, original id) pairs touching ``member_ids``, both photos analysed."""
        out: set[tuple[int, int]] = set()
        ids = sorted(set(int(i) for i in member_ids))
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            q = ",".join("?" * len(chunk))
            out.update((int(r[0]), int(r[1])) for r in self.conn.execute(
                "SELECT c.crop_id, c.original_id FROM crop_pairs c JOIN photos a ON a.id = c.crop_id "
                f"JOIN photos b ON b.id = c.original_id WHERE (c.crop_id IN ({q}) OR c.original_id IN ({q})) "
                "AND a.status = 'ok' AND b.status = 'ok'", chunk + chunk))
        return sorted(out)

    def photos_without_features(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, path) of analysed photos with no crop features (analysed before the crop stage
        existed), ids above ``after_id`` in id order: the backfill's work."""
        return [(int(r[0]), str(r[1])) for r in self.conn.execute(
            "SELECT p.id, p.path FROM photos p WHERE p.status = 'ok' AND p.id > ? "
            "AND NOT EXISTS (SELECT 1 FROM photo_features f WHERE f.photo_id = p.id) ORDER BY p.id LIMIT ?",
            (after_id, limit))]


def open_index(path: str | Path, *, readonly: bool = False) -> Index:
    """Open (creating and migrating when writable) the index at ``path``."""
    return Index(path, readonly=readonly)


def to_signed64(u: int) -> int:
    """An unsigned 64-bit hash as the signed integer SQLite can store."""
    return u - (1 << 64) if u >= (1 << 63) else u


def to_unsigned64(s: int) -> int:
    return s + (1 << 64) if s < 0 else s
