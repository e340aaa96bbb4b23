#!/usr/bin/env python3
"""Rescan of an unchanged library: files per second (target ≥ 5,000 at 100,000 files).

    python bench/daemon_rescan.py [--files 100000] [--json]

Makes N small files named like photos in nested folders (kept in the bench cache), records them
in a fresh index as analysed photos with their real size and mtime, then times the daemon's own
rescan (``Ingest.scan_folder``: walk, one stat and one lookup per file). An unchanged library
must queue nothing; the script checks that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import CACHE  # noqa: E402
from dupligoned.adapters.index import open_index  # noqa: E402
from dupligoned.adapters.thumbs import ThumbStore  # noqa: E402
from dupligoned.services.ingest import AnalysisJob, Ingest  # noqa: E402


def make_library(n: int) -> Path:
    root = CACHE / f"rescan-{n}"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for k in range(n):
        d = root / f"{2000 + k // 10000}" / f"{(k // 200) % 50:02d}"
        if k % 200 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"IMG_{k:06d}.jpg").write_bytes(b"\xff\xd8" + k.to_bytes(4, "big"))
    marker.write_text("")
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    lib = make_library(args.files)
    made = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-rescan-"))
    try:
        index = open_index(tmp / "index.db")
        jobs: list[AnalysisJob] = []
        ing = Ingest(index, ThumbStore(tmp / "thumbs"), jobs.append, max_pixels=10**8, work_px=512, thumb_px=320)
        (folder,) = ing.register_folders([(str(lib), False, "auto")])
        first = ing.scan_folder(folder, stable_s=0)  # records every file (queued)
        assert first.get("new") == args.files, first
        with index.tx() as conn:  # as if every photo had been analysed
            conn.execute("UPDATE photos SET status = 'ok', analyses = 1")
        jobs.clear()
        os.sync()
        t1 = time.perf_counter()
        counts = ing.scan_folder(folder, stable_s=0)
        secs = time.perf_counter() - t1
        assert counts["unchanged"] == args.files and not jobs, counts
        out = {"files": args.files, "seconds": secs, "files_per_s": args.files / secs, "setup_s": made}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"rescan of an unchanged library of {args.files:,} files: {secs:.2f} s, "
              f"{out['files_per_s']:,.0f} files/s (target ≥ 5,000); nothing queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
