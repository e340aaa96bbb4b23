#!/usr/bin/env python3
"""Mirrors: throughput against Azurite and SecantusDB, and the daemon's ingest rate with the
mirrors on vs off (target: on ≥ 90% of off).

    python bench/mirror_throughput.py [--photos N] [--workers 2] [--json]

The 12 MP JPEGs of ``bench/daemon_ingest.py`` (its cache). For each of off / on, the real
``dupligoned`` runs on a fresh temporary config with ``workers`` analysis processes; the photos
are copied into its empty library at once and the clock runs from the first copy to the last
analysis written in the index. With mirrors on, Azurite (``$AZURITE_BIN``) and a SecantusDB
server (in this process) run on the same machine, so they compete for the same cores; the time
until both mirrors have caught up is printed too. Mirror throughput: ``dupligone mirror resync``
into an empty container / database, one mirror at a time (photos/s; each photo is its original
plus its thumbnail in Azure, and photo + session + group documents in MongoDB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import require_shared  # noqa: E402
from bench.daemon_ingest import _env, _photos, corpus  # noqa: E402

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return list(conn.execute(sql))
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _config(tmp: Path, lib: Path, workers: int, mirrors: dict[str, dict[str, str]] | None) -> Path:
    lines = [f'state_dir = "{tmp / "state"}"', "[[libraries]]", f'path = "{lib}"', 'mode = "native"',
             "[watch]", "stable_s = 0.5", "rescan_every_min = 0.0", "[sessions]", "quiet_s = 1.0",
             "[queue]", f"workers = {workers}", "[web]", "enabled = false"]
    for name, table in (mirrors or {}).items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    cfg = tmp / "dupligone.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def run_daemon(photos: list[Path], workers: int, mirrors: dict[str, dict[str, str]] | None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="dg-mirror-bench-"))
    lib = tmp / "lib"
    lib.mkdir()
    cfg = _config(tmp, lib, workers, mirrors)
    db = tmp / "state" / "index.db"
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.monotonic() + 60
        while b"running:" not in (tmp / "daemon.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((tmp / "daemon.log").read_text())
            time.sleep(0.1)
        t0 = time.perf_counter()
        for p in photos:
            shutil.copyfile(p, lib / p.name)
        n = len(photos)
        while True:
            done = _q(db, "SELECT COUNT(*) FROM photos WHERE status IN ('ok', 'error')")
            if done and done[0][0] >= n:
                break
            time.sleep(0.1)
        ingest_s = time.perf_counter() - t0
        out = {"ingest_s": ingest_s, "photos_per_s": n / ingest_s}
        if mirrors:
            while True:
                pending = _q(db, "SELECT COUNT(*) FROM mirror_outbox")
                if pending and pending[0][0] == 0:
                    break
                time.sleep(0.1)
            out["mirrors_caught_up_s"] = time.perf_counter() - t0
        return out | {"cfg": str(cfg)}  # type: ignore[dict-item]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        log.close()


def resync(cfg: Path, mirror: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "mirror", "resync", "--config", str(cfg),
                        "--mirror", mirror], capture_output=True, text=True, env=_env())
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return time.perf_counter() - t0


def main() -> int:
    require_shared("datasets", "make_throughput.py")
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--nice-azurite", action="store_true",
                    help="run Azurite at nice 19: a stand-in for a remote Azure that does not share these cores")
    args = ap.parse_args()
    photos = _photos(corpus(args.photos))[: args.photos]
    exe = os.environ.get("AZURITE_BIN") or str(Path.home() / ".cache/dupligone-azurite/node_modules/.bin/azurite-blob")
    from secantus import SecantusDBServer

    work = Path(tempfile.mkdtemp(prefix="dg-mirror-servers-"))
    port = _free_port()
    azurite = subprocess.Popen((["nice", "-n", "19"] if args.nice_azurite else []) + [exe, "--skipApiVersionCheck", "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                "--location", str(work / "azurite"), "--silent"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mongo = SecantusDBServer(storage_path=str(work / "mongo"))
    mongo.start()
    cs = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
          f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    uri = f"mongodb://127.0.0.1:{mongo.port}/?directConnection=true"
    time.sleep(1.5)
    try:
        off = run_daemon(photos, args.workers, None)
        on = run_daemon(photos, args.workers, {"azure": {"connection_string": cs, "container": "bench"},
                                               "mongo": {"uri": uri, "database": "bench"}})
        # Throughput: the same index into an empty container / database.
        cfg = Path(str(on.pop("cfg")))
        off.pop("cfg")
        text = cfg.read_text().replace('container = "bench"', 'container = "bench2"').replace(
            'database = "bench"', 'database = "bench2"')
        cfg.write_text(text)
        az_s = resync(cfg, "azure")
        mg_s = resync(cfg, "mongo")
    finally:
        azurite.terminate()
        azurite.wait(10)
        mongo.stop()
    n = len(photos)
    res = {
        "photos": n, "workers": args.workers,
        "ingest_off_photos_per_s": round(off["photos_per_s"], 2), "ingest_on_photos_per_s": round(on["photos_per_s"], 2),
        "on_vs_off": round(on["photos_per_s"] / off["photos_per_s"], 3),
        "mirrors_caught_up_s_after_first_copy": round(on["mirrors_caught_up_s"], 1),
        "ingest_on_s": round(on["ingest_s"], 1),
        "azure_resync_photos_per_s": round(n / az_s, 1), "mongo_resync_photos_per_s": round(n / mg_s, 1),
        "mean_photo_mb": round(sum(p.stat().st_size for p in photos) / n / 1e6, 2),
    }
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print(f"{k:40} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
