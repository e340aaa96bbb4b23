#!/usr/bin/env python3
"""Throughput on camera RAWs against the JPEG figure: the same 12-megapixel photos as JPEGs, as
DNGs with an embedded preview (read from the preview), and as DNGs without one (developed by
libraw), each scanned by DupliGone; and czkawka on the same files where it reads them.

    python bench/raw_throughput.py [--n 40] [--repeat 3] [--preview-px 1620] [--json]

The JPEGs are ``../shared/datasets/make_throughput.py``'s (4032×3024, quality 90). Each is written
once as a DNG (12-bit RGGB mosaic of its pixels, with ``pidng``, like the tests' DNGs: see
``tests/library_files.py``), in two folders: one with a ``--preview-px`` JPEG preview embedded
(1620 px is what many cameras embed beside a full-size one; the scan's analysis needs 512), one
without. All files are read once first so no tool pays the first read from disk. Every run is
a whole process (start-up included); runs are interleaved so a drift in machine speed hits
every set alike; the median is reported. czkawka's count of files it grouped or read is shown:
a tool that cannot read RAWs finds no group among them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import CACHE, cached_corpus, dupligone_command, run_peer, run_timed  # noqa: E402


def _raw_sets(jpegs: list[Path], preview_px: int) -> dict[str, Path]:
    from tests.library_files import save_dng

    n = len(jpegs)
    out = {"dng+preview": CACHE / f"raw-throughput-{n}-preview{preview_px}", "dng (demosaic)": CACHE / f"raw-throughput-{n}-bare"}
    todo = [k for k, d in out.items() if not (d / ".complete").exists()]
    if todo:
        print(f"writing {n} DNGs into {', '.join(str(out[k]) for k in todo)} (once) ...", file=sys.stderr)
        for d in (out[k] for k in todo):
            d.mkdir(parents=True, exist_ok=True)
        for j in jpegs:
            rgb = np.asarray(Image.open(j).convert("RGB"))
            for k in todo:
                save_dng(out[k] / (j.stem + ".DNG"), rgb, taken="2024:05:01 10:00:00",
                         preview_px=preview_px if k == "dng+preview" else 0)
        for k in todo:
            (out[k] / ".complete").touch()
    return out


def peer_reads_dng() -> bool:
    """Does czkawka read these DNGs at all? Two DNGs (with and without preview) and a JPEG of
    one picture: a tool that decodes DNG groups a DNG with the JPEG."""
    import tempfile

    from tests.library_files import save_dng, save_jpeg, scene

    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        rgb = scene(1200, 800, 9)
        save_dng(d / "A.DNG", rgb, preview_px=1200)
        save_dng(d / "B.DNG", rgb)
        save_jpeg(d / "C.JPG", rgb)
        save_jpeg(d / "D.JPG", rgb, quality=80)
        _, out = run_peer("czkawka", d)
        return any(m.endswith(".DNG") for c in out.get("clusters", []) for m in c["members"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="number of 12-MP photos (default 40)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the median is kept")
    ap.add_argument("--preview-px", type=int, default=1620, help="long edge of the embedded preview")
    ap.add_argument("--no-peer", action="store_true", help="skip czkawka")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    jpeg_dir = cached_corpus(f"throughput-{args.n}", "make_throughput.py", str(args.n))
    jpegs = sorted(p for p in jpeg_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    sets = {"jpeg": jpeg_dir, **_raw_sets(jpegs, args.preview_px)}
    n = len(jpegs)
    mb = {k: sum(p.stat().st_size for p in d.iterdir() if not p.name.startswith(".")) / 1e6 for k, d in sets.items()}
    for d in sets.values():  # into the page cache
        for p in d.iterdir():
            p.read_bytes()

    cmd = [*dupligone_command(), "scan"]
    ours: dict[str, list[float]] = {k: [] for k in sets}
    peer: dict[str, list[float]] = {k: [] for k in sets}
    peer_found: dict[str, int] = {}
    for _ in range(args.repeat):
        for k, d in sets.items():
            secs, out = run_timed([*cmd, str(d), "--json", "-q"])
            doc = json.loads(out)
            if doc["photos"] != n:
                raise SystemExit(f"dupligone analysed {doc['photos']} of {n} photos in {d}: {doc['errors'][:3]}")
            ours[k].append(secs)
            if not args.no_peer:
                t0 = time.perf_counter()
                psecs, pout = run_peer("czkawka", d)
                peer[k].append(psecs or time.perf_counter() - t0)
                peer_found[k] = sum(len(c["members"]) for c in pout.get("clusters", []))
    reads = None if args.no_peer else peer_reads_dng()
    load = os.getloadavg()[0]
    rate = {k: n / statistics.median(v) for k, v in ours.items()}
    prate = {k: n / statistics.median(v) for k, v in peer.items() if v}
    report = {
        "photos": n, "preview_px": args.preview_px, "megabytes": {k: round(v) for k, v in mb.items()},
        "dupligone_images_per_s": {k: round(v, 1) for k, v in rate.items()},
        "dupligone_seconds": {k: [round(s, 2) for s in v] for k, v in ours.items()},
        "vs_jpeg": {k: round(v / rate["jpeg"], 2) for k, v in rate.items()},
        "czkawka_images_per_s": {k: round(v, 1) for k, v in prate.items()},
        "czkawka_files_in_groups": peer_found, "czkawka_reads_dng": reads,
        "load_average_1min": round(load, 2), "cores": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{n} photos 4032x3024; median of {args.repeat} runs, whole process; {os.cpu_count()} cores, "
          f"load average {load:.1f} at the end")
    print(f"{'set':16} {'MB':>6} {'dupligone/s':>11} {'vs JPEG':>8} {'czkawka/s':>10} {'czk grouped':>11}  dupligone seconds")
    for k in sets:
        print(f"{k:16} {mb[k]:6.0f} {rate[k]:11.1f} {rate[k] / rate['jpeg']:8.2f} "
              f"{prate.get(k, float('nan')):10.1f} {peer_found.get(k, -1):11d}  "
              + " ".join(f"{s:.2f}" for s in ours[k]))
    if reads is not None:
        print(f"czkawka reads these DNGs: {'yes' if reads else 'no (it groups none of them with their JPEG: its figure on DNGs is not a decode)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
