"""Ingest: from files on disk to rows in the index.

Two halves, so that the work can run anywhere and the index has one writer:

* ``analyse_for_index`` runs in a worker process (maybe on another machine): one decode, hashes,
  quality figures, the crop stage's local features and a thumbnail from the same decode. Takes a path, returns plain data.
* ``Ingest`` runs in the daemon: it decides what a file event means (new, changed, moved,
  unchanged, gone), records it in the index, queues analysis through the ``enqueue`` callable it
  is given, and writes the results back. A photo is queued only when its row is not already
  ``queued``, so a file is never queued twice at once; the index row is committed before the
  task is queued, so a crash in between is repaired by ``requeue_all`` at the next start.
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import stat as stat_mod
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dupligoned.adapters import orb
from dupligoned.adapters.decode import decode_photo, hash_file
from dupligoned.adapters.index import Index, to_signed64
from dupligoned.adapters.thumbs import ThumbStore, encode_thumbnail
from dupligoned.adapters.walk import is_ignored_name, offline_reason, walk_photos_sorted
from dupligoned.core.crops import LocalFeatures
from dupligoned.core.hashing import combined_hex
from dupligoned.errors import PhotoError, UnreadableFile
from dupligoned.services import sessions
from dupligoned.services.analyse import info_from_decoded

log = logging.getLogger("dupligone.ingest")


UNREADABLE_PREFIX = "cannot read"  # the reason of an error that may pass (permissions, I/O)


class TransientError(Exception):
    """A failure that may pass (a NAS hiccup): the queue retries the task with backoff."""


@dataclass(frozen=True)
class AnalysisJob:
    """What a queue task carries: ids, a path and the analysis settings — never pixels."""

    photo_id: int
    path: str
    max_pixels: int
    work_px: int
    thumb_px: int


def analyse_for_index(job: AnalysisJob, *, last_attempt: bool = True) -> dict[str, Any]:
    """Analyse one file; the result as JSON-ready data (thumbnail bytes base64-encoded).

    A broken photo gives ``{"ok": False, "error": reason}``. An unreadable file (I/O error)
    raises ``TransientError`` unless ``last_attempt``, so the queue retries it.
    """
    out: dict[str, Any] = {"photo_id": job.photo_id, "path": job.path}
    try:
        st = os.lstat(job.path)  # a file replaced by a link since it was queued is not read
    except FileNotFoundError:
        return {**out, "ok": False, "vanished": True, "error": "file vanished before analysis"}
    except OSError as exc:
        if not last_attempt:
            raise TransientError(f"{job.path}: {exc}") from None
        return {**out, "ok": False, "error": f"cannot read: {exc.strerror or exc}"}
    if stat_mod.S_ISLNK(st.st_mode):
        return {**out, "ok": False, "vanished": True, "error": "replaced by a symbolic link (links are never analysed)"}
    out.update(size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        dec = decode_photo(job.path, max_pixels=job.max_pixels, work_px=job.work_px, colour_px=job.thumb_px)
    except UnreadableFile as exc:
        if not last_attempt:
            raise TransientError(str(exc)) from None
        return {**out, "ok": False, "error": exc.reason}
    except PhotoError as exc:
        return {**out, "ok": False, "error": exc.reason}
    info = info_from_decoded(job.path, dec)  # crop features from the same decode, in ``extra``
    thumb = encode_thumbnail(dec.colour, job.thumb_px) if dec.colour is not None else b""
    feats = orb.features_of(info.extra)
    q = info.quality
    return {
        **out, "ok": True,
        "content_hash": info.content_hash, "phash": info.phash, "dhash": info.dhash,
        "width": info.width, "height": info.height, "format": info.format, "lossless": info.lossless,
        "jpeg_quality": info.jpeg_quality, "sharpness": q.sharpness, "brightness": q.brightness,
        # Faces are not looked for at ingest (they only decide between distinct shots of a
        # group, where the keeper counts them): NULL, "not measured", never a false 0.
        "contrast": q.contrast, "noise": q.noise, "faces": None,
        "taken_at": info.taken_at, "camera": info.camera, "has_gps": info.has_gps, "edited_by": info.edited_by,
        "thumb": base64.b64encode(thumb).decode("ascii"),
        "features": None if feats is None else base64.b64encode(feats.to_bytes()).decode("ascii"),
        "features_version": orb.FEATURES_VERSION,
    }


MAX_FEATURE_BYTES = 16384  # a result claiming more is not ours (about 7.7 KB until searched, then 3 KB)


def _store_features(conn: sqlite3.Connection, photo_id: int, encoded: str | None, version: int) -> None:
    """Keep a photo's crop features, to be matched against the library at the next clustering.

    New content drops whatever was known about the old one: its verified crops, and its
    features when the stage was off for this analysis. Raises ``ValueError`` on a malformed blob.
    """
    conn.execute("DELETE FROM crop_pairs WHERE crop_id = ? OR original_id = ?", (photo_id, photo_id))
    if not encoded:
        conn.execute("DELETE FROM photo_features WHERE photo_id = ?", (photo_id,))
        return
    data = base64.b64decode(encoded, validate=True)
    if len(data) > MAX_FEATURE_BYTES:
        raise ValueError(f"crop features of {len(data)} bytes")
    LocalFeatures.from_bytes(data)  # parses, or raises ValueError
    conn.execute("INSERT INTO photo_features(photo_id, data, crops_searched, version) VALUES (?, ?, 0, ?) "
                 "ON CONFLICT(photo_id) DO UPDATE SET data = excluded.data, crops_searched = 0, version = excluded.version",
                 (photo_id, data, version))


@dataclass(frozen=True)
class Folder:
    id: int
    path: str
    protected: bool


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_photo_path(path: str) -> bool:
    from dupligoned.adapters.decode import is_photo_name

    parts = path.split(os.sep)
    return is_photo_name(parts[-1]) and not any(is_ignored_name(p) for p in parts if p)


class Ingest:
    """The daemon's side of ingest. Every method commits its own transaction."""

    def __init__(
        self,
        index: Index,
        thumbs: ThumbStore,
        enqueue: Callable[[AnalysisJob], None],
        *,
        max_pixels: int,
        work_px: int,
        thumb_px: int,
        inbox: str | None = None,
        excluded: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.thumbs = thumbs
        self.enqueue = enqueue
        self.max_pixels, self.work_px, self.thumb_px = max_pixels, work_px, thumb_px
        self.inbox = os.path.realpath(inbox) if inbox else None
        self.excluded = tuple(os.path.realpath(e) for e in excluded)
        self.clock = clock
        self._real_cache: dict[str, bool] = {}
        self.folders: list[Folder] = []
        # Libraries offline now (folder id → since): their rows are left exactly as they are.
        self.offline: dict[int, float] = {}

    # ------------------------------------------------------------ folders

    def register_folders(self, libraries: Iterable[tuple[str, bool, str]]) -> list[Folder]:
        """Make sure each (path, protected, mode) has a folder row; returns them, longest path first."""
        now = self.clock()
        with self.index.tx() as conn:
            for path, protected, mode in libraries:
                conn.execute(
                    "INSERT INTO folders(path, protected, mode, added_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET protected = excluded.protected, mode = excluded.mode",
                    (path, int(protected), mode, now),
                )
        wanted = {p for p, _, _ in libraries}
        rows = [r for r in self.index.query("SELECT id, path, protected FROM folders") if r["path"] in wanted]
        self.folders = sorted((Folder(int(r["id"]), r["path"], bool(r["protected"])) for r in rows),
                              key=lambda f: -len(f.path))
        self.offline = {fid: since for fid, (_p, since, _r) in self.index.offline_folders().items()
                        if any(f.id == fid for f in self.folders)}
        return self.folders

    # ------------------------------------------------------------ libraries offline

    def offline_reason(self, folder: Folder) -> str | None:
        """Why ``folder`` is offline now, or None. A folder is offline only when the index holds
        photos of it: missing, unreadable, or empty (the look of a mount point whose share is
        gone; DupliGone's own upload folder inside it does not count)."""
        ignore = [os.path.basename(self.inbox)] if self.inbox and _inside(self.inbox, folder.path) else []
        reason = offline_reason(folder.path, ignore)
        if reason is not None and not self.index.has_live_photos_under(folder.path):
            return None
        return reason

    def check_libraries(self) -> list[tuple[Folder, str, str]]:
        """Look at every library's root. Returns (folder, ``offline`` | ``online``, reason) for each
        that went offline or came back; a library back online has its waiting photos queued again."""
        now = self.clock()
        changes = []
        for f in self.folders:
            reason = self.offline_reason(f)
            if reason is not None and f.id not in self.offline:
                self.index.set_offline(f.id, now, reason)
                self.offline[f.id] = now
                changes.append((f, "offline", reason))
            elif reason is None and f.id in self.offline:
                self.index.set_offline(f.id, None)
                del self.offline[f.id]
                changes.append((f, "online", ""))
                prefix = f.path.rstrip(os.sep) + os.sep
                for pid, path in self.index.queued_in(f.id):
                    if path.startswith(prefix):
                        self.enqueue(self._job(pid, path))
        return changes

    def is_offline_path(self, path: str) -> bool:
        f = self.folder_of(path)
        return f is not None and f.id in self.offline

    def _is_library_root_or_above(self, path: str) -> bool:
        return any(_inside(f.path, path) for f in self.folders)

    def folder_of(self, path: str) -> Folder | None:
        for f in self.folders:  # longest first: a nested library wins
            if _inside(path, f.path):
                return f
        return None

    def _real_folder(self, folder: str) -> bool:
        """Whether ``folder`` is reached without a symbolic link (its resolved path is itself).
        Cached per folder: a scan asks once per folder, not per file."""
        hit = self._real_cache.get(folder)
        if hit is None:
            hit = os.path.realpath(folder) == folder
            if len(self._real_cache) > 4096:
                self._real_cache.clear()
            self._real_cache[folder] = hit
        return hit

    def wants(self, path: str) -> bool:
        """Is ``path`` a photo file DupliGone should track (inside a library, not junk, not ours)?"""
        if self.excluded and any(_inside(path, e) for e in self.excluded):
            return False
        folder = self.folder_of(path)
        if folder is None:
            return False
        rel = path[len(folder.path):]
        return _is_photo_path(rel)

    def _upload_token(self, path: str) -> str | None:
        if self.inbox and path.startswith(self.inbox + os.sep):
            rest = path[len(self.inbox) + 1:]
            return rest.split(os.sep, 1)[0] if os.sep in rest else None
        return None

    # ------------------------------------------------------------ events

    def _job(self, photo_id: int, path: str) -> AnalysisJob:
        return AnalysisJob(photo_id, path, self.max_pixels, self.work_px, self.thumb_px)

    def file_seen(self, path: str, st: os.stat_result | None = None) -> str:
        """A stable file at ``path``: record it and queue it when needed.

        Returns what happened: ``new``, ``moved``, ``changed``, ``unchanged``, ``queued``
        (already waiting) or ``ignored``.
        """
        jobs: list[AnalysisJob] = []
        with self.index.tx() as conn:
            what = self._file_seen(conn, path, st, jobs)
        for j in jobs:
            self.enqueue(j)
        return what

    def files_seen(self, items: Iterable[tuple[str, os.stat_result | None]], batch: int = 500) -> dict[str, int]:
        """Many stable files at once (scans), in batched transactions. Returns counts per outcome."""
        counts: dict[str, int] = {}
        chunk: list[tuple[str, os.stat_result | None]] = []

        def flush() -> None:
            jobs: list[AnalysisJob] = []
            with self.index.tx() as conn:
                for p, s in chunk:
                    what = self._file_seen(conn, p, s, jobs)
                    counts[what] = counts.get(what, 0) + 1
            for j in jobs:
                self.enqueue(j)
            chunk.clear()

        for item in items:
            chunk.append(item)
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        return counts

    def _file_seen(self, conn: sqlite3.Connection, path: str, st: os.stat_result | None,
                   jobs: list[AnalysisJob]) -> str:
        if not self.wants(path):
            return "ignored"
        try:  # never through a link: a link is no copy, and may lead out of the libraries
            lst = os.lstat(path)
        except OSError:
            return "ignored"
        if not stat_mod.S_ISREG(lst.st_mode) or not self._real_folder(os.path.dirname(path)):
            return "ignored"
        st = lst if st is None else st
        now = self.clock()
        folder = self.folder_of(path)
        assert folder is not None
        row = conn.execute("SELECT id, size_bytes, mtime_ns, status, session_id FROM photos "
                           "WHERE path = ? AND status != 'gone'", (path,)).fetchone()
        if row is not None:
            if row["size_bytes"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
                return "queued" if row["status"] == "queued" else "unchanged"
            conn.execute("UPDATE photos SET size_bytes = ?, mtime_ns = ?, dev = ?, inode = ? WHERE id = ?",
                         (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, row["id"]))
            sessions.mark_dirty(conn, sessions.sessions_touching(conn, [row["id"]]))
            if row["status"] == "queued":
                return "queued"  # the result will not match the new size/mtime and is redone then
            self._queue_row(conn, row["id"], now)
            jobs.append(self._job(row["id"], path))
            return "changed"
        # A file we know under another path that no longer exists there: a move we did not see.
        for cand in conn.execute(
            "SELECT id, path, status FROM photos WHERE inode = ? AND size_bytes = ? AND mtime_ns = ? AND dev = ?",
            (st.st_ino, st.st_size, st.st_mtime_ns, st.st_dev),
        ).fetchall():
            if cand["status"] == "gone" or not os.path.exists(cand["path"]):
                self._move_row(conn, cand["id"], path)
                if cand["status"] == "gone":
                    conn.execute("UPDATE photos SET status = CASE WHEN error IS NOT NULL THEN 'error' "
                                 "WHEN content_hash IS NULL THEN 'queued' ELSE 'ok' END, gone_at = NULL WHERE id = ?",
                                 (cand["id"],))
                    if conn.execute("SELECT status FROM photos WHERE id = ?", (cand["id"],)).fetchone()[0] == "queued":
                        jobs.append(self._job(cand["id"], path))
                return "moved"
        if self._revive_same_file(conn, path, st, jobs):
            return "returned"
        folder_row = conn.execute("SELECT * FROM folders WHERE id = ?", (folder.id,)).fetchone()
        sid = sessions.session_for_new_photo(conn, folder_row, self._upload_token(path), now)
        cur = conn.execute(
            "INSERT INTO photos(folder_id, session_id, path, size_bytes, mtime_ns, dev, inode, status, first_seen_at, queued_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
            (folder.id, sid, path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, now, now),
        )
        jobs.append(self._job(int(cur.lastrowid or 0), path))
        return "new"

    def _revive_same_file(self, conn: sqlite3.Connection, path: str, st: os.stat_result,
                          jobs: list[AnalysisJob]) -> bool:
        """A file back at a path whose row was marked gone, with the same size, mtime and content
        (a share remounted on another device: new device and inode numbers): the same photo, its
        figures, sessions and decisions kept, nothing analysed again."""
        cand = conn.execute(
            "SELECT id, content_hash FROM photos WHERE path = ? AND status = 'gone' AND size_bytes = ? AND mtime_ns = ? "
            "ORDER BY gone_at DESC LIMIT 1", (path, st.st_size, st.st_mtime_ns)).fetchone()
        if cand is None or not cand["content_hash"]:
            return False
        try:
            if hash_file(path) != cand["content_hash"]:
                return False
        except PhotoError:
            return False
        conn.execute("UPDATE photos SET status = CASE WHEN error IS NOT NULL THEN 'error' ELSE 'ok' END, gone_at = NULL, "
                     "dev = ?, inode = ? WHERE id = ?", (st.st_dev, st.st_ino, cand["id"]))
        sessions.mark_dirty(conn, sessions.sessions_touching(conn, [int(cand["id"])]))
        return True

    def _queue_row(self, conn: sqlite3.Connection, photo_id: int, now: float) -> None:
        conn.execute("UPDATE photos SET status = 'queued', error = NULL, queued_at = ?, attempts = 0, worker = NULL "
                     "WHERE id = ?",
                     (now, photo_id))

    def _move_row(self, conn: sqlite3.Connection, photo_id: int, dest: str) -> None:
        # Whatever was recorded at the destination was overwritten by this file.
        old = conn.execute("SELECT id FROM photos WHERE path = ? AND id != ? AND status != 'gone'",
                           (dest, photo_id)).fetchone()
        if old is not None:
            self._forget(conn, [int(old[0])])
        folder = self.folder_of(dest)
        conn.execute("UPDATE photos SET path = ?, folder_id = ? WHERE id = ?",
                     (dest, folder.id if folder else None, photo_id))
        sessions.mark_dirty(conn, sessions.sessions_touching(conn, [photo_id]))

    def _forget(self, conn: sqlite3.Connection, photo_ids: list[int]) -> None:
        """Mark photos gone (their file is no more), and their sessions dirty. Photos of a library
        that is offline are never marked gone: their files are away, not deleted."""
        now = self.clock()
        if self.offline and photo_ids:
            offline = set(self.offline)
            photo_ids = [pid for pid in photo_ids if conn.execute(
                "SELECT folder_id FROM photos WHERE id = ?", (pid,)).fetchone()[0] not in offline]
        sessions.mark_dirty(conn, sessions.sessions_touching(conn, photo_ids))
        for pid in photo_ids:
            conn.execute("UPDATE photos SET status = 'gone', gone_at = ? WHERE id = ? AND status != 'gone'", (now, pid))

    def file_moved(self, src: str, dest: str) -> str:
        """A rename seen by the watcher: the photo keeps its identity and figures (no re-hash)."""
        if self.is_offline_path(src):
            return "offline"
        if not self.wants(dest):
            self.file_gone(src)
            return "gone"
        with self.index.tx() as conn:
            row = conn.execute("SELECT id FROM photos WHERE path = ? AND status != 'gone'", (src,)).fetchone()
            if row is not None:
                self._move_row(conn, int(row[0]), dest)
                try:
                    st = os.stat(dest)
                    conn.execute("UPDATE photos SET dev = ?, inode = ? WHERE id = ?", (st.st_dev, st.st_ino, row[0]))
                except OSError:
                    pass
                return "moved"
        return self.file_seen(dest)

    def dir_moved(self, src: str, dest: str) -> int:
        """A folder renamed: every photo under it follows. Returns how many rows moved. A library's
        own folder (or one above it) renamed away takes the library offline, it does not empty it:
        the caller looks at the libraries (``check_libraries``)."""
        if self._is_library_root_or_above(src) or self.is_offline_path(src):
            return 0
        src_p = src.rstrip(os.sep) + os.sep
        moved = 0
        with self.index.tx() as conn:
            rows = conn.execute("SELECT id, path FROM photos WHERE substr(path, 1, ?) = ? AND status != 'gone'",
                                (len(src_p), src_p)).fetchall()
            for r in rows:
                new = dest.rstrip(os.sep) + os.sep + r["path"][len(src_p):]
                if self.wants(new):
                    self._move_row(conn, int(r["id"]), new)
                    moved += 1
                else:
                    self._forget(conn, [int(r["id"])])
        return moved

    def file_gone(self, path: str) -> bool:
        if self.is_offline_path(path) or self._is_library_root_or_above(path):
            return False
        with self.index.tx() as conn:
            row = conn.execute("SELECT id FROM photos WHERE path = ? AND status != 'gone'", (path,)).fetchone()
            if row is None:
                return False
            self._forget(conn, [int(row[0])])
        return True

    def dir_gone(self, path: str) -> int:
        """A folder deleted: its photos are gone. A library's own folder (or one above it) that
        vanishes takes the library offline instead (see ``dir_moved``)."""
        if self._is_library_root_or_above(path) or self.is_offline_path(path):
            return 0
        p = path.rstrip(os.sep) + os.sep
        with self.index.tx() as conn:
            ids = [int(r[0]) for r in conn.execute(
                "SELECT id FROM photos WHERE substr(path, 1, ?) = ? AND status != 'gone'", (len(p), p))]
            self._forget(conn, ids)
        return len(ids)

    # ------------------------------------------------------------ results

    def apply_result(self, payload: dict[str, Any]) -> str:
        """Write one analysis result. Results for photos no longer waiting, or for a file that has
        changed since, are dropped (the latter is queued again). Returns ``ok``, ``error``,
        ``stale`` or ``requeued``."""
        now = self.clock()
        pid = int(payload["photo_id"])
        requeue: AnalysisJob | None = None
        with self.index.tx() as conn:
            row = conn.execute("SELECT id, path, size_bytes, mtime_ns, status, session_id FROM photos WHERE id = ?",
                               (pid,)).fetchone()
            if row is None or row["status"] != "queued":
                return "stale"
            if payload.get("vanished"):
                f = self.folder_of(row["path"])
                if f is not None and (f.id in self.offline or self.offline_reason(f) is not None):
                    return "offline"  # waits, queued, for its library (queued again when it is back)
                if os.path.exists(row["path"]):
                    requeue = self._job(pid, row["path"])  # moved under us; the row has its new path
                    result = "requeued"
                else:
                    self._forget(conn, [pid])
                    return "gone"
            elif payload.get("size_bytes") != row["size_bytes"] or payload.get("mtime_ns") != row["mtime_ns"] \
                    or payload.get("path") != row["path"]:
                requeue = self._job(pid, row["path"])
                conn.execute("UPDATE photos SET queued_at = ? WHERE id = ?", (now, pid))
                result = "requeued"
            elif not payload["ok"]:
                conn.execute(
                    "UPDATE photos SET status = 'error', error = ?, analysed_at = ?, analyses = analyses + 1, worker = NULL "
                    "WHERE id = ?", (payload["error"], now, pid),
                )
                sessions.mark_dirty(conn, [row["session_id"]])
                log.warning("cannot analyse %s: %s", row["path"], payload["error"])
                return "error"
            else:
                thumb_rel = None
                if payload.get("thumb"):
                    thumb_rel = self.thumbs.write(payload["content_hash"], base64.b64decode(payload["thumb"]))
                p, d = int(payload["phash"]), int(payload["dhash"])
                conn.execute(
                    """UPDATE photos SET status = 'ok', error = NULL, analysed_at = ?, analyses = analyses + 1, worker = NULL,
                       content_hash = ?, phash = ?, dhash = ?, phash_dhash = ?, width = ?, height = ?, format = ?,
                       lossless = ?, jpeg_quality = ?, sharpness = ?, brightness = ?, contrast = ?, noise = ?, faces = ?,
                       taken_at = ?, camera = ?, has_gps = ?, edited_by = ?, thumb = ? WHERE id = ?""",
                    (now, payload["content_hash"], to_signed64(p), to_signed64(d), combined_hex(p, d),
                     payload["width"], payload["height"], payload["format"], int(payload["lossless"]),
                     payload["jpeg_quality"], payload["sharpness"], payload["brightness"], payload["contrast"],
                     payload["noise"], payload["faces"], payload["taken_at"], payload["camera"],
                     int(payload["has_gps"]), payload.get("edited_by"), thumb_rel, pid),
                )
                _store_features(conn, pid, payload.get("features"), int(payload.get("features_version") or 1))
                sessions.mark_dirty(conn, sessions.sessions_touching(conn, [pid]))
                return "ok"
        if requeue is not None:
            self.enqueue(requeue)
        return result

    def requeue_for_features(self, photo_ids: list[int]) -> int:
        """Analyse these analysed photos again (their crop features are missing or made by an
        older extraction); their figures
        are replaced by the same ones and their sessions grouped again. Returns how many."""
        now = self.clock()
        jobs = []
        with self.index.tx() as conn:
            for pid in photo_ids:
                row = conn.execute("SELECT path FROM photos WHERE id = ? AND status = 'ok'", (pid,)).fetchone()
                if row is not None:
                    self._queue_row(conn, pid, now)
                    jobs.append(self._job(pid, row[0]))
        for j in jobs:
            self.enqueue(j)
        return len(jobs)

    def retry_unreadable(self, paths: Sequence[str]) -> int:
        """Queue again photos recorded as unreadable that can be read now. Returns how many."""
        now = self.clock()
        jobs = []
        with self.index.tx() as conn:
            for p in paths:
                row = conn.execute("SELECT id FROM photos WHERE path = ? AND status = 'error'", (p,)).fetchone()
                if row is not None:
                    self._queue_row(conn, int(row[0]), now)
                    sessions.mark_dirty(conn, sessions.sessions_touching(conn, [int(row[0])]))
                    jobs.append(self._job(int(row[0]), p))
        for j in jobs:
            self.enqueue(j)
        return len(jobs)

    def requeue_all(self) -> int:
        """Queue every photo still waiting (after a restart: the queue was emptied first)."""
        rows = self.index.query("SELECT id, path FROM photos WHERE status = 'queued' ORDER BY id")
        for r in rows:
            self.enqueue(self._job(int(r["id"]), r["path"]))
        return len(rows)

    def requeue_stuck(self, older_than_s: float, max_attempts: int = 3) -> int:
        """Photos whose analysis never came back (a worker died mid-task): queue again, or give
        up with a reason after ``max_attempts``."""
        now = self.clock()
        jobs = []
        with self.index.tx() as conn:
            rows = conn.execute("SELECT id, path, attempts, session_id FROM photos WHERE status = 'queued' AND queued_at < ?",
                                (now - older_than_s,)).fetchall()
            for r in rows:
                if r["attempts"] + 1 >= max_attempts:
                    conn.execute("UPDATE photos SET status = 'error', error = ?, analysed_at = ?, analyses = analyses + 1 "
                                 "WHERE id = ?", ("analysis never finished (the worker crashed or hung on this file)", now, r["id"]))
                    sessions.mark_dirty(conn, [r["session_id"]])
                    log.warning("giving up on %s: analysis never finished", r["path"])
                else:
                    conn.execute("UPDATE photos SET attempts = attempts + 1, queued_at = ? WHERE id = ?", (now, r["id"]))
                    jobs.append(self._job(int(r["id"]), r["path"]))
        for j in jobs:
            self.enqueue(j)
        return len(rows)

    # ------------------------------------------------------------ scans

    def scan_folder(self, folder: Folder, *, stable_s: float,
                    on_unstable: Callable[[str], None] | None = None) -> dict[str, int]:
        """Compare a folder on disk with the index: new and changed files are queued (files
        changed less than ``stable_s`` ago go to ``on_unstable`` instead, for the stability
        check), vanished ones marked gone. An unchanged file costs one stat and a comparison.
        A library that is offline is not scanned (``{"offline": 1}``): nothing of it is marked gone.
        A file unchanged at its path on another device (a remount) keeps its row and figures.
        All at once; ``FolderScan`` does the same in steps (the daemon's rescans)."""
        scan = FolderScan(self, folder, stable_s=stable_s, on_unstable=on_unstable)
        while not scan.step(None):
            pass
        return scan.counts


class FolderScan:
    """A scan of one folder (``Ingest.scan_folder``) in bounded steps, so the daemon's loop goes
    on between them: the walk (in path order) is merged with the index's rows of the folder (in
    path order, a page at a time), so neither a million rows nor a million paths are held."""

    PAGE = 2_000  # index rows read at a time
    BATCH = 500  # new and changed files handed to ``files_seen`` at a time
    CHECK_EVERY = 64  # files walked between looks at the clock

    def __init__(self, ingest: Ingest, folder: Folder, *, stable_s: float,
                 on_unstable: Callable[[str], None] | None = None) -> None:
        self.ingest, self.folder, self.stable_s, self.on_unstable = ingest, folder, stable_s, on_unstable
        self.now = ingest.clock()
        self.prefix = folder.path.rstrip(os.sep) + os.sep
        self.counts: dict[str, int] = {"files": 0, "unchanged": 0, "unstable": 0}
        self.steps = 0
        self.done = False
        self._walk = walk_photos_sorted(folder.path, excluded=ingest.excluded)
        self._rows: list[sqlite3.Row] = []  # the current page, from ``_at``
        self._at = 0
        self._after = ""  # the last path read from the index
        self._rows_done = False
        self._todo: list[tuple[str, os.stat_result | None]] = []
        self._remounted: list[tuple[int, int, str]] = []
        self._readable_again: list[str] = []
        self._vanished: list[str] = []
        if folder.id in ingest.offline or ingest.offline_reason(folder) is not None:
            self.counts = {"offline": 1}
            self.done = True

    def _row(self) -> sqlite3.Row | None:
        """The next index row not yet merged (reading the next page when needed)."""
        if self._at >= len(self._rows):
            if self._rows_done:
                return None
            self._rows = self.ingest.index.live_rows_under(self.prefix, self._after, self.PAGE)
            self._at = 0
            if len(self._rows) < self.PAGE:
                self._rows_done = True
            if not self._rows:
                return None
            self._after = str(self._rows[-1][0])
        return self._rows[self._at]

    def _gone_maybe(self, row: sqlite3.Row) -> None:
        p = str(row[0])
        if self.ingest.folder_of(p) == self.folder and (os.path.islink(p) or not os.path.exists(p)):
            self._vanished.append(p)  # (a file replaced by a link is gone too: the link is never the photo)

    def _file(self, path: str) -> None:
        ing = self.ingest
        owner = ing.folder_of(path)
        if owner is not None and owner.id != self.folder.id:
            return  # a nested library scans its own files
        try:
            st = os.stat(path)
        except OSError:
            return
        self.counts["files"] += 1
        row = self._row()
        while row is not None and str(row[0]) < path:
            self._gone_maybe(row)
            self._at += 1
            row = self._row()
        if row is not None and str(row[0]) == path:
            self._at += 1
            if row[1] == st.st_size and row[2] == st.st_mtime_ns:
                self.counts["unchanged"] += 1
                if (row[4], row[5]) != (st.st_dev, st.st_ino):
                    self._remounted.append((st.st_dev, st.st_ino, path))
                if row[3] == "error" and str(row[6] or "").startswith(UNREADABLE_PREFIX) and os.access(path, os.R_OK):
                    self._readable_again.append(path)  # its permissions were fixed: try again
                return
        if self.now - st.st_mtime_ns / 1e9 < self.stable_s and self.on_unstable is not None:
            self.counts["unstable"] += 1
            self.on_unstable(path)
            return
        self._todo.append((path, st))

    def _flush(self) -> None:
        ing = self.ingest
        if self._remounted:
            ing.index.refresh_identity(self._remounted)
            self._remounted = []
        if self._readable_again:
            self.counts["readable again"] = self.counts.get("readable again", 0) + ing.retry_unreadable(self._readable_again)
            self._readable_again = []
        if self._todo:
            for k, v in ing.files_seen(self._todo).items():
                self.counts[k] = self.counts.get(k, 0) + v
            self._todo = []

    def step(self, budget_s: float | None = 0.05) -> bool:
        """Scan on for about ``budget_s`` (None: to the end). Returns whether the scan is done."""
        if self.done:
            return True
        self.steps += 1
        t_end = None if budget_s is None else time.monotonic() + budget_s
        k = 0
        for path in self._walk:
            self._file(path)
            k += 1
            if len(self._todo) >= self.BATCH:
                self._flush()
            if t_end is not None and k % self.CHECK_EVERY == 0 and time.monotonic() >= t_end:
                self._flush()
                return False
        while (row := self._row()) is not None:  # the walk is over: rows left are files gone
            self._gone_maybe(row)
            self._at += 1
            k += 1
            if t_end is not None and k % (4 * self.CHECK_EVERY) == 0 and time.monotonic() >= t_end:
                self._flush()
                return False
        self._flush()
        self.done = True
        ing = self.ingest
        if ing.offline_reason(self.folder) is not None:
            self.counts = {**self.counts, "offline": 1}  # it went away while we walked it: nothing is gone
            return True
        if self._vanished:
            with ing.index.tx() as conn:
                ids = []
                for p in self._vanished:  # by path, now: a photo moved meanwhile keeps its row
                    r = conn.execute("SELECT id FROM photos WHERE path = ? AND status != 'gone'", (p,)).fetchone()
                    if r is not None and (os.path.islink(p) or not os.path.exists(p)):
                        ids.append(int(r[0]))
                ing._forget(conn, ids)
        self.counts["gone"] = len(self._vanished)
        return True
