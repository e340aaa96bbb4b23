"""Trash: deletion is a move, recorded first, undoable until purged.

``move_to_trash`` writes a ``trash`` row (state ``moving``), moves the file (a rename when the
trash is on the same filesystem, else copy and delete), then marks the row ``trashed`` and the
photo ``gone``. ``restore`` puts the file back at its original path, byte-identical, and the
photo row comes back with its figures (no re-analysis). ``recover`` finishes or undoes moves
interrupted by a crash. ``purge`` deletes trashed files for good.

A photo's companions (Live Photo video, sidecars, Takeout JSON: ``adapters/companions.py``) go
with it into the same trash folder, recorded (with their sha256) in the same transaction as the
photo's entry, come back with it on restore and are purged with it. A move that cannot take a
companion along is undone: a photo never leaves without its companions, nor they without it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dupligoned.adapters import companions as companion_files
from dupligoned.adapters.index import Index
from dupligoned.errors import DupliGoneError
from dupligoned.services import sessions

log = logging.getLogger("dupligone.trash")

TRASH_FOLDER = ".dupligone-trash"


class TrashError(DupliGoneError):
    """A file that could not be moved to or from the trash; the message says which and why."""


@dataclass(frozen=True)
class TrashMove:
    photo_id: int
    path: str
    size_bytes: int
    trash_id: int | None = None
    trash_path: str | None = None
    companions: tuple[str, ...] = ()  # companion files going (gone) with the photo


def default_trash_root(trash_dir: str, library_paths: Iterable[str]) -> Callable[[str], str]:
    """Where a photo's trash goes: ``trash_dir`` when set, else ``<library>/.dupligone-trash``
    (same filesystem as the photo, so the move is a rename)."""
    libs = sorted(library_paths, key=len, reverse=True)

    def root_for(path: str) -> str:
        if trash_dir:
            return trash_dir
        for lib in libs:
            if path.startswith(lib.rstrip(os.sep) + os.sep):
                return os.path.join(lib, TRASH_FOLDER)
        return os.path.join(os.path.dirname(path), TRASH_FOLDER)

    return root_for


def plan(index: Index, photo_ids: Iterable[int]) -> list[TrashMove]:
    """What ``move_to_trash`` would move: live photos outside protected folders. Moves nothing."""
    out = []
    for pid in photo_ids:
        r = index.one("SELECT p.id, p.path, p.size_bytes, p.status, COALESCE(f.protected, 0) AS protected "
                      "FROM photos p LEFT JOIN folders f ON f.id = p.folder_id WHERE p.id = ?", (pid,))
        if r is None or r["status"] == "gone" or r["protected"]:
            continue
        out.append(TrashMove(int(r["id"]), r["path"], int(r["size_bytes"])))
    going = companion_files.companions_for_batch([m.path for m in out])
    return [replace(m, companions=going[m.path]) for m in out]


def refuse_links(path: str) -> None:
    """Raises ``OSError(ELOOP)`` when ``path`` (or a folder on the way to it) is a symbolic link:
    its resolved form is not the path itself. Missing trailing parts are not links."""
    norm = os.path.normpath(os.path.abspath(path))
    if os.path.realpath(norm) != norm:
        raise OSError(errno.ELOOP, f"{norm} has a symbolic link on its path (links are never followed)")


def _open_dir(path: str) -> int:
    """A descriptor (``O_PATH``) of folder ``path``, reached one component at a time with
    ``O_NOFOLLOW``: a folder on the way that is (or becomes) a link fails with ``ELOOP``."""
    norm = os.path.normpath(os.path.abspath(path))
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        for part in (p for p in norm.split(os.sep) if p):
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OSError(errno.ELOOP, f"{norm} has a symbolic link on its path (links are never followed)") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _move(src: str, dest: str) -> None:
    # A folder replaced by a link to elsewhere must not make a move take a file from, or write
    # one to, outside the library: both folders are opened without following a link at any
    # step, and the rename goes through those descriptors (renameat), so a swap after the check
    # changes nothing. Another filesystem: copy and remove, after the same checks on the paths.
    refuse_links(src)
    refuse_links(os.path.dirname(dest))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    sfd = _open_dir(os.path.dirname(src))
    try:
        dfd = _open_dir(os.path.dirname(dest))
        try:
            s_name, d_name = os.path.basename(src), os.path.basename(dest)
            if stat.S_ISLNK(os.lstat(s_name, dir_fd=sfd).st_mode):
                raise OSError(errno.ELOOP, f"{src} is a symbolic link (links are never moved)")
            try:
                os.lstat(d_name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            else:
                raise OSError(errno.EEXIST, f"{dest} exists")
            try:
                os.rename(s_name, d_name, src_dir_fd=sfd, dst_dir_fd=dfd)
                return
            except OSError:
                pass  # another filesystem (or one that cannot rename): copy below
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    refuse_links(src)
    refuse_links(os.path.dirname(dest))
    shutil.copy2(src, dest)  # another filesystem: copy (with times), then remove
    os.unlink(src)


def move_to_trash(index: Index, photo_ids: Iterable[int], root_for: Callable[[str], str], *,
                  session_id: int | None = None, now: float | None = None) -> list[TrashMove]:
    """Move photos to the trash; returns what moved. Raises ``TrashError`` at the first failure
    (photos moved before it stay moved and recorded)."""
    now = time.time() if now is None else now
    done = []
    for m in plan(index, photo_ids):
        with index.tx() as conn:
            cur = conn.execute(
                "INSERT INTO trash(photo_id, session_id, original_path, trash_path, size_bytes, content_hash, state, moved_at) "
                "SELECT id, ?, path, '', size_bytes, content_hash, 'moving', ? FROM photos WHERE id = ?",
                (session_id, now, m.photo_id))
            tid = int(cur.lastrowid or 0)
            day = time.strftime("%Y-%m-%d", time.localtime(now))
            dest = os.path.join(root_for(m.path), day, str(tid), os.path.basename(m.path))
            conn.execute("UPDATE trash SET trash_path = ? WHERE id = ?", (dest, tid))
            comps = _record_companions(conn, tid, m.companions, os.path.dirname(dest))
        try:
            _move(m.path, dest)
        except OSError as exc:
            with index.tx() as conn:
                conn.execute("DELETE FROM trash WHERE id = ?", (tid,))
            raise TrashError(f"cannot move {m.path} to trash: {exc.strerror or exc}") from None
        try:
            _move_companions(comps)
        except OSError as exc:
            try:
                _move(dest, m.path)  # the photo does not leave without its companions
            except OSError as back:
                raise TrashError(f"{m.path} is in the trash at {dest} without its companions (they could "
                                 f"not follow: {exc.strerror or exc}; nor could it come back: "
                                 f"{back.strerror or back})") from None
            with index.tx() as conn:
                conn.execute("DELETE FROM trash WHERE id = ?", (tid,))
            raise TrashError(f"cannot move {m.path} to trash: a companion cannot go with it "
                             f"({exc.strerror or exc}); nothing moved") from None
        with index.tx() as conn:
            conn.execute("UPDATE trash SET state = 'trashed' WHERE id = ?", (tid,))
            conn.execute("UPDATE photos SET status = 'gone', gone_at = ? WHERE id = ?", (now, m.photo_id))
            sessions.mark_dirty(conn, sessions.sessions_touching(conn, [m.photo_id]))
        log.info("moved to trash: %s -> %s", m.path, dest)
        done.append(TrashMove(m.photo_id, m.path, m.size_bytes, tid, dest, tuple(c for c, _ in comps)))
    return done


def restore(index: Index, trash_id: int, *, now: float | None = None) -> str:
    """Put a trashed file back at its original path; returns that path. Raises ``TrashError``."""
    now = time.time() if now is None else now
    r = index.one("SELECT * FROM trash WHERE id = ?", (trash_id,))
    if r is None or r["state"] != "trashed":
        raise TrashError(f"nothing to restore for trash entry {trash_id}")
    if os.path.exists(r["original_path"]):
        raise TrashError(f"cannot restore: {r['original_path']} exists again; move it away first")
    comps = [(c["original_path"], c["trash_path"]) for c in
             index.query("SELECT original_path, trash_path FROM trash_companions WHERE trash_id = ?", (trash_id,))]
    for orig, _ in comps:
        if os.path.lexists(orig):
            raise TrashError(f"cannot restore: its companion {orig} exists again; move it away first")
    try:
        _move(r["trash_path"], r["original_path"])
    except OSError as exc:
        raise TrashError(f"cannot restore {r['original_path']}: {exc.strerror or exc}") from None
    try:
        _move_companions([(t, o) for o, t in comps])
    except OSError as exc:
        raise TrashError(f"restored {r['original_path']}, but not all its companions: {exc.strerror or exc}; "
                         f"they are in {os.path.dirname(str(r['trash_path']))}") from None
    st = os.stat(r["original_path"])
    with index.tx() as conn:
        conn.execute("UPDATE trash SET state = 'restored', restored_at = ? WHERE id = ?", (now, trash_id))
        live = conn.execute("SELECT id FROM photos WHERE path = ? AND status != 'gone'", (r["original_path"],)).fetchone()
        if live is None and r["photo_id"] is not None:
            conn.execute(
                "UPDATE photos SET path = ?, status = CASE WHEN content_hash IS NULL THEN 'queued' ELSE 'ok' END, "
                "gone_at = NULL, size_bytes = ?, mtime_ns = ?, dev = ?, inode = ? WHERE id = ?",
                (r["original_path"], st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, r["photo_id"]))
            sessions.mark_dirty(conn, sessions.sessions_touching(conn, [int(r["photo_id"])]))
    log.info("restored from trash: %s", r["original_path"])
    return str(r["original_path"])


def recover(index: Index) -> int:
    """Finish or undo moves a crash interrupted. Returns how many entries were settled."""
    rows = index.query("SELECT * FROM trash WHERE state = 'moving'")
    for r in rows:
        at_dest = bool(r["trash_path"]) and os.path.exists(r["trash_path"])
        finished = at_dest and not os.path.exists(r["original_path"])
        _settle_companions(index, int(r["id"]), finished)
        with index.tx() as conn:
            if finished:
                conn.execute("UPDATE trash SET state = 'trashed' WHERE id = ?", (r["id"],))
                conn.execute("UPDATE photos SET status = 'gone', gone_at = ? WHERE id = ?", (r["moved_at"], r["photo_id"]))
            else:
                conn.execute("DELETE FROM trash WHERE id = ?", (r["id"],))
    return len(rows)


def list_trash(index: Index) -> list[dict[str, object]]:
    """Entries still in the trash, newest first."""
    return [dict(r) for r in index.query("SELECT * FROM trash WHERE state = 'trashed' ORDER BY moved_at DESC, id DESC")]


def purge(index: Index, older_than_s: float, *, dry_run: bool = False, now: float | None = None,
          skip_under: Sequence[str] = ()) -> list[dict[str, object]]:
    """Delete trashed files moved more than ``older_than_s`` ago; returns the entries. Entries
    whose file or original lies under ``skip_under`` (libraries offline) are left alone."""
    now = time.time() if now is None else now
    rows = [dict(r) for r in index.query("SELECT * FROM trash WHERE state = 'trashed' AND moved_at < ?",
                                         (now - older_than_s,))]
    away = [p.rstrip(os.sep) + os.sep for p in skip_under]
    rows = [r for r in rows if not any(str(r["trash_path"]).startswith(a) or str(r["original_path"]).startswith(a)
                                       for a in away)]
    if dry_run:
        return rows
    for r in rows:
        if not _purge_file(str(r["trash_path"])):
            continue  # the entry stays; the next cleanup tries again
        for c in index.query("SELECT trash_path FROM trash_companions WHERE trash_id = ?", (r["id"],)):
            _purge_file(str(c["trash_path"]))
        _prune_empty(os.path.dirname(str(r["trash_path"])), levels=2)
        with index.tx() as conn:
            conn.execute("UPDATE trash SET state = 'purged', purged_at = ? WHERE id = ?", (now, r["id"]))
    return rows


def _purge_file(path: str) -> bool:
    """Delete a file of the trash for good; False (and one log line) if it cannot be."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot purge %s: %s", path, exc.strerror or exc)
        return False
    return True


