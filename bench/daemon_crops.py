#!/usr/bin/env python3
"""Heavy crops in the daemon at library scale: new photos against a 100,000-photo index.

    python bench/daemon_crops.py [--library 100000] [--new 1000] [--workers 2] [--json]

Builds a real index (SQLite, the product's migrations) holding ``--library`` photos with the
synthetic features of ``bench/crops.py`` (real ORB descriptors with bits flipped, look-alikes)
stored as the daemon stores them, every one already searched, plus ``--new`` photos not yet
searched (a quarter of them planted crops of library photos). Then, each in a fresh process so
that resident memory is its own:

* ``search``: the daemon's ``library_crops.search_pending`` (streamed candidates + verification
  on ``--workers`` processes): time, pairs checked, planted crops found, false crops, and the
  process's peak resident memory above what it held before the search.
* ``resident``: what keeping a ``CropIndex`` of the whole library in the daemon would cost
  instead: its build time from the stored features and the resident memory it adds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import require_shared  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(db: Path, n_lib: int, n_new: int) -> dict[str, Any]:
    from crops import _real_descriptors, synthetic_library

    from dupligoned.adapters.index import open_index
    from dupligoned.adapters.orb import FEATURES_VERSION

    pool = _real_descriptors()
    feats, keys, planted = synthetic_library(n_lib, n_new // 4, pool, seed=1)
    plain, _, _ = synthetic_library(n_new - n_new // 4, 0, pool, seed=2)
    feats += plain
    keys += [f"new/x{k:07d}.jpg" for k in range(len(plain))]
    idx = open_index(db)
    with idx.tx() as conn:
        conn.execute("INSERT INTO sessions(id, token, kind, created_at, last_added_at) VALUES (1, 't', 'burst', 0, 0)")
        for i, (f, k) in enumerate(zip(feats, keys, strict=True)):
            pid = i + 1
            conn.execute("INSERT INTO photos(id, session_id, path, size_bytes, mtime_ns, status, first_seen_at) "
                         "VALUES (?, 1, ?, 1, 1, 'ok', 0)", (pid, "/lib/" + k))
            conn.execute("INSERT INTO photo_features(photo_id, data, crops_searched, version) VALUES (?, ?, ?, ?)",
                         (pid, f.to_bytes(), int(i < n_lib), FEATURES_VERSION))
    idx.close()
    return {"planted": [(c + 1, o + 1) for c, o in planted],
            "feature_bytes_per_photo": round(sum(len(f.to_bytes()) for f in feats) / len(feats))}


def search(db: Path, workers: int) -> dict[str, Any]:
    from dupligoned.adapters import orb  # noqa: F401  (imports as the daemon has them)
    from dupligoned.adapters.index import open_index
    from dupligoned.services import library_crops

    idx = open_index(db)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    rep = library_crops.search_pending(idx, workers=workers)
    secs = time.perf_counter() - t0
    found = [(int(r[0]), int(r[1])) for r in idx.conn.execute("SELECT crop_id, original_id FROM crop_pairs")]
    return {"search_s": round(secs, 2), "candidates_s": round(rep.candidates_s, 2), "verify_s": round(rep.verify_s, 2),
            "searched": rep.searched, "library_streamed": rep.library, "pairs_checked": rep.pairs_checked,
            "found": found, "rss_before_mb": round(rss0), "peak_above_mb": round(_peak_mb() - rss0)}


def resident(db: Path) -> dict[str, Any]:
    from dupligoned.adapters.index import open_index
    from dupligoned.core.crop_index import CropIndex
    from dupligoned.core.crops import LocalFeatures

    idx = open_index(db)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    feats = [LocalFeatures.from_bytes(bytes(r[0])) for r in idx.conn.execute(
        "SELECT data FROM photo_features ORDER BY photo_id")]
    t1 = time.perf_counter()
    index = CropIndex()
    index.add(feats)
    t2 = time.perf_counter()
    with_feats = _rss_mb()
    del feats
    return {"load_features_s": round(t1 - t0, 1), "build_index_s": round(t2 - t1, 1),
            "index_and_features_mb": round(with_feats - rss0), "index_only_mb": round(_rss_mb() - rss0),
            "index_bytes_per_photo": round(index.nbytes_per_photo)}


def main() -> int:
    require_shared("datasets", "dev", "photos")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--step", choices=["search", "resident"], help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        res = search(Path(args.db), args.workers) if args.step == "search" else resident(Path(args.db))
        print(json.dumps(res))
        return 0
    with tempfile.TemporaryDirectory(prefix="dg-bench-crops-") as tmp:
        db = Path(tmp) / "index.db"
        t0 = time.perf_counter()
        made = build(db, args.library, args.new)
        out: dict[str, Any] = {"library": args.library, "new": args.new, "workers": args.workers,
                               "build_s": round(time.perf_counter() - t0), "index_db_mb": round(db.stat().st_size / 2**20),
                               "feature_bytes_per_photo": made["feature_bytes_per_photo"]}

        def step(name: str) -> dict[str, Any]:
            r = subprocess.run([sys.executable, __file__, "--step", name, "--db", str(db), "--workers", str(args.workers)],
                               capture_output=True, text=True, check=True, env=dict(os.environ))
            res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
            return res

        s = step("search")
        want = {tuple(p) for p in made["planted"]}
        got = {tuple(p) for p in s.pop("found")}
        out.update(s, planted_crops=len(want), planted_found=len(want & got), false_crops=len(got - want))
        out.update({f"resident_{k}": v for k, v in step("resident").items()})
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:36} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
