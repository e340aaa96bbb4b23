"""The state folder's guards: one daemon per folder, free space, temp files left by a crash.

* ``StateLock``: ``state_dir/dupligoned.lock``, an ``flock`` held while the daemon runs. The
  kernel drops it when the process dies (even by ``kill -9``), so a stale lock file never blocks
  a start; the file holds the running daemon's pid for the refusal message.
* ``free_bytes`` / ``LowSpace``: the free space of the state folder's filesystem, and the one line
  that says analysis is paused below the margin.
* ``clean_temp_files``: thumbnails and backups half-written when the daemon died (``.x.jpg.PID.tmp``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dupligoned.errors import StateLocked

LOCK_NAME = "dupligoned.lock"
MB = 1024 * 1024


class StateLock:
    """The daemon's lock on ``state_dir``. ``acquire`` raises ``StateLocked`` naming the holder."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = str(state_dir)
        self.path = os.path.join(self.state_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder_pid(self.path)
            os.close(fd)
            raise StateLocked(self.state_dir, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, rewritten next start)
            self._fd = None


def holder_pid(lock_path: str) -> int | None:
    try:
        return int(Path(lock_path).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def is_locked(state_dir: str | Path) -> int | None:
    """The pid of the daemon holding ``state_dir`` (None when no daemon runs on it)."""
    path = os.path.join(str(state_dir), LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder_pid(path) or -1
    finally:
        os.close(fd)
    return None


def free_bytes(path: str | Path) -> int:
    """Free bytes for this user on the filesystem holding ``path``."""
    return int(shutil.disk_usage(str(path)).free)


@dataclass(frozen=True)
class LowSpace:
    path: str
    free: int
    margin: int

    def line(self) -> str:
        return (f"analysis paused: only {self.free / MB:.0f} MB free on {self.path} (below state_min_free_mb = "
                f"{self.margin / MB:.0f}); it resumes by itself when space is freed")


def low_space(state_dir: str | Path, margin_mb: float) -> LowSpace | None:
    """A ``LowSpace`` when the state folder has less than ``margin_mb`` free, else None."""
    try:
        free = free_bytes(state_dir)
    except OSError:
        return None
    margin = int(margin_mb * MB)
    return LowSpace(str(state_dir), free, margin) if free < margin else None


def clean_temp_files(state_dir: str | Path) -> int:
    """Remove temp files a crash left in the state folder (thumbnails, index backups being
    written). Only the daemon writes them, and it holds the lock while it runs. Returns how many."""
    n = 0
    root = str(state_dir)
    for sub in ("thumbs", ""):
        top = os.path.join(root, sub) if sub else root
        if not os.path.isdir(top):
            continue
        walker = os.walk(top) if sub else [(top, [], os.listdir(top))]
        for dirpath, _dirs, files in walker:
            for f in files:
                if f.startswith(".") and f.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(dirpath, f))
                        n += 1
                    except OSError:
                        pass
    return n
