"""``dupligoned``: the daemon, in the foreground.

One process owns the index and runs one loop: watcher events → stability check → ingest
(queue analysis) → results from the workers → index → sessions closed and clustered; scheduler
commands (rescan, re-cluster, cleanup) arrive on the same loop. Threads (watchdog, APScheduler)
only put things on queues, and signal handlers only set a flag, so every index write happens
here, in order.

The analysis workers are a child process (a huey consumer, see ``worker.py``) that dies with
the daemon. Stopping: SIGINT lets running analyses finish (bounded), SIGTERM stops them at once;
either way the index says which photos are still waiting, and the next start queues them again.
A ``kill -9`` at any moment loses nothing: index rows are committed before their task is
queued, results are applied in one transaction each, and start-up re-queues every photo still
marked ``queued`` after emptying the queue, so each photo is recorded exactly once.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from dupligoned import __version__
from dupligoned.adapters import index as index_adapter
from dupligoned.adapters import orb
from dupligoned.adapters.config import Config, find_config, load_config
from dupligoned.adapters.index import Index, is_damage, open_index
from dupligoned.adapters.state import LowSpace, StateLock, clean_temp_files, free_bytes, low_space
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.adapters.walk import is_landing_name
from dupligoned.daemon import lograte
from dupligoned.daemon.queue import Queues, make_queues
from dupligoned.daemon.watcher import RawEvent, StabilityTracker, Watcher
from dupligoned.errors import ConfigError, DupliGoneError, IndexDamaged
from dupligoned.services import cluster, library_crops, sessions, trash
from dupligoned.services.ingest import Folder, FolderScan, Ingest

log = logging.getLogger("dupligone.daemon")

IDLE_TICK_S = 0.25  # the longest the loop sleeps when nothing is due
# While photos are being analysed the loop looks for their results this often, for this long
# after the last activity: a result then reaches the index (and a session its clustering)
# within 50 ms instead of up to a whole idle tick later. An idle daemon still ticks at 0.25 s.
BUSY_TICK_S = 0.05
BUSY_WINDOW_S = 2.0
GRACEFUL_STOP_S = 15.0
PROGRESS_EVERY_S = 2.0  # how often the estimate of analysis time left is written
LIBRARY_CHECK_S = 2.0  # how often each library's root is looked at (offline / back)
DISK_CHECK_S = 2.0  # how often the state folder's free space is looked at
MAX_CRASHES = 2  # a photo whose worker died this many times is recorded as an error
# Photos analysed while others of their session still wait are matched against the library in
# batches of at least this many: a session that closes has only its last photos left to search.
EARLY_CROP_BATCH = 50
REMADE_KEY = "crop_features_remade"  # meta: the crop index holds descriptors of remade features
SCAN_STEP_S = 0.05  # a rescan walks this long a round of the loop
HOST = socket.gethostname()


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def startup_problems(cfg: Config, known: frozenset[str] = frozenset()) -> list[str]:
    """Prove the folders exist and the state folder is writable, each problem with a hint.

    A library folder in ``known`` (the index holds photos of it) may be missing: it is offline
    (a NAS share not mounted yet), not a mistake, and the daemon starts and waits for it."""
    problems = library_problems(cfg, known)
    try:
        os.makedirs(cfg.state_dir, exist_ok=True)
        if not os.access(cfg.state_dir, os.W_OK):
            raise PermissionError
    except OSError:
        problems.append(f"At 'state_dir': {cfg.state_dir} cannot be created or written; give this user access or pick another folder")
    if cfg.trash.dir:
        try:
            os.makedirs(cfg.trash.dir, exist_ok=True)
        except OSError:
            problems.append(f"At 'trash.dir': {cfg.trash.dir} cannot be created; give this user access or leave it empty")
    return problems


def library_problems(cfg: Config, known: frozenset[str] = frozenset()) -> list[str]:
    problems = []
    if not cfg.libraries:
        problems.append("At 'libraries': no library folder configured; add a [[libraries]] table with a path")
    for i, lib in enumerate(cfg.libraries):
        if lib.path in known:
            continue
        if not os.path.isdir(lib.path):
            problems.append(f"At 'libraries[{i}].path': {lib.path} is not a folder; create it, mount it, or fix the path")
        elif not os.access(lib.path, os.R_OK | os.X_OK):
            problems.append(f"At 'libraries[{i}].path': {lib.path} is not readable by this user")
    return problems


def is_disk_full(exc: BaseException) -> bool:
    """A write that failed for want of space (SQLite's SQLITE_FULL / IOERR, or ENOSPC)."""
    if isinstance(exc, sqlite3.OperationalError):
        msg = str(exc).lower()
        return "disk is full" in msg or "disk i/o error" in msg
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def offline_line(path: str, since: float, reason: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(since))
    return (f"library {path} is offline since {when} ({reason}); its photos, decisions and sessions are kept "
            "until it is back")


class Daemon:
    def __init__(self, cfg: Config, *, workers_cmd: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.workers_cmd = list(workers_cmd) if workers_cmd else [
            sys.executable, "-m", "dupligoned.daemon.worker", "--config", cfg.source, "--tied-to-parent",
        ]
        self._stop_signal: int | None = None
        self._wake = threading.Event()
        self.commands: queue.Queue[str] = queue.Queue()
        self.worker_proc: subprocess.Popen[bytes] | None = None
        self._worker_restarts: list[float] = []
        self._last_housekeeping = 0.0
        self._last_busy = 0.0
        self._scheduler: Any = None
        self.web: Any = None
        self.index: Index
        self.queues: Queues
        self.ingest: Ingest
        self.watcher: Watcher
        self.tracker = StabilityTracker(cfg.watch.stable_s)
        self.crop_store: Any = None
        self._backfill_after = -1
        self._backfill_done = False
        self._remade: bool | None = None  # meta REMADE_KEY, once read
        self._applied: list[tuple[float, int]] = []  # (when, results applied) for the estimate
        self._progress_at = 0.0
        self._close_due: float | None = None  # when the next open session falls quiet
        self.library = cluster.LibraryCache()  # the library's hashes, kept between sessions
        self._scans: list[tuple[FolderScan, float]] = []  # rescans under way (and when each began)
        self.settings = cluster.settings_from(cfg.cluster, cfg.keeper, cfg.rules)
        self.lock = StateLock(cfg.state_dir)
        self.paused: LowSpace | None = None  # analysis paused for want of space
        self.holders: dict[int, tuple[str, int]] = {}  # photo id → (host, pid) of the worker analysing it
        self._last_library_check = 0.0
        self._last_disk_check = 0.0
        self._backup: threading.Thread | None = None
        self._last_backup = 0.0

    # ------------------------------------------------------------ signals

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Signal handler: only records the wish; the loop acts on it."""
        if self._stop_signal is None:
            self._stop_signal = signum
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop_signal is not None

    # ------------------------------------------------------------ start

    def start(self) -> None:
        cfg = self.cfg
        problems = [p for p in startup_problems(cfg) if not p.startswith("At 'libraries[")]
        if problems:
            raise ConfigError(problems, cfg.source)
        if cfg.web.enabled:
            from dupligoned.web.server import check_listen

            check_listen(cfg)  # the page on the LAN without a password: refused before any work
        self.lock.acquire()  # one daemon per state folder; raises StateLocked naming the running one
        cleaned = clean_temp_files(cfg.state_dir)
        if cleaned:
            log.info("removed %d temp files a previous run left in %s", cleaned, cfg.state_dir)
        self.wait_for_space()
        if self.stopping:
            return
        try:
            self.index = open_index(cfg.index_path)
        except IndexDamaged as exc:
            raise IndexDamaged(exc.path, exc.what, exc.backup, cfg.source) from None
        known = frozenset(p for p in self.index.folder_paths().values() if self.index.has_live_photos_under(p))
        problems = library_problems(cfg, known)
        if problems:
            raise ConfigError(problems, cfg.source)
        from dupligoned.daemon.mirror_tasks import start_mirrors

        # Before any index change of this run, so that the mirrors' outbox sees every one.
        self.mirrors = start_mirrors(cfg, self.index)
        self.queues = make_queues(cfg)
        excluded = [str(cfg.thumbs_path)] + ([cfg.trash.dir] if cfg.trash.dir else [])
        self.ingest = Ingest(
            self.index, ThumbStore(cfg.thumbs_path), self.queues.enqueue,
            max_pixels=cfg.analysis.max_pixels, work_px=cfg.analysis.work_px, thumb_px=cfg.analysis.thumb_px,
            inbox=str(cfg.inbox_path), excluded=excluded,
        )
        folders = [(lib.path, lib.protected, lib.mode) for lib in cfg.libraries] + [(str(cfg.inbox_path), False, "native")]
        self.modes = {p: m for p, _, m in folders}
        self.ingest.register_folders(folders)
        self.check_libraries(starting=True)
        self.make_inbox()
        # Recovery: results that arrived before the last stop go in first; then the queue is
        # emptied and refilled from the index, which knows exactly what is still to do.
        trash.recover(self.index)  # a move to or from the trash a crash interrupted
        applied = self.drain_results(limit=None)
        self.queues.flush_analysis()
        self.index.clear_holds()  # the workers of the last run are gone
        requeued = self.ingest.requeue_all()
        if applied or requeued:
            log.info("recovered: %d results applied, %d photos queued again", applied, requeued)
        from dupligoned.adapters.crop_store import CropStore, store_path

        # Rebuilt (when missing or stale) a step at a time by the loop; the page answers meanwhile.
        self.crop_store = CropStore(store_path(cfg.index_path), self.index)
        self.crop_store.defer_merges = True  # merged when idle (``crop_index_step``), not in a session's search
        changed = cluster.mark_changed_settings(self.index, self.settings)
        if changed:
            log.info("%d sessions will be clustered again (thresholds or weights changed)", changed)
        self.start_workers()
        self.watcher = Watcher(cfg.watch.poll_interval_s, on_event=self._wake.set)
        for path, _, mode in folders:
            if path == str(cfg.inbox_path) and any(_inside(path, lib.path) for lib in cfg.libraries):
                continue  # the upload folder is inside a library: watched with it
            f = self.ingest.folder_of(path)
            if f is None or f.id not in self.ingest.offline:
                self.watcher.watch(path, mode)
        self.scan_all(first_only=not cfg.watch.startup_scan)
        from dupligoned.daemon.scheduler import start_scheduler

        self._scheduler = start_scheduler(cfg, self.commands)
        self.start_web()
        self.library.get(self.index)  # the library's hashes, read once (the page answers meanwhile)
        # What the first clustering would import (0.3-0.5 s, some 20 MB), before a session waits for it.
        import scipy.cluster.hierarchy  # noqa: F401

        import dupligoned.services.decide  # noqa: F401
        self.maybe_backup(time.time(), at_start=True)
        log.info("dupligoned %s running: %d folders, index %s", __version__, len(folders), cfg.index_path)

    def start_web(self) -> None:
        if self.cfg.web.enabled and self.web is None:
            from dupligoned.web.server import WebServer

            self.web = WebServer(self.cfg)
            self.web.start()  # a busy port is logged; the daemon goes on without its page

    # ------------------------------------------------------------ faults

    def wait_for_space(self) -> None:
        """At start: with the state disk (nearly) full, say so once, serve the page if there is an
        index to show, and wait until space returns (systemd's restart would only loop)."""
        ls = low_space(self.cfg.state_dir, self.cfg.state_min_free_mb)
        if ls is None:
            return
        log.warning("%s", ls.line())
        if os.path.exists(self.cfg.index_path):
            self.start_web()
        while ls is not None and not self.stopping:
            self._wake.wait(DISK_CHECK_S)
            self._wake.clear()
            ls = low_space(self.cfg.state_dir, self.cfg.state_min_free_mb)
        if not self.stopping:
            log.info("analysis resumed: %.0f MB free on %s", free_bytes(self.cfg.state_dir) / 2**20, self.cfg.state_dir)

    def pause(self, ls: LowSpace) -> None:
        """Stop analysis for want of space; the page stays up. ``resume`` undoes it."""
        if self.paused is not None:
            return
        self.paused = ls
        log.warning("%s", ls.line())
        self.holders.clear()  # the workers are stopped on purpose: no crash to count
        self.stop_workers(graceful=False)
        self.index.abandon_transaction()

    def resume(self) -> None:
        assert self.paused is not None
        self.paused = None
        log.info("analysis resumed: %.0f MB free on %s", free_bytes(self.cfg.state_dir) / 2**20, self.cfg.state_dir)
        # The index knows what is still to do: empty the queue and fill it again.
        self.drain_results(limit=None)
        self.queues.flush_analysis()
        self.ingest.requeue_all()
        self.start_workers()

    def check_space(self, now: float) -> None:
        if now - self._last_disk_check < DISK_CHECK_S:
            return
        self._last_disk_check = now
        ls = low_space(self.cfg.state_dir, self.cfg.state_min_free_mb)
        if ls is not None:
            self.pause(ls)
        elif self.paused is not None:
            self.resume()

    def check_libraries(self, starting: bool = False) -> None:
        """Libraries that went offline stop being watched (nothing of them is marked gone);
        libraries back online are watched and scanned again."""
        already = dict(self.ingest.offline) if starting else {}
        for f, change, reason in self.ingest.check_libraries():
            if change == "offline":
                log.warning("%s", offline_line(f.path, self.ingest.offline[f.id], reason))
                self.tracker.forget_under(f.path)
                if not starting:
                    self.watcher.unwatch(f.path)
            else:
                already.pop(f.id, None)
                log.info("library %s is back online; looking for what changed while it was away", f.path)
                if not starting:
                    self.make_inbox()
                    self.watcher.watch(f.path, self.modes.get(f.path, "auto"))
                    self.scan_folder(f)
        offline = self.index.offline_folders()
        for fid, since in already.items():  # offline since a previous run, and still
            path, _since, reason = offline.get(fid, ("?", since, ""))
            log.warning("%s", offline_line(path, since, reason))

    def make_inbox(self) -> None:
        """The upload folder, unless its library is offline: writing into an empty mount point
        would fill the disk beneath it, and make the library look back."""
        inbox = str(self.cfg.inbox_path)
        lib = next((f for f in self.ingest.folders if f.path != inbox and _inside(inbox, f.path)), None)
        if lib is not None and lib.id in self.ingest.offline:
            return
        try:
            os.makedirs(inbox, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create the upload folder %s: %s", inbox, exc.strerror or exc)

    def check_held(self) -> None:
        """Photos whose worker (on this machine) died mid-analysis: queued again at once, the crash
        counted; after ``MAX_CRASHES`` the photo is an error and its session goes on without it."""
        dead = {hp for hp in set(self.holders.values()) if hp[0] == HOST and not _alive(hp[1])}
        if not dead:
            return
        now = time.time()
        for pid, holder in list(self.holders.items()):
            if holder not in dead:
                continue
            del self.holders[pid]
            path = self.index.photo_path(pid)
            what = self.index.requeue_crashed(pid, MAX_CRASHES, now)
            if what == "requeued":
                log.warning("analysis worker %d died while analysing %s; queued again", holder[1], path)
                self.queues.enqueue(self.ingest._job(pid, str(path)))
            elif what == "error":
                log.warning("cannot analyse %s: %s", path, index_adapter.CRASHED_REASON)

    def maybe_backup(self, now: float, *, at_start: bool = False) -> None:
        """An online backup of the index in a thread of its own (WAL: the loop goes on writing)."""
        every_s = self.cfg.index_backup_every_h * 3600
        if every_s <= 0 or self.paused is not None or (self._backup is not None and self._backup.is_alive()):
            return
        dest = self.cfg.index_backup_path
        last = self._last_backup or (dest.stat().st_mtime if dest.exists() else 0.0)
        if now - last < every_s:
            return
        self._last_backup = now
        need = os.path.getsize(self.cfg.index_path) + int(self.cfg.state_min_free_mb * 2**20)
        if free_bytes(self.cfg.state_dir) < need:
            log.warning("index not backed up: %s has less than %.0f MB free (the index and the margin)",
                        self.cfg.state_dir, need / 2**20)
            return

        def run() -> None:
            t0 = time.perf_counter()
            try:
                index_adapter.backup(self.cfg.index_path, dest)
            except (sqlite3.Error, OSError, DupliGoneError) as exc:
                log.error("index backup failed: %s", exc)
                return
            log.info("index backed up to %s (%.1f MB, %.1f s)", dest, dest.stat().st_size / 2**20,
                     time.perf_counter() - t0)

        self._backup = threading.Thread(target=run, name="index-backup", daemon=True)
        self._backup.start()

    def start_workers(self) -> None:
        env = dict(os.environ)
        # The workers tie their life to ours, and check we are still there once they have: a
        # kill -9 in the second the workers take to start would otherwise leave them orphaned.
        env["DUPLIGONE_PARENT_PID"] = str(os.getpid())
        self.worker_proc = subprocess.Popen(self.workers_cmd, env=env, start_new_session=True)

    # ------------------------------------------------------------ work

    def scan_all(self, *, first_only: bool = False) -> None:
        """At start: a folder never scanned is scanned now (its first-scan session closes when
        that is done); the others, unless ``first_only``, are rescanned in steps by the loop,
        the page and sessions going on meanwhile (a restart beside a large library is ready in
        seconds, not after a walk of every file)."""
        now = time.time()
        known = []
        for f in self.ingest.folders:
            if self.stopping:
                return
            if self.index.first_scan_done_at(f.id) is not None:
                known.append(f)
                continue
            self.scan_folder(f)
            sessions.finish_first_scan(self.index, f.id, now)
        if not first_only and known:
            self.start_rescan(known)

    def start_rescan(self, folders: Sequence[Folder] | None = None) -> None:
        """Rescan the folders (all), a bounded step each round of the loop (``scan_step``): a
        rescan of a large library does not pause the loop (results, sessions, events go on)."""
        busy = {sc.folder.id for sc, _ in self._scans}
        todo = [f for f in (self.ingest.folders if folders is None else folders) if f.id not in busy]
        if todo:
            log.info("rescanning %d folders (in steps; the loop goes on)", len(todo))
        for f in todo:
            self._scans.append((FolderScan(self.ingest, f, stable_s=self.cfg.watch.stable_s,
                                           on_unstable=lambda p: self.tracker.touch(p, time.time())),
                                time.perf_counter()))

    def scan_step(self) -> bool:
        """One step of the running rescan, if any. Returns whether there was one."""
        if not self._scans:
            return False
        scan, t0 = self._scans[0]
        first = self.index.first_scan_done_at(scan.folder.id) is None
        if scan.step(SCAN_STEP_S):
            self._scans.pop(0)
            log.info("scanned %s in %.1f s (%d steps): %s", scan.folder.path, time.perf_counter() - t0, scan.steps,
                     ", ".join(f"{k} {v}" for k, v in scan.counts.items() if v))
            if first:
                sessions.finish_first_scan(self.index, scan.folder.id, time.time())
        return True

    def scan_folder(self, f: Folder) -> None:
        t0 = time.perf_counter()
        counts = self.ingest.scan_folder(f, stable_s=self.cfg.watch.stable_s,
                                         on_unstable=lambda p: self.tracker.touch(p, time.time()))
        dt = time.perf_counter() - t0
        log.info("scanned %s in %.1f s: %s", f.path, dt, ", ".join(f"{k} {v}" for k, v in counts.items() if v))

    def handle_event(self, ev: RawEvent, now: float) -> None:
        ing = self.ingest
        if ing.is_offline_path(ev.src):
            return  # events of a library that is away mean nothing until it is back
        if ev.is_dir and ev.kind in ("deleted", "moved") and ing._is_library_root_or_above(ev.src):
            self._last_library_check = 0.0  # a library's own folder went: offline, looked at now
        if ev.kind == "moved" and ev.dest is not None:
            if ev.is_dir:
                self.tracker.forget_under(ev.src)
                ing.dir_moved(ev.src, ev.dest)
                # Files under the new name we did not know (moved in from outside) are scanned.
                if ing.folder_of(ev.dest) is not None:
                    for p in _files_under(ev.dest):
                        if ing.wants(p) and not ing.index.has_live_photo(p):
                            self.tracker.touch(p, now)
                return
            self.tracker.forget(ev.src)
            if ing.index.has_live_photo(ev.src):
                ing.file_moved(ev.src, ev.dest)
            elif ing.wants(ev.dest):
                # A file renamed from a landing name (``x.jpg.part``, rsync's ``.x.jpg.Ab12Cd``)
                # is one its writer has finished: no need to wait stable_s to be sure.
                self.tracker.touch(ev.dest, now, settled=is_landing_name(os.path.basename(ev.src)))
            return
        if ev.kind == "deleted":
            if ev.is_dir:
                self.tracker.forget_under(ev.src)
                ing.dir_gone(ev.src)
            else:
                self.tracker.forget(ev.src)
                ing.file_gone(ev.src)
            return
        if ev.is_dir:
            if ev.kind == "created":
                for p in _files_under(ev.src):
                    if ing.wants(p):
                        self.tracker.touch(p, now)
            return
        if ing.wants(ev.src):
            self.tracker.touch(ev.src, now)

    def drain_results(self, limit: int | None = 500) -> int:
        n = 0
        held: list[tuple[str, int]] = []
        while limit is None or n < limit:
            payload = self.queues.take_result()
            if payload is None:
                break
            n += 1
            if payload.get("started"):  # a worker took a photo: who holds it, to notice if it dies
                try:
                    pid, holder = int(payload["photo_id"]), (str(payload["host"]), int(payload["pid"]))
                except (KeyError, ValueError, TypeError):
                    continue
                self.holders[pid] = holder
                held.append((f"{holder[0]}:{holder[1]}", pid))
                continue
            if held:
                self.index.hold(held)
                held = []
            try:
                self.holders.pop(int(payload["photo_id"]), None)
                self.ingest.apply_result(payload)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("dropping a malformed analysis result (%s): %r", exc, {k: payload.get(k) for k in ("photo_id", "path")})
        if held:
            self.index.hold(held)
        return n

    def cluster_ready(self, now: float | None = None) -> int:
        ready = sessions.ready_to_cluster(self.index, time.time() if now is None else now)
        if not ready:
            return 0
        crops = orb.crops_enabled()
        if crops:  # new photos against the library, before the sessions that hold them
            if not self.crop_store.ready:
                return 0  # the sessions wait for the crop index (``crop_index_step``)
            library_crops.search_pending(self.index, store=self.crop_store,
                                         workers=self.cfg.queue.workers or os.cpu_count() or 1)
        lib = self.library.get(self.index)
        eps = cluster.library_eps(self.index, lib, self.settings)
        for sid in ready:
            if self.stopping:
                break
            t0 = time.perf_counter()
            n = cluster.cluster_session(self.index, sid, lib, self.settings, eps=eps, crops=crops)
            state = self.index.session_token_state(sid)
            log.info("session %s clustered: %d groups (%.1f s)%s", (state[0] if state else "?")[:6] + "…", n,
                     time.perf_counter() - t0,
                     "; preliminary, the session is still open" if state and state[1] is None else "")
        _release_memory()
        return len(ready)

    def crop_search_step(self) -> bool:
        """While photos are being analysed, match those already analysed against the library once
        ``EARLY_CROP_BATCH`` of them wait, so that their session, when its last photo is in,
        searches only the rest. (``cluster_ready`` searches whatever is left.)"""
        store = self.crop_store
        if store is None or not store.ready or not orb.crops_enabled() or \
                self.index.crop_pending_count() < EARLY_CROP_BATCH or \
                not self.index.any_queued():
            return False
        library_crops.search_pending(self.index, store=store, workers=self.cfg.queue.workers or os.cpu_count() or 1)
        return True

    def note_progress(self, now: float, applied: int) -> None:
        """Keep the analysis rate over the last minute, and every few seconds while photos wait,
        the estimate of time left in ``meta`` for ``status`` and the page."""
        if applied:
            self._applied.append((now, applied))
        if not self._applied or now - self._progress_at < PROGRESS_EVERY_S:
            return
        self._progress_at = now
        self._applied = [(t, n) for t, n in self._applied if now - t <= 60.0]
        queued = self.index.queued_count()
        span = now - self._applied[0][0] if self._applied else 0.0
        rate = sum(n for _, n in self._applied) / span if span >= 1.0 else None
        with self.index.tx() as conn:
            self.index.set_meta(conn, "analysis_progress", json.dumps({
                "queued": queued, "at": now, "rate_per_s": None if rate is None else round(rate, 1),
                "eta_s": None if not rate or not queued else round(queued / rate)}))
        if not queued:
            self._applied = []

    def crop_index_step(self) -> bool:
        """One bounded step of rebuilding the crop index, when it is being rebuilt; else, when
        nothing waits, a step of merging its segments (``CropStore.merge_step``)."""
        store = self.crop_store
        if store is None:
            return False
        if store.ready:
            # Segments (a session's batches, a rebuild's blocks) are merged while nothing waits.
            if self._close_due is None and not sessions.ready_to_cluster(self.index) and \
                    not self.index.any_queued():
                return bool(store.merge_step())
            return False
        done = store.rebuild_step()
        prog = store.progress()
        with self.index.tx() as conn:
            self.index.set_meta(conn, "crop_index_progress", json.dumps(
                {"state": "ready", "photos": store.photos} if done or prog is None else
                {"state": "building", **prog, "now": time.time()}))
        return True

    def backfill_step(self, batch: int = 200) -> int:
        """Photos analysed before the crop stage existed have no features, those analysed before
        its last change (``orb.FEATURES_VERSION``) older ones: queue a few of them for analysis
        again, only while nothing else waits (new photos go first). Each photo once a run
        (``_backfill_after``); a photo whose analysis fails keeps its old figures' errors.

        The crop index keeps a remade photo's old descriptors beside its new ones (harmless but
        for their room and time): once the pass is over and everything is searched, it is
        rebuilt. ``meta.crop_features_remade`` remembers across restarts that it must be."""
        if not orb.crops_enabled() or self.index.any_queued():
            return 0
        if self._backfill_done:
            if self._remade is None:
                self._remade = self.index.get_meta(REMADE_KEY) == "1"
            store = self.crop_store
            if self._remade and store is not None and store.ready and not self.index.crop_pending_count():
                store.start_rebuild()
                with self.index.tx() as conn:
                    self.index.set_meta(conn, REMADE_KEY, "0")
                self._remade = False
            return 0
        todo = self.index.photos_needing_features(orb.FEATURES_VERSION, self._backfill_after, batch)
        self._backfill_done = len(todo) < batch  # new photos come with features: one pass a run
        if not todo:
            return 0
        self._backfill_after = todo[-1][0]
        remade = sum(old for _, old in todo)
        if remade:
            with self.index.tx() as conn:
                self.index.set_meta(conn, REMADE_KEY, "1")
            self._remade = True
        n = self.ingest.requeue_for_features([pid for pid, _ in todo])
        if n:
            log.info("crop features: %d photos queued again (%d with features of an older extraction)", n, remade)
        return n

    def run_command(self, name: str) -> None:
        if name == "rescan":
            self.start_rescan()
        elif name == "recluster":
            cluster.mark_changed_settings(self.index, self.settings)
            self.cluster_ready()
        elif name == "stuck":
            self.ingest.requeue_stuck(self.cfg.queue.stuck_after_s)
        elif name == "backup":
            self.maybe_backup(time.time())
        elif name == "cleanup":
            from dupligoned.services.cleanup import run_cleanup

            report = run_cleanup(self.index, self.cfg, dry_run=False)
            for line in report.lines():
                log.info("cleanup: %s", line)

    def check_workers(self, now: float) -> None:
        proc = self.worker_proc
        if proc is None or proc.poll() is None or self.paused is not None:
            return
        self._worker_restarts = [t for t in self._worker_restarts if now - t < 300] + [now]
        if len(self._worker_restarts) > 5:
            log.error("analysis workers keep dying (exit %s); stopping", proc.returncode)
            self.request_stop(signal.SIGTERM)
            return
        log.warning("analysis workers exited (code %s); starting them again", proc.returncode)
        self.start_workers()

    def loop_once(self, now: float | None = None) -> bool:
        """One round of the main loop. Returns whether anything was done."""
        now = time.time() if now is None else now
        self.check_space(now)
        if self.paused is not None:
            return False  # nothing is written while the state disk is full; the page stays up
        if now - self._last_library_check >= LIBRARY_CHECK_S:
            self._last_library_check = now
            self.check_libraries()
        busy = False
        events = self.watcher.drain()
        for ev in events:
            self.handle_event(ev, now)
        busy |= bool(events)
        ready = list(self.tracker.ready(now))
        if ready:
            self.ingest.files_seen(ready)
            busy = True
        applied = self.drain_results()
        busy |= applied > 0
        busy |= self.scan_step()
        self.note_progress(now, applied)
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                break
            self.run_command(cmd)
            busy = True
        if busy or now - self._last_housekeeping >= 1.0 or (self._close_due is not None and now >= self._close_due):
            self._last_housekeeping = now
            self.check_held()
            writing = self.tracker.last_change()  # a photo still being copied in holds its session open
            sessions.close_quiet_sessions(self.index, now, self.cfg.sessions.quiet_s, writing)
            self._close_due = sessions.next_quiet_close(self.index, self.cfg.sessions.quiet_s, writing)
            busy |= self.crop_search_step()
            busy |= self.cluster_ready(now) > 0
            busy |= self.crop_index_step()
            busy |= self.backfill_step() > 0
            self.check_workers(now)
            if self.mirrors.mirrors:
                self.mirrors.tick(now, analysis_busy=self.index.any_queued())
        return busy

    def loop_guarded(self, now: float) -> bool:
        """``loop_once``, with a full state disk turned into a pause instead of a crash."""
        try:
            return self.loop_once(now)
        except (sqlite3.OperationalError, OSError) as exc:
            if not is_disk_full(exc):
                raise
            ls = low_space(self.cfg.state_dir, self.cfg.state_min_free_mb)
            if ls is None and "disk i/o error" in str(exc).lower():
                raise  # an I/O error with space to spare: a failing disk, not a full one
            if ls is None:  # full for an instant (or by a write larger than the margin)
                ls = LowSpace(self.cfg.state_dir, free_bytes(self.cfg.state_dir), int(self.cfg.state_min_free_mb * 2**20))
            self.pause(ls)
            return False

    # ------------------------------------------------------------ stop

    def stop_workers(self, graceful: bool) -> None:
        proc = self.worker_proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if graceful else signal.SIGTERM)
        try:
            proc.wait(GRACEFUL_STOP_S if graceful else 5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def shutdown(self) -> None:
        graceful = self._stop_signal != signal.SIGTERM
        started = hasattr(self, "index")
        if started:
            log.info("stopping (%s)", "letting running analyses finish" if graceful else "now")
        if self.web is not None:
            self.web.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if hasattr(self, "watcher"):
            self.watcher.stop()
        self.stop_workers(graceful)
        if hasattr(self, "mirrors"):
            self.mirrors.stop()  # what is not pushed stays in the outbox for the next start
        if hasattr(self, "ingest"):
            try:
                n = self.drain_results(limit=None)
                if n:
                    log.info("applied %d last results", n)
            except (sqlite3.Error, OSError) as exc:  # a full disk or a damaged index: left for the next start
                log.warning("last results left in the queue for the next start: %s", exc)
            if self.crop_store is not None:
                self.crop_store.close()
            self.index.close()
        self.lock.release()
        if started:
            log.info("stopped")

    def idle_wait_s(self, now: float) -> float:
        """How long the loop may sleep when a round found nothing to do."""
        wait = BUSY_TICK_S if now - self._last_busy < BUSY_WINDOW_S else IDLE_TICK_S
        due = self.tracker.next_due(now)
        if due is not None:
            wait = min(wait, due + 0.005)  # just past the moment the first file turns stable
        if self._close_due is not None:
            wait = min(wait, max(0.0, self._close_due - now) + 0.005)  # a session falls quiet
        return wait

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request_stop)
        try:
            self.start()
            while not self.stopping:
                now = time.time()
                if self.loop_guarded(now):
                    self._last_busy = now
                    continue
                # A watcher event or a stop request sets _wake; otherwise sleep until the next
                # file may be stable, or a short tick while analysis is under way.
                self._wake.wait(self.idle_wait_s(time.time()))
                self._wake.clear()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise index_adapter.damaged(self.cfg.index_path, exc, self.cfg.source) from None
            raise
        finally:
            self.shutdown()


def _alive(pid: int) -> bool:
    """Is ``pid`` running (a zombie waiting for its parent to reap it is not)?"""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release_memory() -> None:
    """Give the heap the decodes of a clustering pass used back to the system (idle RSS)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _files_under(folder: str) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("watchdog", "apscheduler", "huey", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.INFO)
    lograte.install()  # a message repeated thousands of times a second is counted, not written


def run_daemon(config: str | None) -> int:
    cfg = load_config(find_config(config))
    setup_logging(cfg.log_level)
    Daemon(cfg).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dupligoned", description="Run the DupliGone daemon in the foreground.")
    ap.add_argument("--config", metavar="FILE", default=None,
                    help="config file (default: $DUPLIGONE_CONFIG, /etc/dupligone/dupligone.toml, ~/.config/dupligone/dupligone.toml)")
    ap.add_argument("--version", action="version", version=f"dupligoned {__version__}")
    args = ap.parse_args(argv)
    try:
        return run_daemon(args.config)
    except DupliGoneError as exc:
        print(f"dupligoned: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
