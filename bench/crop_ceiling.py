#!/usr/bin/env python3
"""How many of the planted crops the crop stage's features could verify at all.

    python bench/crop_ceiling.py DIR [--keypoints 150,300,450,800] [--json]

DIR is a ``bench/library_scale.py --keep DIR`` folder. Its 150 planted crops
(``crop_NNNN.jpg``) and their originals (``LNNNN.jpg``) are decoded again from the files and
their ORB features extracted at each number of kept keypoints (``CropParams.max_keypoints``;
the product keeps 150), then checked with ``orb.match`` — no index, no competition, no stop
words: an upper bound on what the stage can find at that budget. ``crop K / original K'``
counts are given both ways (only the original's budget matters: it is what the index keeps).

Also, for each crop not verified at the largest budget, whether its pixels place it in its
original at all: normalised cross-correlation of the crop over the original at the crop's
known scale (a quarter size); ``gap`` is the best peak less the best one a tenth of the crop
away. A crop of plain sky or water fits anywhere (gap near 0): no method could tell which
photo it came from without linking every other photo of sky to it too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dupligoned.adapters import orb  # noqa: E402
from dupligoned.adapters.decode import decode_photo  # noqa: E402
from dupligoned.core.crops import CropParams  # noqa: E402


def placement_gap(original: Path, crop: Path) -> float:
    """Best NCC peak of the crop over its original less the best a tenth of the crop away."""
    o, c = cv2.imread(str(original), cv2.IMREAD_GRAYSCALE), cv2.imread(str(crop), cv2.IMREAD_GRAYSCALE)
    o = cv2.resize(o, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    c = cv2.resize(c, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    r = cv2.matchTemplate(o, c, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(r)
    rad = max(2, int(0.1 * max(c.shape)))
    r[max(0, y - rad) : y + rad + 1, max(0, x - rad) : x + rad + 1] = -1.0
    return float(best - r.max()) if (r > -1.0).any() else float(best)


def ceiling(d: Path, budgets: list[int]) -> dict[str, Any]:
    crops = sorted((d / "lib" / "new").glob("crop_*.jpg"))
    counts: dict[str, int] = {}
    missed: list[dict[str, Any]] = []
    top = max(budgets)
    for c in crops:
        o = d / "lib" / "real" / f"L{c.name[5:9]}.jpg"
        wc, wo = decode_photo(str(c)).work, decode_photo(str(o)).work
        fc = {k: orb.extract(wc, CropParams(max_keypoints=k)) for k in budgets}
        fo = {k: orb.extract(wo, CropParams(max_keypoints=k)) for k in budgets}
        for kc in budgets:
            for ko in budgets:
                if kc == ko or budgets[0] in (kc, ko):
                    key = f"crop {kc} / original {ko}"
                    counts[key] = counts.get(key, 0) + (orb.match(fc[kc], fo[ko]) is not None)
        if orb.match(fc[top], fo[top]) is None:
            missed.append({"crop": c.name, "gap": round(placement_gap(o, c), 3)})
    return {"crops": len(crops), "verified": counts, f"not_verified_at_{top}": missed,
            "placeable_gap_below_0.02": sum(m["gap"] < 0.02 for m in missed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--keypoints", default="150,300,450,800")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = ceiling(args.dir, sorted(int(k) for k in args.keypoints.split(",")))
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"planted crops: {res['crops']}")
    for k, v in res["verified"].items():
        print(f"  {k:28s} verified {v}")
    for k, v in res.items():
        if k.startswith("not_verified"):
            print(f"{k}: {len(v)}")
            for m in v:
                print(f"  {m['crop']}  placement gap {m['gap']}")
    print(f"of those, fit anywhere in their original (gap < 0.02): {res['placeable_gap_below_0.02']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
