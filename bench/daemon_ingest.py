#!/usr/bin/env python3
"""Daemon ingest rate vs ``dupligone scan`` on the same 12 MP JPEGs, and the time from the last
file landing to its session clustered.

    python bench/daemon_ingest.py [--photos N] [--workers 2] [--json]

The photos come from ``../shared/datasets/make_throughput.py`` (made once, kept in the bench
cache). The real ``dupligoned`` runs on a temporary config (SqliteHuey, ``workers`` processes);
the photos are copied into its empty library at once, and the clock runs from the first copy to
the last analysis written in the index. Files land as careful copiers land them (written under
``name.part``, then renamed), which the daemon takes at once; ``--plain-copy`` writes them
under their final names instead, so each waits ``watch.stable_s`` (0.5 s here) first. ``dupligone scan`` runs on the same folder with the same
number of processes. Session latency = last file landed → its session ``clustered``; it includes
``watch.stable_s`` and ``sessions.quiet_s`` (printed), which a person configures.
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

from bench._common import CACHE, SHARED, require_shared  # noqa: E402

STABLE_S = 0.5
QUIET_S = 1.0


def _env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=repo + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))


def corpus(n: int) -> Path:
    for cand in (CACHE / f"throughput-{n}",):
        if cand.is_dir() and len(_photos(cand)) >= n:
            return cand
    out = CACHE / f"throughput-{n}"
    subprocess.run([sys.executable, str(SHARED / "datasets" / "make_throughput.py"), str(out), str(n)], check=True)
    return out


def _photos(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))


def _q(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def daemon_run(src: Path, workers: int, plain_copy: bool = False) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-ingest-"))
    lib = tmp / "lib"
    lib.mkdir()
    cfg = tmp / "c.toml"
    cfg.write_text(f'state_dir = "{tmp / "state"}"\nlog_level = "warning"\n[[libraries]]\npath = "{lib}"\nmode = "native"\n'
                   f"[watch]\nstable_s = {STABLE_S}\nrescan_every_min = 0.0\n[sessions]\nquiet_s = {QUIET_S}\n"
                   f"[queue]\nworkers = {workers}\n")
    files = _photos(src)
    db = tmp / "state" / "index.db"
    proc = subprocess.Popen([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)], env=_env(),
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not db.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # workers up
        t0 = time.time()
        for f in files:
            if plain_copy:
                shutil.copyfile(f, lib / f.name)
            else:  # copy to a partial name, then rename: how a careful copier lands files
                shutil.copyfile(f, lib / (f.name + ".part"))
                os.rename(lib / (f.name + ".part"), lib / f.name)
        t_landed = time.time()
        while True:
            (done,), = _q(db, "SELECT COUNT(*) FROM photos WHERE status IN ('ok', 'error')")
            if done >= len(files):
                break
            time.sleep(0.05)
        (first, last), = _q(db, "SELECT MIN(analysed_at), MAX(analysed_at) FROM photos")
        while True:
            rows = _q(db, "SELECT clustered_at, dirty FROM sessions")
            if rows and all(r[0] is not None and not r[1] for r in rows):
                break
            time.sleep(0.05)
        (clustered,), = _q(db, "SELECT MAX(clustered_at) FROM sessions")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"photos": len(files), "seconds": float(last) - t0,  # type: ignore[arg-type]
            "rate": len(files) / (float(last) - t0), "copy_s": t_landed - t0,  # type: ignore[arg-type]
            "first_analysis_s": float(first) - t0,  # type: ignore[arg-type]
            # photos/s from the first analysis to the last: the rate once under way
            "steady_rate": (len(files) - 1) / max(1e-9, float(last) - float(first)),  # type: ignore[arg-type]
            "landed_to_clustered_s": float(clustered) - t_landed,  # type: ignore[arg-type]
            "analysed_to_clustered_s": float(clustered) - float(last)}  # type: ignore[arg-type]


def scan_run(src: Path, workers: int) -> dict[str, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "scan", str(src), "--json", "-q", "--workers", str(workers)],
                   check=True, env=_env(), stdout=subprocess.DEVNULL)
    secs = time.perf_counter() - t0
    n = len(_photos(src))
    return {"photos": n, "seconds": secs, "rate": n / secs}


def main() -> int:
    require_shared("datasets", "make_throughput.py")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plain-copy", action="store_true", help="land files under their final names (each waits stable_s)")
    args = ap.parse_args()
    src = corpus(args.photos)
    scan = scan_run(src, args.workers)
    daemon = daemon_run(src, args.workers, args.plain_copy)
    out = {"photos": args.photos, "workers": args.workers, "scan_rate": scan["rate"], "daemon_rate": daemon["rate"],
           "ratio": daemon["rate"] / scan["rate"], "scan_s": scan["seconds"], "daemon_s": daemon["seconds"],
           "copy_s": daemon["copy_s"], "first_analysis_s": daemon["first_analysis_s"],
           "daemon_steady_rate": daemon["steady_rate"],
           "landed_to_clustered_s": daemon["landed_to_clustered_s"],
           "analysed_to_clustered_s": daemon["analysed_to_clustered_s"], "stable_s": STABLE_S, "quiet_s": QUIET_S}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.photos} photos of 12 MP, {args.workers} processes")
        print(f"  dupligone scan : {scan['seconds']:6.1f} s  {scan['rate']:5.1f} photos/s (process start-up included)")
        print(f"  dupligoned     : {daemon['seconds']:6.1f} s  {daemon['rate']:5.1f} photos/s (first copy → last analysis)")
        print(f"  ratio          : {out['ratio']:.2f} (target ≥ 0.80)")
        print(f"  copying took {daemon['copy_s']:.2f} s; first analysis written at {daemon['first_analysis_s']:.2f} s; "
              f"from then on {daemon['steady_rate']:.1f} photos/s")
        print(f"  last file landed → session clustered: {daemon['landed_to_clustered_s']:.1f} s "
              f"(stable_s {STABLE_S}, quiet_s {QUIET_S}); last analysis → clustered: "
              f"{daemon['analysed_to_clustered_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
