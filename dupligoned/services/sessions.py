"""Sessions: batches of photos that arrived together, each with an unguessable token.

* ``first_scan``: every photo found by the first scan of a library folder; closed when that scan
  has finished.
* ``burst``: new files in a watched folder after its first scan; closed after ``quiet_s``
  without a new file.
* ``upload``: one web upload. The web page calls ``create_upload_session`` and writes the files
  into ``<inbox>/<token>/``; closed by ``close_session`` (or after ``quiet_s``).

A session's state, derived, never stored: ``open`` (files may still join), ``analysing``
(photos still queued), ``clustering`` (analysed, groups not yet (re)computed), ``clustered``
(groups ready for review), ``reviewed`` (a person confirmed it).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from dupligoned.adapters.index import Index

log = logging.getLogger("dupligone.sessions")

TOKEN_BYTES = 18  # 144 bits: unguessable, and short enough for a URL


def new_token() -> str:
    """A session's unguessable name. Never with a leading "-": a person types it after
    ``--session`` on the command line, where "-x..." reads as an option (1 token in 64)."""
    while (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


def create_session(conn: sqlite3.Connection, kind: str, folder_id: int | None, now: float,
                   token: str | None = None) -> int:
    cur = conn.execute(
        "INSERT INTO sessions(token, kind, folder_id, created_at, last_added_at, dirty) VALUES (?, ?, ?, ?, ?, 1)",
        (token or new_token(), kind, folder_id, now, now),
    )
    return int(cur.lastrowid or 0)


def create_upload_session(index: Index, now: float, inbox_folder_id: int | None = None) -> str:
    """A new, open upload session; returns its token. Files go to ``<inbox>/<token>/``."""
    with index.tx() as conn:
        sid = create_session(conn, "upload", inbox_folder_id, now)
        return str(conn.execute("SELECT token FROM sessions WHERE id = ?", (sid,)).fetchone()[0])


def close_session(index: Index, token: str, now: float, why: str = "every uploaded file has arrived") -> bool:
    with index.tx() as conn:
        cur = conn.execute("UPDATE sessions SET closed_at = ? WHERE token = ? AND closed_at IS NULL", (now, token))
        closed = cur.rowcount > 0
    if closed:
        log.info("session %s closed: %s; grouping once its photos are analysed", token[:6] + "…", why)
    return closed


def session_for_new_photo(conn: sqlite3.Connection, folder: sqlite3.Row, upload_token: str | None, now: float) -> int:
    """The session a newly found photo joins (creating it when needed); marks it dirty."""
    sid: int | None = None
    if upload_token is not None:
        row = conn.execute("SELECT id FROM sessions WHERE token = ? AND kind = 'upload'", (upload_token,)).fetchone()
        if row is not None:
            sid = int(row[0])
        else:
            # A folder in the inbox nobody announced: a session of its own, under a fresh token
            # (the folder's name is not trusted to be unguessable).
            sid = create_session(conn, "upload", folder["id"], now)
    else:
        kind = "burst" if folder["first_scan_done_at"] is not None else "first_scan"
        row = conn.execute(
            "SELECT id FROM sessions WHERE folder_id = ? AND kind = ? AND closed_at IS NULL ORDER BY id DESC LIMIT 1",
            (folder["id"], kind),
        ).fetchone()
        sid = int(row[0]) if row is not None else create_session(conn, kind, folder["id"], now)
    conn.execute("UPDATE sessions SET last_added_at = ?, dirty = 1 WHERE id = ?", (now, sid))
    return sid


def mark_dirty(conn: sqlite3.Connection, session_ids: Iterable[int | None]) -> None:
    ids = sorted({int(s) for s in session_ids if s is not None})
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        conn.execute(f"UPDATE sessions SET dirty = 1 WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def sessions_touching(conn: sqlite3.Connection, photo_ids: Iterable[int]) -> set[int]:
    """Sessions a photo belongs to or appears in (as a member of one of their groups)."""
    out: set[int] = set()
    ids = list(photo_ids)
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        q = ",".join("?" * len(chunk))
        out.update(int(r[0]) for r in conn.execute(f"SELECT session_id FROM photos WHERE id IN ({q}) AND session_id IS NOT NULL", chunk))
        out.update(int(r[0]) for r in conn.execute(
            f"SELECT DISTINCT g.session_id FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.photo_id IN ({q})", chunk))
    return out


WRITING_HOLDS = 10.0  # a file still being written holds sessions open up to this many quiet_s


def _quiet_before(now: float, quiet_s: float, writing_at: float | None) -> float:
    """Sessions whose last photo came before this have fallen quiet. A file still being written
    into a library (``writing_at``: its last change) is a photo on its way: while one changed in
    the last ``quiet_s``, only sessions quiet for ``WRITING_HOLDS`` × ``quiet_s`` close (a file
    written for ever must not hold them for ever)."""
    if writing_at is not None and writing_at > now - quiet_s:
        return now - WRITING_HOLDS * quiet_s
    return now - quiet_s


def close_quiet_sessions(index: Index, now: float, quiet_s: float, writing_at: float | None = None) -> list[int]:
    """Close burst and upload sessions that got no new photo for ``quiet_s`` (and, while a file
    is still being written, longer: ``_quiet_before``)."""
    with index.tx() as conn:
        rows = conn.execute(
            "SELECT id FROM sessions WHERE closed_at IS NULL AND kind IN ('burst', 'upload') AND last_added_at <= ?",
            (_quiet_before(now, quiet_s, writing_at),),
        ).fetchall()
        ids = [int(r[0]) for r in rows]
        for sid in ids:
            conn.execute("UPDATE sessions SET closed_at = ? WHERE id = ?", (now, sid))
        closed = [conn.execute("SELECT token, kind FROM sessions WHERE id = ?", (sid,)).fetchone() for sid in ids]
    for r in closed:
        log.info("session %s (%s) closed: no new photo for %g s; grouping once its photos are analysed",
                 str(r[0])[:6] + "…", r[1], quiet_s)
    return ids


def next_quiet_close(index: Index, quiet_s: float, writing_at: float | None = None) -> float | None:
    """When the next open burst or upload session falls quiet (``close_quiet_sessions`` closes it)."""
    last = index.scalar("SELECT MIN(last_added_at) FROM sessions WHERE closed_at IS NULL AND kind IN ('burst', 'upload')")
    if last is None:
        return None
    due = float(last) + quiet_s
    return due if writing_at is None else min(max(due, writing_at + quiet_s), float(last) + WRITING_HOLDS * quiet_s)


def finish_first_scan(index: Index, folder_id: int, now: float) -> None:
    """The first scan of a folder is complete: close its session; later files make bursts."""
    with index.tx() as conn:
        conn.execute("UPDATE folders SET first_scan_done_at = ? WHERE id = ? AND first_scan_done_at IS NULL", (now, folder_id))
        cur = conn.execute("UPDATE sessions SET closed_at = ? WHERE folder_id = ? AND kind = 'first_scan' "
                           "AND closed_at IS NULL", (now, folder_id))
    if cur.rowcount:
        log.info("first-scan session of folder %d closed: the scan is done; grouping once its photos are analysed", folder_id)


def with_counts(index: Index, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Session rows with their photo counts (``photos`` not gone, ``queued``, ``errors``,
    ``gone``), groups and ``state``: from the counts the index's triggers keep, not from
    counting a library's photos at each request."""
    ids = [int(r["id"]) for r in rows]
    counts = index.session_counts(ids)
    groups: dict[int, int] = {}
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        groups.update({int(r[0]): int(r[1]) for r in index.conn.execute(
            f"SELECT session_id, COUNT(*) FROM groups WHERE session_id IN ({','.join('?' * len(chunk))}) "
            "GROUP BY session_id", chunk)})
    for r in rows:
        c = counts.get(int(r["id"]), {})
        r["gone"] = c.get("gone", 0)
        r["photos"] = sum(c.values()) - r["gone"]
        r["queued"] = c.get("queued", 0)
        r["errors"] = c.get("error", 0)
        r["groups"] = groups.get(int(r["id"]), 0)
        r["state"] = state_of(r)
    return rows


