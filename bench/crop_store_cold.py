#!/usr/bin/env python3
"""One photo's crop search against a stored crop index read from disk, not from memory.

    python bench/crop_store_cold.py DIR [--photos N] [--batch B] [--json]

DIR is a ``bench/library_scale.py --keep DIR`` folder (``DIR`` or ``DIR.built``). Root on Linux:
the page cache is dropped before each cold search, as on a home server whose memory cannot hold
the store (8.6 GB at 1M photos). For each of the first ``N`` new photos (``lib/new``, else ``staging``): its
search cold, then the same search again (its pages now cached); then ``B`` photos at once, cold
(a batch: dense, read ahead). Also the store's opening and its first search after a cold start
(with fence posts to make when the store has none). Major page faults are the reads from disk.
The search is the daemon's (``segment_votes`` with the store's ``release`` and ``access``).
An older tree is measured with ``PYTHONPATH=<tree>`` (the script's own folder comes after it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from dupligoned.adapters import orb  # noqa: E402
from dupligoned.adapters.crop_store import CropStore, store_path  # noqa: E402
from dupligoned.adapters.decode import decode_photo  # noqa: E402
from dupligoned.adapters.index import open_index  # noqa: E402
from dupligoned.core.crop_index import segment_votes  # noqa: E402
from dupligoned.core.crops import CropParams, LocalFeatures  # noqa: E402


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def search(store: CropStore, feats: list[LocalFeatures], params: CropParams) -> dict[str, Any]:
    # ``access`` only where the code has it: an older tree (PYTHONPATH) is measured the same way.
    kw = {"access": store.access} if "access" in inspect.signature(segment_votes).parameters else {}
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    v = segment_votes(feats, store.segments, params, release=store.release, **kw)
    dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"s": round(dt, 3), "reads": r1.ru_majflt - r0.ru_majflt, "pairs": len(v)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # The run's new photos: landed in lib/new after its sessions, waiting in staging/ before.
    new_dir = next(d for d in (args.dir / "lib" / "new", args.dir / "staging") if any(d.glob("*.jpg")))
    files = sorted(new_dir.glob("*.jpg"))[: max(args.photos, args.batch)]
    params = CropParams()
    feats = [orb.extract(decode_photo(str(p)).work) for p in files]
    drop_page_cache()
    t0 = time.perf_counter()
    idx = open_index(str(args.dir / "state" / "index.db"))
    store = CropStore(store_path(idx.path), idx)
    out: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 2), "segments": len(store.segments),
                           "segment_photos": [m.photos for m in store._mapped]}
    out["first_after_cold_start"] = search(store, feats[-1:], params)
    out["one"] = []
    for f in feats[: args.photos]:
        drop_page_cache()
        cold = search(store, [f], params)
        out["one"].append({"cold": cold, "again": search(store, [f], params)})
    drop_page_cache()
    out["batch_cold"] = {"photos": args.batch, **search(store, feats[: args.batch], params)}
    store.close()
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"store: {out['segments']} segments {out['segment_photos']}, opened in {out['open_s']} s")
    f = out["first_after_cold_start"]
    print(f"first search after a cold start: {f['s']} s, {f['reads']} reads")
    for k, o in enumerate(out["one"]):
        print(f"photo {k}: cold {o['cold']['s']} s ({o['cold']['reads']} reads), again {o['again']['s']} s "
              f"({o['again']['reads']} reads), {o['cold']['pairs']} pairs")
    b = out["batch_cold"]
    print(f"{b['photos']} photos at once, cold: {b['s']} s ({b['reads']} reads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
