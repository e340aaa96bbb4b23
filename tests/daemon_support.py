"""Helpers for the daemon tests: a real ``dupligoned`` process on a config in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import corpus

REPO = Path(__file__).resolve().parents[1]
# The photos: a labelled library drawn by tests/synth.py (see tests/corpus.py), not ../shared.
PHOTOS = corpus.PHOTOS
truth = corpus.truth
groups_of = corpus.groups_of
singletons = corpus.singletons


def write_config(tmp: Path, libs: list[Path], **tables: Any) -> Path:
    base = {
        "watch": {"stable_s": 0.5, "rescan_every_min": 0.0},
        "sessions": {"quiet_s": 1.0, "recluster_every_s": 2.0},
        "queue": {"workers": 2, "retry_delay_s": 0.2},
        # The review page has tests of its own; daemons running side by side must not race
        # for one port.
        "web": {"enabled": False},
    }
    top: dict[str, Any] = {}
    for k, v in tables.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            top[k] = v  # a top-level setting (state_min_free_mb = 16.0)
    lines = [f'state_dir = "{tmp / "state"}"'] + [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for lib in libs:
        lines += ["[[libraries]]", f'path = "{lib}"', 'mode = "native"']
    for name, table in base.items():
        lines.append(f"[{name}]")
        for k, v in table.items():
            lines.append(f"{k} = {json.dumps(v)}")
    cfg = tmp / "dupligone.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def env() -> dict[str, str]:
    """The environment for our subprocesses: this tree's package first, whatever is installed."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    return e


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dupligoned.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env())


def status(cfg: Path) -> dict[str, Any]:
    r = cli("status", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def groups(cfg: Path, token: str | None = None) -> dict[str, Any]:
    args = ["groups", "--config", str(cfg), "--json"] + (["--session", token] if token else [])
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def rows(cfg: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the index directly (what the index holds, beyond the CLI's view)."""
    conn = sqlite3.connect(str(cfg.parent / "state" / "index.db"), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def settled(cfg: Path) -> dict[str, Any] | None:
    """The status once nothing is queued and every session is clustered; else None."""
    st = status(cfg)
    if st["queued"] == 0 and st["sessions"] and all(s["state"] in ("clustered", "reviewed") for s in st["sessions"]):
        return st
    return None


class Daemon:
    """A real ``dupligoned`` process; its log goes to ``state/../daemon.log``."""

    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.log_path = cfg.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        self._let_files_settle()
        log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "dupligoned.daemon.main"]
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(cmd + ["--config", str(self.cfg)], stdout=log, stderr=subprocess.STDOUT, env=env())
        log.close()
        try:
            # "running:" is logged once the first scans of new folders are done (known folders are
            # rescanned in steps by the loop after it).
            wait_for(lambda: "running:" in self.log() or self.proc.poll() is not None, 60, "the daemon to start")  # type: ignore[union-attr]
            assert self.proc.poll() is None, self.log()
        except BaseException:
            self.__exit__()  # a daemon that did not start is not left running
            raise
        return self

    def _let_files_settle(self) -> None:
        """Photos a test wrote just before the start are older than ``watch.stable_s`` when the
        daemon's start-up scan sees them, as files already in a library are: else a quick start
        takes the newest for a file still being copied and puts it in a burst session of its own
        (two sessions where the test expects one, on a quiet machine only). Long waits
        (``stable_s`` = 30 in the landing-name test) are left to the test."""
        conf = tomllib.loads(self.cfg.read_text())
        stable_s = float(conf.get("watch", {}).get("stable_s", 5.0))
        if stable_s > 2.0:
            return
        newest = 0.0
        for lib in conf.get("libraries", []):
            for dirpath, _dirs, files in os.walk(lib["path"]):
                for name in files:
                    try:
                        newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                    except OSError:
                        pass
        wait_s = newest + stable_s + 0.2 - time.time()
        if wait_s > 0:
            time.sleep(min(wait_s, stable_s + 0.2))

    def log(self) -> str:
        """This run's log."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(getattr(self, "log_start", 0))
            return fh.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def pids_with(arg: str) -> list[int]:
    """Processes whose command line contains ``arg`` (a unique tmp path: ours only)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if arg in cmd and int(d.name) != os.getpid():
                out.append(int(d.name))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_photo(rel: str, dest_dir: Path, name: str | None = None) -> Path:
    dest = dest_dir / (name or rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(corpus.build() / "photos" / rel, dest)
    return dest


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
