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
  ``LocalFeatures.to_bytes`` blob, about 3 KB), beside ``photos`` so that the many queries reading
  whole photo rows never load them; ``crops_searched`` is 1 once the photo was matched against
  the library. ``crop_pairs``: verified heavy crops (``crop_id`` is cut from ``original_id``).
  Both go with their photo rows (``ON DELETE CASCADE``). ``crop_kth``: the votes a later photo
  needs to be among this photo's crop candidates (``adapters/crop_store.py``, both-way matching).
  ``version``: the extraction that made the features (``orb.FEATURES_VERSION``).
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

A library folder can be offline (``folders.offline_since``, ``offline_reason``: its root is
missing or empty, a NAS share that dropped): its rows, decisions and sessions are kept as they
are, and nothing marks them gone or purges them until it returns. ``photos.worker`` is
``host:pid`` of the analysis worker holding a queued photo (null when no worker has it).

A damaged file (``database disk image is malformed``) raises ``IndexDamaged`` when opened;
``backup`` writes an online copy with SQLite's backup API, ``restore`` puts it back and
``rebuild`` starts a new index with whatever rows of the damaged one can still be read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from dupligoned.errors import IndexDamaged

BUSY_TIMEOUT_MS = 30_000
BACKUP_NAME = "index.backup.db"
# What SQLite says about a file it cannot use as a database (as opposed to a busy or full disk).
DAMAGE_MARKERS = ("malformed", "not a database", "file is encrypted", "corrupt")

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


