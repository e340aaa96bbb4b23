#!/usr/bin/env python3
"""Throughput on 12-megapixel camera JPEGs: DupliGone vs czkawka, and the decode floor.

    python bench/throughput.py [--n 100] [--repeat 3] [--json]

Makes N JPEGs with ``../shared/datasets/make_throughput.py`` (once, under the cache folder),
reads them once so that every tool finds them in the page cache, then runs, in turn and
``--repeat`` times, ``dupligone scan DIR --json -q`` and czkawka (through ``run_peer.py``),
each timed as a whole process (start-up included), and reports the median images/s of each and
the ratio. ``--no-crops`` also times DupliGone with its crop stage off (``DUPLIGONE_NO_CROPS=1``)
to show what the ORB features cost.

The decode floor is the least any tool that looks at every pixel block must do: a greyscale
1/8-scale ``Image.draft`` decode of each file on 2 processes (a pool started beforehand, so
the figure is the decode alone).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_corpus, dupligone_command, require_shared, run_peer, run_timed  # noqa: E402


def _draft_decode(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (im.size[0] // 8, im.size[1] // 8))
        im.load()
        return im.size[0]


def decode_floor(files: list[str], processes: int = 2) -> float:
    """Images/s of a greyscale 1/8 draft decode on ``processes`` processes (pool warm)."""
    with mp.get_context("fork").Pool(processes) as pool:
        pool.map(_draft_decode, files[: processes * 2])  # start the workers, import Pillow
        t0 = time.perf_counter()
        pool.map(_draft_decode, files, chunksize=4)
        return len(files) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    require_shared("datasets", "make_throughput.py")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="number of 12-MP JPEGs (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each tool; the median is kept")
    ap.add_argument("--no-crops", action="store_true", help="also time DupliGone without its crop stage")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    folder = cached_corpus(f"throughput-{args.n}", "make_throughput.py", str(args.n))
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    n = len(files)
    for f in files:  # into the page cache, so no tool pays the first read from disk
        Path(f).read_bytes()

    ours_cmd = [*dupligone_command(), "scan", str(folder), "--json", "-q"]
    nocrop_env = dict(os.environ, DUPLIGONE_NO_CROPS="1")
    times: dict[str, list[float]] = {"dupligone": [], "czkawka": []}
    if args.no_crops:
        times["dupligone (no crops)"] = []
    for _ in range(args.repeat):  # interleaved, so a drift in machine speed hits both
        secs, out = run_timed(ours_cmd)
        if json.loads(out)["photos"] != n:
            raise SystemExit(f"dupligone analysed {json.loads(out)['photos']} of {n} photos")
        times["dupligone"].append(secs)
        if args.no_crops:
            times["dupligone (no crops)"].append(run_timed(ours_cmd, env=nocrop_env)[0])
        times["czkawka"].append(run_peer("czkawka", folder)[0])
    floor = decode_floor(files)

    load = os.getloadavg()[0]  # other work on the machine skews every figure here; say so
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    ratio = rate["dupligone"] / rate["czkawka"]
    report = {"images": n, "images_per_s": {k: round(v, 1) for k, v in rate.items()},
              "seconds": {k: [round(s, 2) for s in v] for k, v in times.items()},
              "ratio_vs_czkawka": round(ratio, 2), "decode_floor_images_per_s": round(floor, 1),
              "fraction_of_floor": round(rate["dupligone"] / floor, 2),
              "load_average_1min": round(load, 2), "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{n} JPEGs 4032x3024 in {folder}; median of {args.repeat} runs, whole process;"
          f" {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(f"{'tool':26} {'images/s':>9}  {'seconds (each run)':>18}")
    for k in times:
        print(f"{k:26} {rate[k]:9.1f}  {' '.join(f'{s:.2f}' for s in times[k]):>18}")
    print(f"{'decode floor (2 procs)':26} {floor:9.1f}  greyscale 1/8 draft only, pool warm")
    print(f"dupligone / czkawka = {ratio:.2f}x; dupligone / decode floor = {rate['dupligone'] / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
