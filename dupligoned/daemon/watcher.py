"""Watching library folders: watchdog events in, stable files out.

watchdog's threads only put raw events on a queue; the daemon's main loop drains it (one
writer). Local folders use the native observer (inotify); network mounts, where inotify does not
see changes made by other machines, use the polling observer. A file is handed on only after
its size and mtime have not changed for ``stable_s`` (``StabilityTracker``).
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("dupligone.watch")

NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afpfs", "davfs",
    "fuse.davfs2", "fuse.rclone", "fuse.s3fs", "fuse.gvfsd-fuse", "ncpfs", "glusterfs", "fuse.glusterfs",
    "ceph", "fuse.ceph", "lustre", "fuse.smbnetfs", "fuse.cifs",
})


def mount_fs_type(path: str, mounts_file: str = "/proc/mounts") -> str | None:
    """The filesystem type of the mount holding ``path`` (None when it cannot be told)."""
    real = os.path.realpath(path)
    best, best_type = "", None
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, best_type = mnt, parts[2]
    except OSError:
        return None
    return best_type


def choose_mode(path: str, mode: str, mounts_file: str = "/proc/mounts") -> str:
    """``native`` or ``poll`` for a folder configured with ``mode`` (``auto`` looks at the mount)."""
    if mode != "auto":
        return mode
    fs = mount_fs_type(path, mounts_file)
    return "poll" if fs in NETWORK_FS else "native"


@dataclass(frozen=True)
class RawEvent:
    kind: str  # created, modified, closed, moved, deleted
    src: str
    dest: str | None
    is_dir: bool


class _Handler(FileSystemEventHandler):
    def __init__(self, out: queue.Queue[RawEvent], on_event: Callable[[], None] | None = None) -> None:
        self.out = out
        self.on_event = on_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if getattr(event, "dest_path", "") else None
        self.out.put(RawEvent(kind, src, dest, bool(event.is_directory)))
        if self.on_event is not None:
            self.on_event()


class Watcher:
    """Observers for a set of folders, all feeding one queue of ``RawEvent``."""

    def __init__(self, poll_interval_s: float, on_event: Callable[[], None] | None = None) -> None:
        """``on_event`` is called (from an observer thread) after each event is queued."""
        self.events: queue.Queue[RawEvent] = queue.Queue()
        self._handler = _Handler(self.events, on_event)
        self._native: BaseObserver | None = None
        self._poll: BaseObserver | None = None
        self.poll_interval_s = poll_interval_s
        self.modes: dict[str, str] = {}
        self._watches: dict[str, tuple[BaseObserver, Any]] = {}

    def watch(self, path: str, mode: str) -> str:
        """Start watching ``path`` recursively; returns the mode used (``native`` or ``poll``)."""
        chosen = choose_mode(path, mode)
        if chosen == "native":
            try:
                if self._native is None:
                    self._native = Observer()
                    self._native.start()
                self._watches[path] = (self._native, self._native.schedule(self._handler, path, recursive=True))
            except OSError as exc:  # inotify limits reached: polling still works
                log.warning("cannot watch %s natively (%s); polling it instead", path, exc)
                chosen = "poll"
        if chosen == "poll":
            if self._poll is None:
                self._poll = PollingObserver(timeout=self.poll_interval_s)
                self._poll.start()
            self._watches[path] = (self._poll, self._poll.schedule(self._handler, path, recursive=True))
        self.modes[path] = chosen
        log.info("watching %s (%s)", path, chosen)
        return chosen

    def unwatch(self, path: str) -> None:
        """Stop watching ``path`` (a library gone offline: events from it would mean nothing)."""
        found = self._watches.pop(path, None)
        self.modes.pop(path, None)
        if found is not None:
            obs, w = found
            try:
                obs.unschedule(w)
            except (KeyError, OSError):
                pass

    def stop(self) -> None:
        for obs in (self._native, self._poll):
            if obs is not None:
                obs.stop()
        for obs in (self._native, self._poll):
            if obs is not None:
                obs.join(timeout=5)

    def drain(self, limit: int = 10_000) -> list[RawEvent]:
        out: list[RawEvent] = []
        while len(out) < limit:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out


class StabilityTracker:
    """Files that changed recently; ``ready(now)`` yields those unchanged for ``stable_s``.

    Each candidate remembers (size, mtime_ns) and since when they have held; a change restarts
    its clock. A file that disappears is dropped. A path is tracked once however many events arrive.
    """

    def __init__(self, stable_s: float, stat: Callable[[str], os.stat_result] = os.stat) -> None:
        self.stable_s = stable_s
        self.stat = stat
        self._pending: dict[str, tuple[int, int, float]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def touch(self, path: str, now: float, *, settled: bool = False) -> None:
        """Track ``path`` from ``now``; ``settled`` files (their writer said it is done) are
        ready at once if their size and mtime still hold."""
        if settled:
            now -= self.stable_s
        try:
            st = self.stat(path)
        except OSError:
            self._pending.pop(path, None)
            return
        prev = self._pending.get(path)
        if prev is None or (prev[0], prev[1]) != (st.st_size, st.st_mtime_ns):
            self._pending[path] = (st.st_size, st.st_mtime_ns, now)

    def forget(self, path: str) -> None:
        self._pending.pop(path, None)

    def forget_under(self, folder: str) -> None:
        p = folder.rstrip(os.sep) + os.sep
        for k in [k for k in self._pending if k.startswith(p)]:
            del self._pending[k]

    def last_change(self) -> float | None:
        """When a tracked file last changed (None: none is being written)."""
        return max((since for _, _, since in self._pending.values()), default=None)

    def next_due(self, now: float) -> float | None:
        """Seconds until the first tracked file may be ready (0 if one is), None if none is tracked."""
        if not self._pending:
            return None
        return max(0.0, min(since for _, _, since in self._pending.values()) + self.stable_s - now)

    def ready(self, now: float) -> Iterable[tuple[str, os.stat_result]]:
        for path, (size, mtime, since) in list(self._pending.items()):
            if now - since < self.stable_s:
                continue
            try:
                st = self.stat(path)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                self._pending[path] = (st.st_size, st.st_mtime_ns, now)
                continue
            del self._pending[path]
            yield path, st