@migrations()
def m009_offline_and_workers(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE folders ADD COLUMN offline_since REAL")
    db.execute("ALTER TABLE folders ADD COLUMN offline_reason TEXT")
    db.execute("ALTER TABLE photos ADD COLUMN worker TEXT")


@migrations()
def m010_photo_changes(db: sqlite_utils.Database) -> None:
    # Which photos' status or hashes changed, whoever changed them (daemon, web, CLI): the
    # daemon keeps the library's hashes in memory between sessions and reads only these.
    db.execute("CREATE TABLE photo_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, photo_id INTEGER NOT NULL)")
    db.execute("CREATE TRIGGER photo_changes_insert AFTER INSERT ON photos WHEN NEW.status = 'ok' "
               "BEGIN INSERT INTO photo_changes(photo_id) VALUES (NEW.id); END")
    db.execute("CREATE TRIGGER photo_changes_update AFTER UPDATE OF status, phash, dhash ON photos "
               "WHEN OLD.status IS NOT NEW.status OR OLD.phash IS NOT NEW.phash OR OLD.dhash IS NOT NEW.dhash "
               "BEGIN INSERT INTO photo_changes(photo_id) VALUES (NEW.id); END")
    db.execute("CREATE TRIGGER photo_changes_delete AFTER DELETE ON photos "
               "BEGIN INSERT INTO photo_changes(photo_id) VALUES (OLD.id); END")


@migrations()
def m011_photo_counts(db: sqlite_utils.Database) -> None:
    # Photos per (session, status), kept by triggers whoever changes a photo: the page and
    # ``status`` read these few rows instead of counting a million photos at each request.
    # (A photo in no session counts under session 0.)
    db.execute("CREATE TABLE photo_counts (session_id INTEGER NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
               "PRIMARY KEY (session_id, status)) WITHOUT ROWID")
    db.execute("INSERT INTO photo_counts(session_id, status, n) "
               "SELECT COALESCE(session_id, 0), status, COUNT(*) FROM photos GROUP BY 1, 2")
    add = ("INSERT INTO photo_counts(session_id, status, n) VALUES (COALESCE(NEW.session_id, 0), NEW.status, 1) "
           "ON CONFLICT(session_id, status) DO UPDATE SET n = n + 1;")
    sub = "UPDATE photo_counts SET n = n - 1 WHERE session_id = COALESCE(OLD.session_id, 0) AND status = OLD.status;"
    db.execute(f"CREATE TRIGGER photo_counts_insert AFTER INSERT ON photos BEGIN {add} END")
    db.execute(f"CREATE TRIGGER photo_counts_delete AFTER DELETE ON photos BEGIN {sub} END")
    db.execute("CREATE TRIGGER photo_counts_update AFTER UPDATE OF status, session_id ON photos "
               f"WHEN OLD.status IS NOT NEW.status OR OLD.session_id IS NOT NEW.session_id BEGIN {sub} {add} END")


@migrations()
def m012_feature_version(db: sqlite_utils.Database) -> None:
    # Which extraction made a photo's crop features (``orb.FEATURES_VERSION``): the daemon
    # analyses photos with older ones again. Those stored so far are version 1.
    db.execute("ALTER TABLE photo_features ADD COLUMN version INTEGER NOT NULL DEFAULT 1")


@migrations()
def m013_capture_index(db: sqlite_utils.Database) -> None:
    # The frames of a burst are found by camera and capture time (``services/bursts.py``).
    db.execute("CREATE INDEX photos_capture ON photos(camera, taken_at)")


@migrations()
def m014_photo_edited_by(db: sqlite_utils.Database) -> None:
    # An editor named in a photo's EXIF, or "saved again after capture" (``decode._exif_of``):
    # the keeper does not take such a file for the one the camera wrote. NULL for photos
    # analysed before: nothing known.
    db.execute("ALTER TABLE photos ADD COLUMN edited_by TEXT")


def is_damage(exc: BaseException) -> bool:
    """Is ``exc`` SQLite saying the file is damaged (not busy, not a full disk)?"""
    return isinstance(exc, sqlite3.DatabaseError) and any(m in str(exc).lower() for m in DAMAGE_MARKERS)


def backup_path_of(index_path: str | Path) -> Path:
    return Path(index_path).parent / BACKUP_NAME


def damaged(index_path: str | Path, exc: BaseException, config: str = "") -> IndexDamaged:
    """The one-line error for a damaged index at ``index_path``, naming its last backup."""
    b = backup_path_of(index_path)
    when = ""
    if b.exists():
        when = time.strftime(" of %Y-%m-%d %H:%M", time.localtime(b.stat().st_mtime))
    return IndexDamaged(str(index_path), str(exc), f"{b}{when}" if b.exists() else None, config)


class Index:
    """An open index. ``db`` is the sqlite-utils ``Database``; ``conn`` its connection."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(self.path, exc) from None
            raise

    def _open(self, readonly: bool) -> None:
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
        # A damaged file often opens; reading the schema and the last page of the main tables
        # finds a truncated or overwritten one at once, for the cost of a few page reads.
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        for table in ("photos", "sessions", "decisions"):
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
                conn.execute(f"SELECT MAX(rowid), MIN(rowid) FROM {table}").fetchone()

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

    # ------------------------------------------------------------ counts

    def status_counts(self) -> dict[str, int]:
        """Photos per status, from the counts the triggers keep (``m011``)."""
        return {str(r[0]): int(r[1]) for r in self.conn.execute(
            "SELECT status, SUM(n) FROM photo_counts GROUP BY status HAVING SUM(n) > 0")}

    def session_counts(self, session_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Photos per status of each session, from the kept counts."""
        out: dict[int, dict[str, int]] = {}
        ids = list(session_ids)
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            for r in self.conn.execute(f"SELECT session_id, status, n FROM photo_counts "
                                       f"WHERE session_id IN ({','.join('?' * len(chunk))}) AND n != 0", chunk):
                out.setdefault(int(r[0]), {})[str(r[1])] = int(r[2])
        return out

    # ------------------------------------------------------------ scans

    def live_rows_under(self, prefix: str, after: str, limit: int) -> list[sqlite3.Row]:
        """(path, size_bytes, mtime_ns, status, dev, inode, error) of the photos not gone under
        the folder ``prefix`` (ending with the separator), in path order, after the path ``after``."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return list(self.conn.execute(
            "SELECT path, size_bytes, mtime_ns, status, dev, inode, error FROM photos INDEXED BY photos_live_path "
            "WHERE path > ? AND path < ? AND status != 'gone' ORDER BY path LIMIT ?", (max(after, prefix), end, limit)))

    # ------------------------------------------------------------ library hashes

    def ok_hashes(self, chunk: int = 50_000) -> Iterator[list[tuple[int, int, int]]]:
        """(id, phash, dhash) of every analysed photo, by id, ``chunk`` rows at a time."""
        cur = self.conn.execute("SELECT id, phash, dhash FROM photos WHERE status = 'ok' ORDER BY id")
        while rows := cur.fetchmany(chunk):
            yield rows

    def ok_hashes_of(self, ids: Iterable[int]) -> list[tuple[int, int, int]]:
        """(id, phash, dhash) of those of ``ids`` that are analysed."""
        return [(int(r[0]), int(r[1]), int(r[2])) for r in self._by_ids(
            "SELECT id, phash, dhash FROM photos WHERE id IN ({ids}) AND status = 'ok'", ids)]

    def photo_change_seq(self) -> int:
        """The last entry of the change log of photos' status and hashes (``m010``)."""
        return int(self.scalar("SELECT COALESCE(MAX(seq), 0) FROM photo_changes") or 0)

    def photos_changed(self, after: int, upto: int) -> list[int]:
        """Photos whose status or hashes changed between two points of the change log."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT photo_id FROM photo_changes WHERE seq > ? AND seq <= ?", (after, upto))]

    def forget_photo_changes(self, upto: int) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM photo_changes WHERE seq <= ?", (upto,))

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

    def captures(self, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """(camera, capture time) of the analysed photos among ``ids`` that have both."""
        return {int(r[0]): (str(r[1]), str(r[2])) for r in self._by_ids(
            "SELECT id, camera, taken_at FROM photos WHERE id IN ({ids}) AND status = 'ok' "
            "AND camera IS NOT NULL AND taken_at IS NOT NULL", ids)}

    def shot_between(self, spans: Iterable[tuple[str, str, str]]) -> set[int]:
        """Analysed photos taken by ``camera`` between ``first`` and ``last`` (EXIF time
        strings, which sort as times), for each (camera, first, last) of ``spans``."""
        out: set[int] = set()
        for camera, first, last in spans:
            out.update(int(r[0]) for r in self.conn.execute(
                "SELECT id FROM photos INDEXED BY photos_capture WHERE camera = ? AND taken_at BETWEEN ? AND ? "
                "AND status = 'ok'", (camera, first, last)))
        return out

    def crop_kth(self, ids: Iterable[int]) -> dict[int, int]:
        return {int(r[0]): int(r[1]) for r in self._by_ids(
            "SELECT photo_id, crop_kth FROM photo_features WHERE photo_id IN ({ids})", ids)}

    def photo_paths_widths(self, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """(path, width) of each photo among ``ids``."""
        return {int(r[0]): (str(r[1]), int(r[2] or 0)) for r in self._by_ids(
            "SELECT id, path, width FROM photos WHERE id IN ({ids})", ids)}

    def record_crop_search(self, searched: Sequence[int], kth: dict[int, int],
                           found: Sequence[tuple[int, int, int]], now: float,
                           keep_bytes: dict[int, int] | None = None) -> None:
        """One transaction: verified crops ``found`` (crop id, original id, inliers), and the
        photos ``searched`` marked so with their ``kth`` — only those still as they were
        searched (a result applied meanwhile reset its row to be searched again). A photo in
        ``keep_bytes`` keeps that many first bytes of its features blob (what a search alone
        needs, the query's alternates, is dropped)."""
        with self.tx() as conn:
            alive = {int(r[0]) for r in self._by_ids(
                "SELECT photo_id FROM photo_features WHERE photo_id IN ({ids}) AND crops_searched = 0", searched)}
            conn.executemany(
                "INSERT INTO crop_pairs(crop_id, original_id, inliers, found_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(crop_id, original_id) DO UPDATE SET inliers = excluded.inliers",
                [(c, o, n, now) for c, o, n in found])
            conn.executemany("UPDATE photo_features SET crops_searched = 1, crop_kth = ? WHERE photo_id = ?",
                             [(int(kth.get(i, 0)), i) for i in searched if i in alive])
            conn.executemany("UPDATE photo_features SET data = substr(data, 1, ?) WHERE photo_id = ?",
                             [(int(n), i) for i, n in (keep_bytes or {}).items() if i in alive])

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

    def photos_needing_features(self, version: int, after_id: int, limit: int) -> list[tuple[int, bool]]:
        """(id, has older features) of analysed photos with no crop features (analysed before
        the crop stage existed) or features older than ``version``, ids above ``after_id`` in
        id order: the backfill's work."""
        return [(int(r[0]), bool(r[1])) for r in self.conn.execute(
            "SELECT p.id, f.photo_id IS NOT NULL FROM photos p LEFT JOIN photo_features f ON f.photo_id = p.id "
            "WHERE p.status = 'ok' AND p.id > ? AND (f.photo_id IS NULL OR f.version < ?) ORDER BY p.id LIMIT ?",
            (after_id, version, limit))]


    # ------------------------------------------------------------ libraries offline

    def offline_folders(self) -> dict[int, tuple[str, float, str]]:
        """Folder id → (path, offline since, reason) for every library now offline."""
        return {int(r["id"]): (r["path"], float(r["offline_since"]), r["offline_reason"] or "") for r in self.query(
            "SELECT id, path, offline_since, offline_reason FROM folders WHERE offline_since IS NOT NULL")}

    def set_offline(self, folder_id: int, since: float | None, reason: str | None = None) -> None:
        with self.tx() as conn:
            conn.execute("UPDATE folders SET offline_since = ?, offline_reason = ? WHERE id = ?",
                         (since, reason if since is not None else None, folder_id))

    # --- what the web handlers and the daemon's tasks ask of single rows

    def session_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM sessions") or 0)

    def photo_file(self, photo_id: int) -> tuple[str, str, str] | None:
        """A photo's (path, format, status), or None when the index has no such photo."""
        row = self.one("SELECT path, format, status FROM photos WHERE id = ?", (photo_id,))
        return None if row is None else (str(row["path"]), str(row["format"]), str(row["status"]))

    def thumb_of(self, photo_id: int) -> str | None:
        """A photo's thumbnail (its name in the thumbnail cache), if it has one."""
        v = self.scalar("SELECT thumb FROM photos WHERE id = ?", (photo_id,))
        return str(v) if v else None

    def session_kind(self, token: str) -> str | None:
        """The kind of the session ``token`` (``first_scan``, ``burst``, ``upload``), or None."""
        v = self.scalar("SELECT kind FROM sessions WHERE token = ?", (token,))
        return None if v is None else str(v)

    def folder_id(self, path: str) -> int | None:
        v = self.scalar("SELECT id FROM folders WHERE path = ?", (path,))
        return None if v is None else int(v)

    def note_session_added(self, token: str, at: float) -> None:
        """Files arrived in the session ``token`` at ``at``: it stays open while they keep coming."""
        with self.tx() as conn:
            conn.execute("UPDATE sessions SET last_added_at = ? WHERE token = ?", (at, token))

    def session_photo_count(self, token: str) -> int:
        """Photos the index holds in the session ``token`` (any status)."""
        return int(self.scalar("SELECT COUNT(*) FROM photos p JOIN sessions s ON s.id = p.session_id "
                               "WHERE s.token = ?", (token,)) or 0)

    def mirror_failures(self, name: str) -> int | None:
        v = self.scalar("SELECT failures FROM mirrors WHERE name = ?", (name,))
        return None if v is None else int(v)

    def abandon_transaction(self) -> None:
        """Roll back a transaction a failed write left open (the disk full), if any."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def any_queued(self) -> bool:
        """Does any photo wait for analysis?"""
        return self.scalar("SELECT 1 FROM photos WHERE status = 'queued' LIMIT 1") is not None

    def queued_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM photos WHERE status = 'queued'") or 0)

    def has_live_photo(self, path: str) -> bool:
        """Does the index hold ``path`` as a photo that is not gone?"""
        return self.scalar("SELECT 1 FROM photos WHERE path = ? AND status != 'gone'", (path,)) is not None

    def first_scan_done_at(self, folder_id: int) -> float | None:
        v = self.scalar("SELECT first_scan_done_at FROM folders WHERE id = ?", (folder_id,))
        return None if v is None else float(v)

    def session_token_state(self, session_id: int) -> tuple[str, float | None] | None:
        """A session's token and when it closed (None while open); None if there is no such session."""
        row = self.one("SELECT token, closed_at FROM sessions WHERE id = ?", (session_id,))
        return None if row is None else (str(row["token"]), None if row["closed_at"] is None else float(row["closed_at"]))

    def has_live_photos_under(self, folder: str) -> bool:
        """Does the index hold a photo (not gone) under ``folder``? A range over ``photos_path``."""
        lo = folder.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        return self.scalar("SELECT 1 FROM photos WHERE path >= ? AND path < ? AND status != 'gone' LIMIT 1",
                           (lo, hi)) is not None

    def refresh_identity(self, moved: Iterable[tuple[int, int, str]]) -> None:
        """New (dev, inode) of files seen unchanged at their path (a remount changes both)."""
        with self.tx() as conn:
            conn.executemany("UPDATE photos SET dev = ?, inode = ? WHERE path = ? AND status != 'gone'", moved)

    # ------------------------------------------------------------ workers

    def hold(self, held: Iterable[tuple[str, int]]) -> None:
        """Record which worker (``host:pid``) holds each queued photo."""
        with self.tx() as conn:
            conn.executemany("UPDATE photos SET worker = ? WHERE id = ? AND status = 'queued'", held)

    def folder_paths(self) -> dict[int, str]:
        return {int(r["id"]): str(r["path"]) for r in self.query("SELECT id, path FROM folders")}

    def photo_path(self, photo_id: int) -> str | None:
        v = self.scalar("SELECT path FROM photos WHERE id = ?", (photo_id,))
        return None if v is None else str(v)

    def queued_in(self, folder_id: int) -> list[tuple[int, str]]:
        """(id, path) of the photos of a folder waiting for analysis."""
        return [(int(r[0]), str(r[1])) for r in self.query(
            "SELECT id, path FROM photos WHERE status = 'queued' AND folder_id = ?", (folder_id,))]

    def clear_holds(self) -> None:
        with self.tx() as conn:
            conn.execute("UPDATE photos SET worker = NULL WHERE worker IS NOT NULL")

    def requeue_crashed(self, photo_id: int, max_crashes: int, now: float) -> str | None:
        """The worker holding ``photo_id`` died: count the crash and queue the photo again, or give up on
        it after ``max_crashes``. Returns ``requeued``, ``error`` or None (no longer waiting)."""
        with self.tx() as conn:
            row = conn.execute("SELECT attempts, session_id FROM photos WHERE id = ? AND status = 'queued'",
                               (photo_id,)).fetchone()
            if row is None:
                return None
            if row["attempts"] + 1 >= max_crashes:
                conn.execute("UPDATE photos SET status = 'error', error = ?, analysed_at = ?, analyses = analyses + 1, "
                             "attempts = attempts + 1, worker = NULL WHERE id = ?",
                             (CRASHED_REASON, now, photo_id))
                conn.execute("UPDATE sessions SET dirty = 1 WHERE id = ?", (row["session_id"],))
                return "error"
            conn.execute("UPDATE photos SET attempts = attempts + 1, queued_at = ?, worker = NULL WHERE id = ?",
                         (now, photo_id))
            return "requeued"


CRASHED_REASON = "crashed the decoder (its analysis worker died twice on this file)"


def backup(index_path: str | Path, dest: str | Path | None = None) -> Path:
    """An online copy of the index with SQLite's backup API (one consistent snapshot; the daemon
    goes on writing meanwhile, WAL). Written beside ``dest`` first and checked, so a damaged
    index never replaces a good backup. Raises ``IndexDamaged`` when the copy fails its check."""
    dest = Path(dest) if dest is not None else backup_path_of(index_path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    src = sqlite3.connect(str(index_path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        tmp.unlink(missing_ok=True)
        if is_damage(exc):
            raise damaged(index_path, exc) from None
        raise
    finally:
        src.close()
    if check != "ok":
        tmp.unlink(missing_ok=True)
        raise damaged(index_path, sqlite3.DatabaseError(f"integrity check: {check}"))
    os.replace(tmp, dest)
    return dest


def _move_aside(index_path: Path) -> Path:
    """Move a damaged index (and its WAL) aside, never deleting it; returns its new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = index_path.with_name(f"{index_path.stem}.damaged-{stamp}{index_path.suffix}")
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(index_path) + suffix)
        if p.exists():
            os.replace(p, str(aside) + suffix)
    return aside


def restore(index_path: str | Path, backup_file: str | Path | None = None) -> Path:
    """Put the last backup in place of the index; the damaged file is kept aside. Returns where."""
    index_path = Path(index_path)
    src = Path(backup_file) if backup_file is not None else backup_path_of(index_path)
    check = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise IndexDamaged(str(src), "the backup fails its integrity check", None)
    except sqlite3.DatabaseError as exc:
        raise IndexDamaged(str(src), f"the backup cannot be read: {exc}", None) from None
    finally:
        check.close()
    aside = _move_aside(index_path) if index_path.exists() else index_path
    tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, index_path)
    return aside


# Tables worth keeping from a damaged index, parents before children.
SALVAGE_TABLES = ("meta", "folders", "sessions", "photos", "groups", "group_members", "decisions", "trash", "trash_companions",
                  "photo_features", "crop_pairs", "review_views", "library_keeps")


def rebuild(index_path: str | Path, chunk: int = 1000) -> tuple[Path | None, dict[str, int]]:
    """A new index in place of a damaged one, keeping what can be kept: every row of the damaged
    file that can still be read (through the ``sqlite3`` command's ``.recover`` when it is
    installed, which reads the pages themselves; else table by table), or, when none can, the
    rows of the last backup. The daemon's start-up scan finds and analyses the rest again. The
    damaged file is kept aside. Returns (where it went, rows kept per table)."""
    index_path = Path(index_path)
    aside = _move_aside(index_path) if index_path.exists() else None
    new = Index(index_path)
    kept: dict[str, int] = {}
    if aside is None:
        new.close()
        return None, kept
    sources = [aside]
    recovered = _recover_with_cli(aside)
    if recovered is not None:
        sources.insert(0, recovered)
    backup_file = backup_path_of(index_path)
    if backup_file.exists():
        sources.append(backup_file)
    new.conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for src in sources:
            old = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            try:
                with new.tx() as conn:
                    kept = {table: _salvage(old, conn, table, chunk) for table in SALVAGE_TABLES}
                    # Work half done is redone: nothing is held by a worker of the old run.
                    conn.execute("UPDATE photos SET worker = NULL")
                    if not kept.get("photos"):
                        raise _NothingHere
            except _NothingHere:
                kept = {}
                continue
            finally:
                old.close()
            break
    finally:
        new.close()
        if recovered is not None:
            recovered.unlink(missing_ok=True)
    return aside, kept


class _NothingHere(Exception):
    """No photo row could be read from this source: roll it back and try the next."""


def _recover_with_cli(damaged_file: Path, timeout_s: float = 3600) -> Path | None:
    """``sqlite3 damaged .recover`` into a new file (None when the command is missing or fails)."""
    exe = shutil.which("sqlite3")
    if exe is None:
        return None
    out = damaged_file.with_name(f".{damaged_file.name}.{os.getpid()}.recovered.tmp")
    out.unlink(missing_ok=True)
    import subprocess

    try:
        dump = subprocess.Popen([exe, str(damaged_file), ".recover"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        load = subprocess.run([exe, str(out)], stdin=dump.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout_s, check=False)
        if dump.stdout is not None:
            dump.stdout.close()
        dump.wait(timeout_s)
    except (OSError, subprocess.SubprocessError):
        out.unlink(missing_ok=True)
        return None
    if load.returncode != 0 or not out.exists():
        out.unlink(missing_ok=True)
        return None
    return out


def _salvage(old: sqlite3.Connection, new: sqlite3.Connection, table: str, chunk: int) -> int:
    try:
        cols_old = [r[1] for r in old.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return 0
    cols = [c for c in (r[1] for r in new.execute(f"PRAGMA table_info({table})")) if c in cols_old]
    if not cols:
        return 0
    sel = f"SELECT {', '.join(cols)} FROM {table}"
    ins = f"INSERT OR IGNORE INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    n = 0
    try:
        rows = old.execute(sel).fetchall()
        new.executemany(ins, rows)
        return len(rows)
    except sqlite3.DatabaseError:
        pass
    # Read what can be read, a range of rowids at a time.
    try:
        hi = int(old.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0)
    except sqlite3.DatabaseError:
        hi = 10_000_000
    for lo in range(0, hi + 1, chunk):
        try:
            rows = old.execute(f"{sel} WHERE rowid BETWEEN ? AND ?", (lo, lo + chunk - 1)).fetchall()
        except sqlite3.DatabaseError:
            continue
        new.executemany(ins, rows)
        n += len(rows)
    return n


def open_index(path: str | Path, *, readonly: bool = False) -> Index:
    """Open (creating and migrating when writable) the index at ``path``."""
    return Index(path, readonly=readonly)


def to_signed64(u: int) -> int:
    """An unsigned 64-bit hash as the signed integer SQLite can store."""
    return u - (1 << 64) if u >= (1 << 63) else u


def to_unsigned64(s: int) -> int:
    return s + (1 << 64) if s < 0 else s
