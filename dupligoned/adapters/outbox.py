"""The mirror outbox: what the mirrors still have to be told, kept in the index itself.

SQLite triggers on the index tables write an outbox row in the same transaction as the change,
so no code path that changes the index can forget a mirror, and a crash can never separate a
change from its outbox row. A row names a mirror, an entity and its key; it says "look at this
again", not what changed: the drain reads the current local state and makes the mirror equal to
it (upsert or delete), which is idempotent and converges whatever happened in between.

Rows are coalesced per (mirror, entity, key): a photo changed ten times before the mirror is
back is pushed once. ``version`` grows at every change, so a change that lands while a batch is
being pushed is not acknowledged by that batch. ``queued_at`` stays the time of the oldest
pending change: the mirror's lag.

Triggers write only for mirrors whose ``mirrors`` row is enabled, so a library without mirrors
pays one empty lookup per write and keeps no outbox.

Tables:

* ``mirrors``: ``name`` (``azure`` | ``mongo``), ``enabled``, ``last_ok_at``, ``last_error``,
  ``last_error_at``, ``failures`` (consecutive), ``pushed`` (changes pushed since enabled).
* ``mirror_outbox``: ``mirror``, ``entity``, ``key``, ``version``, ``queued_at``.
* ``azure_blobs``: content hashes whose original (and thumbnail) are in the container; the
  review page signs preview links only for these.

Entities: Azure gets ``blob`` (key: content hash); MongoDB gets ``photo``, ``session``,
``group``, ``decision`` (key ``session_id:photo_id``) and ``trash``. ``sweep`` (key ``*``) asks
for a full comparison of mirror and index (first start, cleanup's orphan check, resync).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIRRORS = ("azure", "mongo")
SWEEP = "sweep"

_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mirrors (
        name TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 0,
        enabled_at REAL,
        last_ok_at REAL,
        last_error TEXT,
        last_error_at REAL,
        failures INTEGER NOT NULL DEFAULT 0,
        pushed INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS mirror_outbox (
        mirror TEXT NOT NULL,
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        queued_at REAL NOT NULL,
        PRIMARY KEY (mirror, entity, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS mirror_outbox_age ON mirror_outbox(mirror, queued_at)",
    """CREATE TABLE IF NOT EXISTS azure_blobs (
        content_hash TEXT PRIMARY KEY,
        size_bytes INTEGER,
        thumb INTEGER NOT NULL DEFAULT 0,
        uploaded_at REAL NOT NULL
    ) WITHOUT ROWID""",
]


def _push(mirror: str, entity: str, key: str, when: str = "1") -> str:
    # The key may be NULL (a photo not analysed yet has no content hash): no row then, since
    # a NOT NULL failure here would abort the person's own change.
    return (
        f"INSERT INTO mirror_outbox(mirror, entity, key, version, queued_at) "
        f"SELECT name, '{entity}', {key}, 1, {_NOW} FROM mirrors "
        f"WHERE enabled = 1 AND name = '{mirror}' AND ({key}) IS NOT NULL AND ({when}) "
        f"ON CONFLICT(mirror, entity, key) DO UPDATE SET version = version + 1;"
    )


def _triggers() -> dict[str, str]:
    t: dict[str, str] = {}
    for op, rows in (("insert", ["NEW"]), ("update", ["NEW", "OLD"]), ("delete", ["OLD"])):
        ph = [_push("mongo", "photo", f"{r}.id") for r in rows]
        if op == "update":
            # A path change matters too: an upload that raced a rename needs the new path.
            ph.append(_push("azure", "blob", "NEW.content_hash",
                            "OLD.status IS NOT NEW.status OR OLD.content_hash IS NOT NEW.content_hash "
                            "OR OLD.path IS NOT NEW.path"))
            ph.append(_push("azure", "blob", "OLD.content_hash", "OLD.content_hash IS NOT NEW.content_hash"))
        else:
            ph.append(_push("azure", "blob", f"{rows[0]}.content_hash"))
        t[f"mirror_photos_{op}"] = f"AFTER {op.upper()} ON photos BEGIN {' '.join(ph)} END"
        t[f"mirror_sessions_{op}"] = f"AFTER {op.upper()} ON sessions BEGIN " + \
            " ".join(_push("mongo", "session", f"{r}.id") for r in rows) + " END"
        t[f"mirror_groups_{op}"] = f"AFTER {op.upper()} ON groups BEGIN " + \
            " ".join(_push("mongo", "group", f"{r}.id") for r in rows) + " END"
        t[f"mirror_members_{op}"] = f"AFTER {op.upper()} ON group_members BEGIN " + \
            " ".join(_push("mongo", "group", f"{r}.group_id") for r in rows) + " END"
        t[f"mirror_decisions_{op}"] = f"AFTER {op.upper()} ON decisions BEGIN " + \
            " ".join(_push("mongo", "decision", f"{r}.session_id || ':' || {r}.photo_id") for r in rows) + " END"
        tr = [_push("mongo", "trash", f"{r}.id") for r in rows]
        tr += [_push("azure", "blob", f"{r}.content_hash") for r in rows]
        t[f"mirror_trash_{op}"] = f"AFTER {op.upper()} ON trash BEGIN {' '.join(tr)} END"
    return t


TRIGGERS = _triggers()


def create(conn: Any) -> None:
    """Create the tables and triggers (idempotent). ``conn`` is a sqlite3 connection or a
    sqlite-utils ``Database`` (both have ``execute``)."""
    for sql in SCHEMA:
        conn.execute(sql)
    sync_triggers(conn)


def sync_triggers(conn: Any) -> list[str]:
    """Re-create triggers that a table rebuild (a later migration) dropped or an upgrade
    changed. Returns their names."""
    have = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    redo = [n for n, body in TRIGGERS.items() if have.get(n) != f"CREATE TRIGGER {n} {body}"]
    for n in redo:
        conn.execute(f"DROP TRIGGER IF EXISTS {n}")
        conn.execute(f"CREATE TRIGGER {n} {TRIGGERS[n]}")
    return redo


def set_enabled(conn: sqlite3.Connection, wanted: Iterable[str], now: float | None = None) -> list[str]:
    """Enable exactly the ``wanted`` mirrors; returns those newly enabled (each gets a sweep:
    the mirror may be empty or stale). A disabled mirror's outbox is dropped: nobody drains it,
    and enabling it again starts with a sweep anyway."""
    now = time.time() if now is None else now
    wanted = set(wanted)
    fresh = []
    for name in MIRRORS:
        row = conn.execute("SELECT enabled FROM mirrors WHERE name = ?", (name,)).fetchone()
        if name in wanted:
            if row is None or not row[0]:
                conn.execute(
                    "INSERT INTO mirrors(name, enabled, enabled_at, failures, pushed) VALUES (?, 1, ?, 0, 0) "
                    "ON CONFLICT(name) DO UPDATE SET enabled = 1, enabled_at = excluded.enabled_at, failures = 0, "
                    "pushed = 0, last_error = NULL, last_error_at = NULL", (name, now))
                fresh.append(name)
        elif row is not None and row[0]:
            conn.execute("UPDATE mirrors SET enabled = 0 WHERE name = ?", (name,))
            conn.execute("DELETE FROM mirror_outbox WHERE mirror = ?", (name,))
    for name in fresh:
        request_sweep(conn, name, now)
    return fresh


def request_sweep(conn: sqlite3.Connection, mirror: str, now: float | None = None) -> bool:
    """Ask for a full comparison of ``mirror`` with the index. False when the mirror is off."""
    now = time.time() if now is None else now
    cur = conn.execute(
        "INSERT INTO mirror_outbox(mirror, entity, key, version, queued_at) "
        "SELECT name, ?, '*', 1, ? FROM mirrors WHERE enabled = 1 AND name = ? "
        "ON CONFLICT(mirror, entity, key) DO UPDATE SET version = version + 1",
        (SWEEP, now, mirror))
    return cur.rowcount > 0


@dataclass(frozen=True)
class Item:
    entity: str
    key: str
    version: int
    queued_at: float


def take(conn: sqlite3.Connection, mirror: str, limit: int) -> list[Item]:
    """The oldest pending changes of ``mirror`` (read only: ``ack`` removes them once pushed)."""
    rows = conn.execute("SELECT entity, key, version, queued_at FROM mirror_outbox WHERE mirror = ? "
                        "ORDER BY queued_at LIMIT ?", (mirror, limit)).fetchall()
    return [Item(r[0], r[1], int(r[2]), float(r[3])) for r in rows]


def oldest_pending_at(conn: sqlite3.Connection, mirror: str) -> float | None:
    """When the oldest change still waiting for ``mirror`` was made (None: nothing waits)."""
    row = conn.execute("SELECT MIN(queued_at) FROM mirror_outbox WHERE mirror = ?", (mirror,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def has_pending(conn: sqlite3.Connection, mirror: str) -> bool:
    return conn.execute("SELECT 1 FROM mirror_outbox WHERE mirror = ? LIMIT 1", (mirror,)).fetchone() is not None


def ack(conn: sqlite3.Connection, mirror: str, items: Iterable[Item], now: float | None = None) -> int:
    """Remove pushed changes, unless they changed again meanwhile; record the success."""
    now = time.time() if now is None else now
    n = 0
    for it in items:
        n += conn.execute("DELETE FROM mirror_outbox WHERE mirror = ? AND entity = ? AND key = ? AND version = ?",
                          (mirror, it.entity, it.key, it.version)).rowcount
    conn.execute("UPDATE mirrors SET last_ok_at = ?, failures = 0, pushed = pushed + ? WHERE name = ?", (now, n, mirror))
    return n


def record_failure(conn: sqlite3.Connection, mirror: str, error: str, now: float | None = None) -> int:
    """Record a failed push; returns the number of consecutive failures (for the backoff)."""
    now = time.time() if now is None else now
    conn.execute("UPDATE mirrors SET last_error = ?, last_error_at = ?, failures = failures + 1 WHERE name = ?",
                 (error[:500], now, mirror))
    row = conn.execute("SELECT failures FROM mirrors WHERE name = ?", (mirror,)).fetchone()
    return int(row[0]) if row else 1


def state(conn: sqlite3.Connection, now: float | None = None) -> list[dict[str, Any]]:
    """Each enabled mirror: ``name``, ``pending`` (changes not yet pushed), ``lag_s`` (age of the
    oldest), ``last_ok_at``, ``last_error``, ``last_error_at``, ``failures``, ``pushed``."""
    now = time.time() if now is None else now
    out = []
    for r in conn.execute("SELECT * FROM mirrors WHERE enabled = 1 ORDER BY name").fetchall():
        name = r["name"] if isinstance(r, sqlite3.Row) else r[0]
        pending, oldest = conn.execute("SELECT COUNT(*), MIN(queued_at) FROM mirror_outbox WHERE mirror = ?",
                                       (name,)).fetchone()
        d = dict(r) if isinstance(r, sqlite3.Row) else {}
        out.append({
            "name": name, "pending": int(pending), "lag_s": round(max(0.0, now - oldest), 1) if oldest else 0.0,
            "last_ok_at": d.get("last_ok_at"), "last_error": d.get("last_error"),
            "last_error_at": d.get("last_error_at"), "failures": d.get("failures", 0), "pushed": d.get("pushed", 0),
        })
    return out


def mark_blob(conn: sqlite3.Connection, content_hash: str, size_bytes: int | None, thumb: bool, now: float) -> None:
    conn.execute("INSERT INTO azure_blobs(content_hash, size_bytes, thumb, uploaded_at) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(content_hash) DO UPDATE SET size_bytes = excluded.size_bytes, thumb = excluded.thumb, "
                 "uploaded_at = excluded.uploaded_at", (content_hash, size_bytes, int(thumb), now))


def unmark_blob(conn: sqlite3.Connection, content_hash: str) -> None:
    conn.execute("DELETE FROM azure_blobs WHERE content_hash = ?", (content_hash,))