def state_of(row: sqlite3.Row | dict[str, Any]) -> str:
    if row["closed_at"] is None:
        return "open"
    if row["queued"]:
        return "analysing"
    if row["dirty"] or row["clustered_at"] is None:
        return "clustering"
    if row["reviewed_at"] is not None:
        return "reviewed"
    return "clustered"


def list_sessions(index: Index, token: str | None = None) -> list[dict[str, Any]]:
    """Every session (or the one with ``token``), newest first, with counts and its state."""
    sql = "SELECT * FROM sessions" + (" WHERE token = ?" if token else "") + " ORDER BY id DESC"
    return with_counts(index, [dict(r) for r in index.query(sql, (token,) if token else ())])


PRELIMINARY_EVERY_S = 10.0  # an open upload or burst is grouped at most this often while it waits
PRELIMINARY_AFTER_S = 2.0  # and first when open this long: a session about to close is grouped once


def ready_to_cluster(index: Index, now: float | None = None) -> list[int]:
    """Dirty sessions with nothing left in the queue: closed ones, and (with ``now``) open
    uploads and bursts not grouped in the last ``PRELIMINARY_EVERY_S`` (and open at least
    ``PRELIMINARY_AFTER_S``), whose preliminary groups the page shows while the session waits
    for more photos. Newest first: the photos just added wait for no older session that a copy
    of one of its photos made dirty (a library session of thousands of groups)."""
    prelim = ("OR (s.closed_at IS NULL AND s.kind IN ('upload', 'burst') AND COALESCE(s.clustered_at, 0) <= :since "
              "AND s.created_at <= :young AND EXISTS (SELECT 1 FROM photos p WHERE p.session_id = s.id AND p.status = 'ok'))"
              ) if now is not None else ""
    rows = index.query(
        f"SELECT s.id FROM sessions s WHERE s.dirty = 1 AND (s.closed_at IS NOT NULL {prelim}) "
        "AND NOT EXISTS (SELECT 1 FROM photos p WHERE p.session_id = s.id AND p.status = 'queued') ORDER BY s.id DESC",
        {"since": (now or 0) - PRELIMINARY_EVERY_S, "young": (now or 0) - PRELIMINARY_AFTER_S})
    return [int(r[0]) for r in rows]


