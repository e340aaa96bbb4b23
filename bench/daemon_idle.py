#!/usr/bin/env python3
"""The idle daemon: CPU use and resident memory (target ≤ 200 MB, near-zero CPU).

    python bench/daemon_idle.py [--photos 300] [--idle-s 30] [--json]

Starts the real ``dupligoned`` (2 workers, SqliteHuey) on a library of dev-corpus photos, waits
until everything is analysed and clustered, then measures over ``--idle-s`` seconds of nothing
happening: CPU seconds used by the daemon and by all its processes (workers included), and the
resident memory of the daemon alone and of the whole process tree (shared pages counted once
per process, so the tree figure is an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import SHARED, require_shared  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    out = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out += _tree(int(d.name))
    return out


def _cpu_s(pid: int) -> float:
    f = (Path(f"/proc/{pid}/stat")).read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    require_shared("datasets", "dev", "photos")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-idle-"))
    lib = tmp / "lib"
    src = sorted(p for p in (SHARED / "datasets" / "dev" / "photos").rglob("*") if p.is_file())[: args.photos]
    for k, p in enumerate(src):
        d = lib / f"{k // 100}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, d / f"{k:05d}{p.suffix}")
    cfg = tmp / "c.toml"
    cfg.write_text(f'state_dir = "{tmp / "state"}"\nlog_level = "warning"\n[[libraries]]\npath = "{lib}"\n'
                   '[queue]\nworkers = 2\n')
    repo = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.Popen([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL)
    db = tmp / "state" / "index.db"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if db.exists():
                conn = sqlite3.connect(str(db), timeout=30)
                q = conn.execute("SELECT COUNT(*) FROM photos WHERE status = 'queued'").fetchone()[0]
                n = conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
                s = conn.execute("SELECT COUNT(*) FROM sessions WHERE dirty = 0 AND clustered_at IS NOT NULL").fetchone()[0]
                conn.close()
                if n >= len(src) and q == 0 and s >= 1:
                    break
            time.sleep(0.5)
        time.sleep(3)
        pids = _tree(proc.pid)
        cpu0 = {p: _cpu_s(p) for p in pids}
        time.sleep(args.idle_s)
        cpu1 = {p: _cpu_s(p) for p in pids if Path(f"/proc/{p}").exists()}
        out = {
            "photos": len(src), "idle_s": args.idle_s, "processes": len(pids),
            "daemon_cpu_pct": 100 * (cpu1[proc.pid] - cpu0[proc.pid]) / args.idle_s,
            "tree_cpu_pct": 100 * sum(cpu1[p] - cpu0[p] for p in cpu1) / args.idle_s,
            "daemon_rss_mb": _rss_mb(proc.pid),
            "tree_rss_mb": sum(_rss_mb(p) for p in pids if Path(f"/proc/{p}").exists()),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"idle daemon after {out['photos']} photos, {args.idle_s:.0f} s, {out['processes']} processes:")
        print(f"  CPU: daemon {out['daemon_cpu_pct']:.2f} %, all processes {out['tree_cpu_pct']:.2f} % of one core")
        print(f"  RSS: daemon {out['daemon_rss_mb']:.0f} MB, all processes {out['tree_rss_mb']:.0f} MB (target ≤ 200 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
