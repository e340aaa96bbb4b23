"""Cleanup, scheduled daily and by hand (``dupligone cleanup [--dry-run]``).

1. Trash older than ``trash.retention_days`` is purged for good.
2. Reviewed sessions older than ``cleanup.reviewed_session_days`` are removed with their groups
   and decisions (their photos stay in the index).
3. Live index rows whose file no longer exists (a missed event) are marked gone; rows gone for
   longer than ``cleanup.gone_photo_days`` are removed (unless the trash still holds the file).
4. Thumbnails no photo refers to any more are deleted.
5. The Azure mirror (when on) is asked to compare its container with the index: blobs no photo
   refers to (orphans) are deleted at its next drain, off this path.

Nothing of a library that is offline (its folder missing or empty: a NAS share that dropped) is
touched: its rows are not marked vanished nor forgotten, and its trash is not purged.

A dry run reports exactly the same lists and changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field

from dupligoned.adapters import outbox
from dupligoned.adapters.config import Config
from dupligoned.adapters.index import Index
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.adapters.walk import offline_reason
from dupligoned.services import sessions, trash

DAY_S = 86_400.0


@dataclass
class CleanupReport:
    dry_run: bool
    trash_purged: list[str] = field(default_factory=list)  # trash paths
    sessions_removed: list[str] = field(default_factory=list)  # tokens
    photos_vanished: list[str] = field(default_factory=list)  # live rows whose file is missing
    photos_forgotten: list[str] = field(default_factory=list)  # gone rows removed from the index
    thumbs_removed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would " if self.dry_run else ""
        out = [f"{verb}purge from trash: {p}" for p in self.trash_purged]
        out += [f"{verb}remove reviewed session {t}" for t in self.sessions_removed]
        out += [f"{verb}mark vanished: {p}" for p in self.photos_vanished]
        out += [f"{verb}forget vanished file: {p}" for p in self.photos_forgotten]
        out += [f"{verb}remove stale thumbnail: {t}" for t in self.thumbs_removed]
        out.append(
            f"{verb}purge {len(self.trash_purged)} trashed files, remove {len(self.sessions_removed)} sessions, "
            f"mark {len(self.photos_vanished)} vanished, forget {len(self.photos_forgotten)} rows, "
            f"remove {len(self.thumbs_removed)} thumbnails"
        )
        return out

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("dry_run", "trash_purged", "sessions_removed", "photos_vanished",
                                              "photos_forgotten", "thumbs_removed")}


def _delete_photo_rows(c: sqlite3.Connection, ids: list[int]) -> None:
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        q = ",".join("?" * len(chunk))
        c.execute(f"DELETE FROM group_members WHERE photo_id IN ({q})", chunk)
        c.execute(f"DELETE FROM decisions WHERE photo_id IN ({q})", chunk)
        c.execute(f"DELETE FROM review_views WHERE photo_id IN ({q})", chunk)
        c.execute(f"DELETE FROM library_keeps WHERE photo_id IN ({q})", chunk)
        c.execute(f"UPDATE trash SET photo_id = NULL WHERE photo_id IN ({q})", chunk)
        c.execute(f"DELETE FROM photos WHERE id IN ({q})", chunk)


def offline_folders(index: Index, cfg: Config) -> dict[int, str]:
    """Folder id → path of every library offline now: flagged by the daemon, or seen so here
    (its folder missing, unreadable or empty while the index holds photos of it)."""
    out = {fid: path for fid, (path, _s, _r) in index.offline_folders().items()}
    inbox = str(cfg.inbox_path)
    for fid, path in index.folder_paths().items():
        if fid in out:
            continue
        ignore = [os.path.basename(inbox)] if _under(inbox, [path]) and inbox != path else []
        if offline_reason(path, ignore) is not None and index.has_live_photos_under(path):
            out[fid] = path
    return out


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def run_cleanup(index: Index, cfg: Config, *, dry_run: bool, now: float | None = None) -> CleanupReport:
    now = time.time() if now is None else now
    rep = CleanupReport(dry_run)
    offline = offline_folders(index, cfg)
    away = list(offline.values())
    if not dry_run:
        trash.recover(index)
    rep.trash_purged = [str(r["trash_path"]) for r in trash.purge(index, cfg.trash.retention_days * DAY_S,
                                                                  dry_run=dry_run, now=now, skip_under=away)]

    old = index.query("SELECT id, token FROM sessions WHERE reviewed_at IS NOT NULL AND reviewed_at < ?",
                      (now - cfg.cleanup.reviewed_session_days * DAY_S,))
    rep.sessions_removed = [r["token"] for r in old]
    if not dry_run and old:
        with index.tx() as conn:
            for r in old:
                conn.execute("DELETE FROM group_members WHERE group_id IN (SELECT id FROM groups WHERE session_id = ?)", (r["id"],))
                conn.execute("DELETE FROM groups WHERE session_id = ?", (r["id"],))
                conn.execute("DELETE FROM decisions WHERE session_id = ?", (r["id"],))
                conn.execute("DELETE FROM review_views WHERE session_id = ?", (r["id"],))
                # What the person chose to keep outlives the session it was decided in.
                conn.execute("UPDATE library_keeps SET session_id = NULL WHERE session_id = ?", (r["id"],))
                conn.execute("UPDATE photos SET session_id = NULL WHERE session_id = ?", (r["id"],))
                conn.execute("UPDATE trash SET session_id = NULL WHERE session_id = ?", (r["id"],))
                conn.execute("DELETE FROM sessions WHERE id = ?", (r["id"],))

    vanished = [(int(r["id"]), r["path"]) for r in index.query(
        "SELECT id, path, folder_id FROM photos WHERE status != 'gone'")
                if r["folder_id"] not in offline and not _under(r["path"], away) and not os.path.lexists(r["path"])]
    rep.photos_vanished = [p for _, p in vanished]
    if not dry_run and vanished:
        with index.tx() as conn:
            ids = [i for i, _ in vanished]
            sessions.mark_dirty(conn, sessions.sessions_touching(conn, ids))
            for i in ids:
                conn.execute("UPDATE photos SET status = 'gone', gone_at = ? WHERE id = ?", (now, i))

    forget = index.query(
        "SELECT id, path FROM photos WHERE status = 'gone' AND gone_at < ? "
        "AND id NOT IN (SELECT photo_id FROM trash WHERE state IN ('moving', 'trashed') AND photo_id IS NOT NULL)",
        (now - cfg.cleanup.gone_photo_days * DAY_S,))
    forget = [r for r in forget if not _under(r["path"], away)]
    rep.photos_forgotten = [r["path"] for r in forget]
    if not dry_run and forget:
        with index.tx() as conn:
            ids = [int(r["id"]) for r in forget]
            sessions.mark_dirty(conn, sessions.sessions_touching(conn, ids))
            _delete_photo_rows(conn, ids)

    store = ThumbStore(cfg.thumbs_path)
    forgotten = {int(r["id"]) for r in forget}
    used = {r[1] for r in index.query("SELECT id, thumb FROM photos WHERE thumb IS NOT NULL") if int(r[0]) not in forgotten}
    rep.thumbs_removed = [t for t in store.all() if t not in used]
    if not dry_run:
        for t in rep.thumbs_removed:
            store.remove(t)
        with index.tx() as conn:
            outbox.request_sweep(conn, "azure", now)
    return rep