def _prune_empty(folder: str, levels: int) -> None:
    for _ in range(levels):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


# ---------------------------------------------------------------- companions

def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _record_companions(conn: Any, trash_id: int, paths: Iterable[str], folder: str) -> list[tuple[str, str]]:
    """Record the companions going with trash entry ``trash_id`` (into ``folder``, beside the
    photo); returns (original, trash path) of each. A companion that vanished since the plan is
    simply not there to take."""
    out = []
    for src in paths:
        try:
            size, digest = os.lstat(src).st_size, _sha256(src)
        except OSError:
            continue
        dest = os.path.join(folder, os.path.basename(src))
        conn.execute("INSERT INTO trash_companions(trash_id, original_path, trash_path, size_bytes, sha256) "
                     "VALUES (?, ?, ?, ?, ?)", (trash_id, src, dest, size, digest))
        out.append((src, dest))
    return out


def _move_companions(moves: list[tuple[str, str]]) -> None:
    """Move each (src, dest); on a failure, put back those already moved and raise ``OSError``."""
    done: list[tuple[str, str]] = []
    for src, dest in moves:
        try:
            _move(src, dest)
        except OSError:
            for s2, d2 in reversed(done):
                try:
                    _move(d2, s2)
                except OSError as exc:
                    log.error("cannot put back %s (it stays at %s): %s", s2, d2, exc.strerror or exc)
            raise
        done.append((src, dest))


def _settle_companions(index: Index, trash_id: int, finished: bool) -> None:
    """After a crash: companions follow their photo (into the trash when its move finished,
    back to their place when it is undone)."""
    for c in index.query("SELECT original_path, trash_path FROM trash_companions WHERE trash_id = ?", (trash_id,)):
        src, dest = (c["original_path"], c["trash_path"]) if finished else (c["trash_path"], c["original_path"])
        if os.path.exists(src) and not os.path.lexists(dest):
            try:
                _move(src, dest)
            except OSError as exc:
                log.error("cannot settle companion %s: %s", src, exc.strerror or exc)


def companions_of_entries(index: Index, trash_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The companions recorded for trash entries: id -> [{original_path, trash_path, size_bytes, sha256}]."""
    ids = list(trash_ids)
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        for r in index.query("SELECT * FROM trash_companions WHERE trash_id IN (" + ",".join("?" * len(chunk))
                             + ") ORDER BY id", tuple(chunk)):
            out[int(r["trash_id"])].append(dict(r))
    return out
