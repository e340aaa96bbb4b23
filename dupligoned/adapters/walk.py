"""Finding photo files under library folders.

Never follows a symbolic link (a linked file is not a copy and takes no space; a linked folder
leads either into a library, walked there, or out of them), never loops (each directory is
entered once, by device and inode), and skips hidden files, partial downloads and
the junk NAS boxes and desktops leave behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from dupligoned.adapters.decode import is_photo_name

JUNK_DIRS = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "@Recycle", "@Recently-Snapshot", ".@__thumb",
     "$RECYCLE.BIN", "System Volume Information", "lost+found", ".stfolder", ".stversions",
     ".Trash", ".Trashes", ".dtrash", ".thumbnails"}
)
JUNK_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "ehthumbs.db"})
PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", ".!qb", ".syncthing")


def is_landing_name(name: str) -> bool:
    """A name writers give a file while it is incomplete and rename when it is done: a partial
    download (``.part``, ``.crdownload``…), rsync's ``.name.XXXXXX``, Syncthing's ``.syncthing.*``."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def is_ignored_name(name: str) -> bool:
    """Hidden files, NAS/OS junk and partial downloads are never photos to analyse."""
    if name.startswith(".") or name.startswith("~$"):
        return True
    if name in JUNK_FILES or name in JUNK_DIRS:
        return True
    lower = name.lower()
    return lower.endswith(PARTIAL_SUFFIXES) or lower.startswith(".syncthing.")


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def walk_photos(roots: Iterable[str], excluded: Iterable[str] = ()) -> Iterator[str]:
    """Absolute paths of photo files under ``roots``, each at most once, in sorted order per folder.

    ``excluded`` folders (DupliGone's own trash and state) are not entered.
    """
    real_roots = tuple(os.path.realpath(r) for r in roots)
    skip = tuple(os.path.realpath(e) for e in excluded)
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        yield from _walk(os.path.abspath(root), real_roots, skip, seen_dirs)


def walk_photos_sorted(root: str, excluded: Iterable[str] = ()) -> Iterator[str]:
    """Absolute paths of photo files under ``root`` (as ``walk_photos``), in the order of the
    paths as strings — the index's order, so a scan merges the two in steps without holding
    either: entries are sorted by name with a folder's name read as ``name/``."""
    skip = tuple(os.path.realpath(e) for e in excluded)
    yield from _walk_sorted(os.path.abspath(root), skip, set())


def _first_visit(folder: str, seen_dirs: set[tuple[int, int]]) -> bool:
    """Whether ``folder`` can be read and was not walked yet (a folder linked twice, or a loop,
    is walked once): it is marked walked."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:
        return False
    seen_dirs.add(key)
    return True


def _listing(folder: str) -> list[tuple[str, str, bool]]:
    """(name, path, is a folder) of what a walk looks at in ``folder``: its photos and its
    sub-folders, neither hidden nor NAS junk, no symlinks (empty when it cannot be read)."""
    entries: list[tuple[str, str, bool]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if is_ignored_name(entry.name):
                    continue
                try:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((entry.name, entry.path, True))
                    elif entry.is_file(follow_symlinks=False) and is_photo_name(entry.name):
                        entries.append((entry.name, entry.path, False))
                except OSError:
                    continue
    except OSError:
        return []
    return entries


def _walk_sorted(folder: str, skip: tuple[str, ...], seen_dirs: set[tuple[int, int]]) -> Iterator[str]:
    if not _first_visit(folder, seen_dirs):
        return
    if skip and _inside(os.path.realpath(folder), skip):
        return
    entries = _listing(folder)
    # A folder's name is read as "name/": the order a path-sorted index lists its photos in.
    entries.sort(key=lambda e: e[0] + "/" if e[2] else e[0])
    for _, path, is_dir in entries:
        if is_dir:
            yield from _walk_sorted(path, skip, seen_dirs)
        else:
            yield path


def _walk(
    folder: str,
    roots: tuple[str, ...],
    skip: tuple[str, ...],
    seen_dirs: set[tuple[int, int]],
) -> Iterator[str]:
    if not _first_visit(folder, seen_dirs):
        return
    real = os.path.realpath(folder)
    if skip and _inside(real, skip):
        return
    entries = sorted(_listing(folder))
    yield from (path for _, path, is_dir in entries if not is_dir)
    for sub in (path for _, path, is_dir in entries if is_dir):
        yield from _walk(sub, roots, skip, seen_dirs)


def offline_reason(root: str, ignore: Iterable[str] = ()) -> str | None:
    """Why the library folder ``root`` looks offline (its share dropped, its mount is gone), or None.

    Missing or not a folder: offline. Empty (nothing but hidden files, NAS junk and the names in
    ``ignore``, such as DupliGone's own upload folder): offline too, the look of an empty mount
    point. Unreadable: offline (a share that lost its permissions). The caller decides whether
    that matters (a library the index holds photos of).
    """
    skip = set(ignore)
    try:
        with os.scandir(root) as it:
            for entry in it:
                if not is_ignored_name(entry.name) and entry.name not in skip:
                    return None
    except FileNotFoundError:
        return "its folder is missing"
    except NotADirectoryError:
        return "its path is not a folder"
    except OSError as exc:
        return f"its folder cannot be read ({exc.strerror or exc})"
    return "its folder is empty"
