#!/usr/bin/env python3
"""A labelled set the engine was never tuned on, and its score.

Takes the dev corpus's unique photos (its singletons) as originals and makes copies with other
parameters than the dev corpus used: blur sigma 1.2–2, noise sigma 4–8, JPEG quality 30–45,
exposure +0.7 EV (brighter, not darker), WebP 55–70, downscales to 70% and 40% re-saved at
q80, PNG copies, EXIF stripped from every copy. Then runs `dupligone scan --json` on it and
scores it with ../shared/eval/score.py.

    python bench/unseen.py [--out /tmp/dupligone-unseen] [--n 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import require_shared  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUPLIGONE_SHARED", REPO.parent / "shared"))


def make(out: Path, n: int, seed: int = 7) -> None:
    truth = json.loads((SHARED / "datasets/dev/truth.json").read_text())
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    sources = [s for s in truth["singletons"] if s.lower().endswith((".jpg", ".jpeg"))]
    rng.shuffle(sources)
    groups, singles = [], []
    photos = out / "photos"
    for k, rel in enumerate(sources[:n]):
        im = ImageOps.exif_transpose(Image.open(SHARED / "datasets/dev/photos" / rel)).convert("RGB")
        if min(im.size) < 160:
            continue
        kind = ["degrade", "reencode", "resize"][k % 3]
        orig = f"Camera/IMG_{k:04d}.JPG"
        (photos / "Camera").mkdir(parents=True, exist_ok=True)
        im.save(photos / orig, quality=95)
        members, best = [orig], [orig]
        arr = np.asarray(im).astype(np.float32)
        copies: list[tuple[str, Image.Image, dict[str, object]]] = []
        if kind == "degrade":
            copies.append(("Shared/blur", im.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.0))), {"quality": 92}))
            noisy = np.clip(arr + nrng.normal(0, rng.uniform(4, 8), arr.shape), 0, 255).astype(np.uint8)
            copies.append(("Shared/noise", Image.fromarray(noisy), {"quality": 92}))
            copies.append(("Messages/chat", im, {"quality": rng.randint(30, 45)}))
            bright = np.clip(arr * 1.6, 0, 255).astype(np.uint8)
            copies.append(("Edited/bright", Image.fromarray(bright), {"quality": 92}))
        elif kind == "reencode":
            copies.append(("Web/copy.webp", im, {"quality": rng.randint(55, 70)}))
            copies.append(("Messages/resaved", im, {"quality": rng.randint(60, 80)}))
            copies.append(("Export/lossless.png", im, {}))
            best.append(None)  # the PNG is also acceptable; filled in below
        else:
            for f in (0.7, 0.4):
                small = im.resize((max(8, int(im.width * f)), max(8, int(im.height * f))), Image.Resampling.LANCZOS)
                copies.append((f"Shared/small{int(f * 100)}", small, {"quality": 80}))
        for name, cim, opts in copies:
            rel_name = name if "." in name.rsplit("/", 1)[-1] else name + ".jpg"
            rel_path = rel_name.replace("/", f"/{k:04d}_", 1)
            (photos / rel_path).parent.mkdir(parents=True, exist_ok=True)
            cim.save(photos / rel_path, **opts)
            members.append(rel_path)
            if rel_path.endswith(".png"):
                best[-1] = rel_path
        groups.append({"id": f"u{k:03d}", "kind": kind, "members": members, "best": [b for b in best if b]})
    # Unrelated photos to keep the grouping honest.
    for rel in sources[n : n + 60]:
        dest = photos / "Unrelated" / rel.replace("/", "_")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((SHARED / "datasets/dev/photos" / rel).read_bytes())
        singles.append(str(dest.relative_to(photos)))
    (out / "truth.json").write_text(json.dumps(
        {"version": 1, "name": "unseen", "groups": groups, "singletons": singles, "ambiguous": []}, indent=1))


def main() -> int:
    require_shared("datasets", "dev")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/dupligone-unseen")
    ap.add_argument("--n", type=int, default=60)
    args = ap.parse_args()
    out = Path(args.out)
    if not (out / "truth.json").exists():
        make(out, args.n)
    t0 = time.perf_counter()
    scan = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "scan", str(out / "photos"), "--json", "-q"],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    (out / "result.json").write_text(scan.stdout)
    sys.path.insert(0, str(SHARED / "eval"))
    from score import score  # type: ignore[import-not-found]

    s = score(str(out), json.loads(scan.stdout))
    print(f"unseen set: {s.get('photos')} photos, {seconds:.1f} s")
    for key in ("pair_precision", "pair_recall", "pair_f1", "recall_by_kind", "lost", "wrong_deletions", "best_accuracy", "best_groups"):
        print(f"  {key:16} {s.get(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
