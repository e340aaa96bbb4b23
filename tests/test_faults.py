"""The faults a home server meets, each against the real daemon: a library that goes offline and
comes back on another device, a worker killed mid-analysis, a second daemon on one state folder,
a damaged index, a full state disk. Photos are drawn at run time (``tests/synth.py``), not read from a corpus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import synth
from tests.daemon_support import (
    Daemon,
    cli,
    env,
    free_port,
    groups,
    rows,
    settled,
    status,
    wait_for,
    write_config,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounts a tmpfs (needs root)")


# ---------------------------------------------------------------- photos

def write_pair(folder: Path, seed: int) -> tuple[Path, Path]:
    """An original and a smaller re-encoded copy of it: one group of two."""
    folder.mkdir(parents=True, exist_ok=True)
    im = synth.scene(seed, size=(800, 600))
    a = synth.save(im, folder / f"scene{seed}.jpg", quality=92)
    b = synth.save(synth.resize(im, 400), folder / f"scene{seed}_small.jpg", quality=70)
    return a, b


def write_slow(path: Path) -> Path:
    """A 12-MP PNG of noise: about a second of analysis, time to kill the worker holding it."""
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(path, compress_level=0)
    return path


def lines_with(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


# ---------------------------------------------------------------- an offline library

def _decide(cfg: Path, token: str, photo_id: int, action: str) -> None:
    """A decision through the review service, as the page makes it."""
    code = ("import sys; from dupligoned.adapters.index import open_index; from dupligoned.services import review as rv; "
            "i = open_index(sys.argv[1]); rv.decide(i, sys.argv[2], int(sys.argv[3]), sys.argv[4]); i.close()")
    subprocess.run([sys.executable, "-c", code, str(cfg.parent / "state" / "index.db"), token, str(photo_id), action],
                   check=True, env=env(), timeout=60)


def _snapshot(cfg: Path) -> dict[str, object]:
    return {
        "photos": [tuple(r) for r in rows(cfg, "SELECT id, path, status, analyses, content_hash, session_id FROM photos ORDER BY id")],
        "decisions": [tuple(r) for r in rows(cfg, "SELECT session_id, photo_id, action FROM decisions ORDER BY photo_id")],
        "sessions": [tuple(r) for r in rows(cfg, "SELECT id, token FROM sessions ORDER BY id")],
    }


@needs_root
def test_a_library_renamed_away_and_back_on_another_device_keeps_everything(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for seed in (1, 2, 3):
        write_pair(lib / "2024", seed)
    cfg = write_config(tmp_path, [lib], cleanup={"gone_photo_days": 0.0, "reviewed_session_days": 0.0},
                       trash={"retention_days": 0.0})
    mounted = False
    try:
        with Daemon(cfg) as d:
            st = wait_for(lambda: (s := settled(cfg)) and s["photos"] == 6 and s, 90, "the library to be grouped")
            token = st["sessions"][0]["token"]
            assert st["sessions"][0]["groups"] == 3
            photo = {Path(r["path"]).name: int(r["id"]) for r in rows(cfg, "SELECT id, path FROM photos")}
            _decide(cfg, token, photo["scene1_small.jpg"], "split")  # "not a duplicate"
            _decide(cfg, token, photo["scene2_small.jpg"], "keep")
            before = _snapshot(cfg)
            assert len(before["decisions"]) == 2  # type: ignore[arg-type]
            # The split one is out of its group once the daemon has grouped the session again
            # (a split marks it dirty; the count is of the groups written).
            wait_for(lambda: status(cfg)["sessions"][0]["groups"] == 2, 30, "the split photo out of its group")
            n_groups = 2

            # The share drops: the library's folder is renamed away.
            away = tmp_path / "lib.away"
            os.rename(lib, away)
            wait_for(lambda: lines_with(d.log(), f"library {lib} is offline since"), 20, "the offline line in the log")
            st = status(cfg)
            assert any(f"library {lib} is offline since" in n for n in st["notices"]), st["notices"]
            assert st["offline"][0]["path"] == str(lib)
            assert st["sessions"][0]["photos"] == 6 and st["sessions"][0]["groups"] == n_groups, st["sessions"]
            # A cleanup that would forget every vanished row at once touches none of them.
            r = cli("cleanup", "--config", str(cfg), "--json")
            assert r.returncode == 0, r.stderr
            rep = json.loads(r.stdout)
            assert rep["photos_vanished"] == [] and rep["photos_forgotten"] == [], rep
            assert _snapshot(cfg) == before

        # A restart while it is still away: the daemon starts and waits for it.
        with Daemon(cfg) as d:
            assert lines_with(d.log(), f"library {lib} is offline since"), d.log()
            assert not lib.exists(), "nothing is written where the library was (its upload folder neither)"
            r = cli("status", "--config", str(cfg))
            assert f"library {lib} is offline since" in r.stdout, r.stdout

            # It comes back as another filesystem (a remount: new device and inode numbers).
            lib.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(lib)], check=True)
            mounted = True
            shutil.copytree(away, lib, dirs_exist_ok=True, copy_function=shutil.copy2)
            assert os.stat(lib).st_dev != os.stat(away).st_dev
            wait_for(lambda: lines_with(d.log(), f"library {lib} is back online"), 20, "the library to be back")
            wait_for(lambda: lines_with(d.log(), f"scanned {lib}"), 20, "the library to be scanned")
            st = wait_for(lambda: settled(cfg), 60, "the session to settle")
            after = _snapshot(cfg)
            assert after == before  # every row, figure count (nothing analysed again), decision, session
            assert st["offline"] == [] and not st["notices"]
            assert st["sessions"][0]["token"] == token and st["sessions"][0]["groups"] == n_groups
            devs = {int(r[0]) for r in rows(cfg, "SELECT DISTINCT dev FROM photos")}
            assert devs == {os.stat(lib).st_dev}  # identity follows the file to its new device
            assert "analyses" not in d.log() and "cannot analyse" not in d.log()

            # The mount goes (an empty mount point): offline again, nothing gone.
            subprocess.run(["umount", str(lib)], check=True)
            mounted = False
            wait_for(lambda: lines_with(d.log(), "(its folder is empty)"), 20, "the empty mount point to be seen")
            time.sleep(2.5)  # a library check and more
            assert _snapshot(cfg) == before
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(lib)], check=False)


# ---------------------------------------------------------------- a dead worker

def _holder(cfg: Path, name: str) -> int | None:
    got = rows(cfg, "SELECT worker FROM photos WHERE path LIKE ? AND status = 'queued'", (f"%{name}",))
    if got and got[0]["worker"]:
        return int(str(got[0]["worker"]).rsplit(":", 1)[1])
    return None


def _kill_holder(cfg: Path, name: str, not_pid: int | None = None) -> int:
    pid = wait_for(lambda: (p := _holder(cfg, name)) and p != not_pid and p, 60, f"a worker to take {name}", every=0.02)
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def test_a_worker_killed_mid_analysis_has_its_photo_queued_again_at_once(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib], queue={"workers": 1})
    with Daemon(cfg) as d:
        incoming = tmp_path / "incoming"
        write_pair(incoming, 11)
        write_slow(incoming / "big.png")
        shutil.copytree(incoming, lib / "new")
        killed = _kill_holder(cfg, "big.png")
        t_kill = time.monotonic()
        st = wait_for(lambda: (s := settled(cfg)) and s["photos"] == 3 and s, 30, "the session to be grouped")
        took = time.monotonic() - t_kill
        assert took < 30
        assert lines_with(d.log(), f"analysis worker {killed} died while analysing {lib / 'new' / 'big.png'}; queued again")
        (row,) = rows(cfg, "SELECT status, attempts, worker FROM photos WHERE path LIKE '%big.png'")
        assert (row["status"], row["attempts"], row["worker"]) == ("ok", 1, None)
        assert st["errors"] == 0 and st["sessions"][0]["groups"] == 1
        assert "Traceback" not in d.log()


def test_a_photo_that_kills_its_worker_twice_is_an_error_and_its_session_goes_on(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib], queue={"workers": 1})
    with Daemon(cfg) as d:
        incoming = tmp_path / "incoming"
        write_pair(incoming, 12)
        write_slow(incoming / "crash.png")
        shutil.copytree(incoming, lib / "new")
        first = _kill_holder(cfg, "crash.png")
        _kill_holder(cfg, "crash.png", not_pid=first)
        st = wait_for(lambda: (s := settled(cfg)) and s["photos"] + s["errors"] == 3 and s, 60, "the session to go on")
        assert st["errors"] == 1 and st["sessions"][0]["groups"] == 1
        (err,) = st["recent_errors"]
        assert err["path"].endswith("crash.png") and "crashed the decoder" in err["reason"]
        assert len(lines_with(d.log(), "crashed the decoder")) == 1


# ---------------------------------------------------------------- one daemon per state folder

def test_a_second_daemon_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_pair(lib, 21)
    cfg = write_config(tmp_path, [lib])
    with Daemon(cfg) as d:
        wait_for(lambda: settled(cfg), 60, "the first daemon to settle")
        assert d.proc is not None
        r = subprocess.run([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60, env=env())
        assert r.returncode == 2
        assert r.stderr.strip().count("\n") == 0, r.stderr
        assert f"pid {d.proc.pid}" in r.stderr and "already running" in r.stderr
        assert r.stdout == ""
        # The first one goes on untouched.
        assert d.proc.poll() is None
        write_pair(lib / "more", 22)
        wait_for(lambda: (s := settled(cfg)) and s["photos"] == 4, 60, "the first daemon to take new photos")
    # A daemon stopped (even by kill -9) leaves no lock behind.
    d2 = Daemon(cfg).start()
    d2.kill9()
    with Daemon(cfg):
        pass


# ---------------------------------------------------------------- a damaged index

def _damage(index: Path) -> None:
    for extra in ("-wal", "-shm"):
        Path(str(index) + extra).unlink(missing_ok=True)
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])


def test_a_damaged_index_gives_one_line_and_exit_2_and_can_be_restored_or_rebuilt(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for seed in (31, 32):
        write_pair(lib, seed)
    cfg = write_config(tmp_path, [lib])
    state = tmp_path / "state"
    index = state / "index.db"
    with Daemon(cfg) as d:
        wait_for(lambda: (s := settled(cfg)) and s["photos"] == 4, 60, "the library to be grouped")
        # The backup at start was taken before the photos came; the next one (here: at the next start)
        # holds them.
        wait_for(lambda: lines_with(d.log(), "index backed up to"), 20, "the first backup")
    os.utime(state / "index.backup.db", (0, 0))  # as if it were old: due again at the next start
    with Daemon(cfg) as d:
        wait_for(lambda: lines_with(d.log(), "index backed up to"), 20, "a backup with the photos")
    _damage(index)

    commands = [["status"], ["groups", "--json"], ["cleanup", "--dry-run"]]
    for args in commands:
        r = cli(*args, "--config", str(cfg))
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1, (args, r.stderr)
        assert "is damaged" in r.stderr and str(state / "index.backup.db") in r.stderr, r.stderr
        assert f"dupligone index restore --config {cfg}" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env())
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is damaged" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    r = cli("web", "--config", str(cfg), timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is damaged" in r.stderr, r.stderr

    r = cli("index", "restore", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert list(state.glob("index.damaged-*.db")), "the damaged index is kept aside"
    st = status(cfg)
    assert st["photos"] == 4 and st["sessions"][0]["groups"] == 2

    _damage(index)
    r = cli("index", "rebuild", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "kept" in r.stdout or "new, empty index" in r.stdout, r.stdout
    with Daemon(cfg):
        wait_for(lambda: (s := settled(cfg)) and s["photos"] == 4 and s, 90, "the rebuilt index to be grouped")
        clusters = [set(c["members"]) for c in groups(cfg)["clusters"]]
        for seed in (31, 32):
            pair = {str(lib / f"scene{seed}.jpg"), str(lib / f"scene{seed}_small.jpg")}
            assert any(pair <= c for c in clusters), clusters


# ---------------------------------------------------------------- a full state disk

def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def _fill(path: Path) -> None:
    """Write until the filesystem is full (ENOSPC)."""
    with open(path, "wb") as fh:
        block = b"\0" * (1 << 20)
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError:
            pass
    try:
        with open(path, "ab") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass


@needs_root
def test_a_full_state_disk_pauses_analysis_and_resumes_with_the_page_up(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_pair(lib, 41)
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(state)], check=True)
    try:
        stale = state / "thumbs" / "ab" / ".abcdef.jpg.4242.tmp"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"")
        port = free_port()
        cfg = write_config(tmp_path, [lib], state_min_free_mb=16.0, web={"enabled": True, "port": port})
        with Daemon(cfg) as d:
            assert not stale.exists(), "temp files of a previous run are cleaned at start"
            wait_for(lambda: (s := settled(cfg)) and s["photos"] == 2, 60, "the library to be grouped")
            filler = state / "filler"
            _fill(filler)
            wait_for(lambda: lines_with(d.log(), "analysis paused: only"), 20, "the pause line")
            write_pair(lib / "new", 42)  # arrives while the disk is full
            time.sleep(3)
            assert d.proc is not None and d.proc.poll() is None, d.log()
            code, body = _get(f"http://127.0.0.1:{port}/healthz")
            assert code == 200
            code, page = _get(f"http://127.0.0.1:{port}/")
            assert code == 200 and "analysis paused: only" in page
            r = cli("status", "--config", str(cfg))
            assert r.returncode == 0 and "analysis paused: only" in r.stdout, r.stdout + r.stderr
            assert status(cfg)["photos"] == 2

            filler.unlink()
            wait_for(lambda: lines_with(d.log(), "analysis resumed"), 20, "the resume line")
            wait_for(lambda: (s := settled(cfg)) and s["photos"] == 4, 60, "the new photos to be grouped")
            log = d.log()
            assert len(lines_with(log, "analysis paused: only")) == 1, log
            assert "Traceback" not in log, log
            assert not status(cfg)["notices"]
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


# ---------------------------------------------------------------- unreadable files

def test_a_file_recorded_unreadable_is_retried_when_a_rescan_can_read_it(tmp_path: Path) -> None:
    from dupligoned.adapters.index import open_index
    from dupligoned.adapters.thumbs import ThumbStore
    from dupligoned.services.ingest import AnalysisJob, Ingest

    lib = tmp_path / "lib"
    a, b = write_pair(lib, 51)
    jobs: list[AnalysisJob] = []
    idx = open_index(tmp_path / "index.db")
    ing = Ingest(idx, ThumbStore(tmp_path / "thumbs"), jobs.append, max_pixels=10**8, work_px=512, thumb_px=320)
    (folder,) = ing.register_folders([(str(lib), False, "native")])
    assert ing.scan_folder(folder, stable_s=0)["new"] == 2
    for j in list(jobs):
        st = os.stat(j.path)
        reason = "cannot read: Permission denied" if j.path == str(a) else "not an image"
        ing.apply_result({"photo_id": j.photo_id, "path": j.path, "ok": False, "error": reason,
                          "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    jobs.clear()
    counts = ing.scan_folder(folder, stable_s=0)
    # Only the unreadable one is tried again (its file is unchanged: size and mtime alone would not).
    assert counts["readable again"] == 1 and [j.path for j in jobs] == [str(a)]
    assert idx.scalar("SELECT status FROM photos WHERE path = ?", (str(a),)) == "queued"
    assert idx.scalar("SELECT status FROM photos WHERE path = ?", (str(b),)) == "error"
    idx.close()


def test_a_passing_read_failure_logs_no_traceback_while_it_is_retried() -> None:
    import logging

    from dupligoned.daemon.worker import _QuietRetries
    from dupligoned.services.ingest import TransientError

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord("huey", logging.ERROR, __file__, 1, "Unhandled exception in task %s.", ("t",),
                                     sys.exc_info())

    quiet = _QuietRetries()
    assert not quiet.filter(record(TransientError("/x.jpg: [Errno 5] Input/output error")))
    assert quiet.filter(record(ValueError("a real bug is still logged")))