def mark_reviewed(index: Index, token: str, now: float) -> None:
    with index.tx() as conn:
        conn.execute("UPDATE sessions SET reviewed_at = ? WHERE token = ?", (now, token))


def progress(index: Index, now: float | None = None) -> dict[str, Any]:
    """What the daemon is working through, for ``status`` and the page: ``{"analysis": {"queued",
    "rate_per_s", "eta_s"} | None, "crop_index": {"state", "done", "total", "eta_s"} | None}``.

    The daemon writes both to ``meta`` as it goes (``analysis_progress``, ``crop_index_progress``);
    an estimate older than a minute is not shown (the daemon is stopped or the work is done).
    """
    now = time.time() if now is None else now
    out: dict[str, Any] = {"analysis": None, "crop_index": None}
    a = index.get_meta("analysis_progress")
    if a:
        d = json.loads(a)
        if d.get("queued") and now - float(d.get("at", 0)) < 60:
            out["analysis"] = {"queued": int(d["queued"]), "rate_per_s": d.get("rate_per_s"), "eta_s": d.get("eta_s")}
    c = index.get_meta("crop_index_progress")
    if c:
        d = json.loads(c)
        if d.get("state") == "building":
            done, total = int(d["done"]), max(1, int(d["total"]))
            spent = float(d.get("now", now)) - float(d["started_at"])
            eta = spent * (total - done) / done if done else None
            out["crop_index"] = {"state": "building", "done": done, "total": total,
                                 "eta_s": None if eta is None else round(eta)}
    return out
