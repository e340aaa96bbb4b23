#!/usr/bin/env python3
"""Heavy crops (issue 4): accuracy on crop corpora, no harm on dev, and cost at library scale.

    python bench/crops.py accuracy [--peers czkawka,imagededup-phash,findimagedupes] [--json]
    python bench/crops.py scale [--library 100000] [--new 1000] [--workers 2] [--json]

``accuracy`` runs the real ``dupligone scan`` on
  * the crop corpus of ``../shared/datasets/make_crops.py`` (made once, cached), with the peers
    from one run when their venv exists;
  * a crop corpus of our own (``own``: other ratios — 3:2, 2:3, 21:9, 40% off each side, a crop
    shared at 720 px — plus shifted views of one scene and photos stamped with one logo, which
    must stay apart), so the defaults are not judged on the set they were checked on;
  * the dev corpus with the stage on and off (``DUPLIGONE_NO_CROPS=1``): precision and best-shot
    accuracy must not drop.
For crop corpora it also reports how often the group keeps the original (the truth's first
member is the uncropped photo).

``scale`` times the product's own crop code (``CropLibrary``: index, candidates, verification on
a process pool) on synthetic features: real ORB descriptors from the dev corpus with bits
flipped, planted crops (a subset of an original's keypoints, moved by the crop's geometry, bits
flipped as a re-encode does, a real thumbnail of the region) and look-alikes (photos sharing a
sixth of their descriptors at unrelated places, so they are proposed and must be rejected).
Each synthetic descriptor is a real one with 20 of 128 bits flipped, so that photos drawn from
the same few thousand real descriptors are not near-copies of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, PEERS_PYTHON, SHARED, cached_corpus, load_score, require_shared, run_ours, run_peer  # noqa: E402

DEFAULT_PEERS = "czkawka,imagededup-phash,findimagedupes"


# --- corpora -------------------------------------------------------------------------------


def make_own(out: Path) -> Path:
    """Our own crop corpus (deterministic): other crop ratios, and hard negatives."""
    from PIL import Image, ImageDraw, ImageOps

    done = out / ".complete"
    if done.exists():
        return out
    dev = SHARED / "datasets" / "dev"
    truth = json.loads((dev / "truth.json").read_text())
    rnd = random.Random("dupligone-own-crops-v1")
    pool = sorted(truth["singletons"])
    rnd.shuffle(pool)
    groups: list[dict[str, Any]] = []
    singles: list[str] = []
    photos = out / "photos"

    def load(rel: str) -> Image.Image:
        return ImageOps.exif_transpose(Image.open(dev / "photos" / rel)).convert("RGB")

    def frac(im: Image.Image, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
        w, h = im.size
        return im.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))

    def aspect(im: Image.Image, ratio: float) -> Image.Image:
        w, h = im.size
        at = rnd.random()
        if w / h > ratio:
            nw = int(h * ratio)
            x = int((w - nw) * at)
            return im.crop((x, 0, x + nw, h))
        nh = int(w / ratio)
        y = int((h - nh) * at)
        return im.crop((0, y, w, y + nh))

    def save(im: Image.Image, rel: str, q: int = 90) -> str:
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        im.save(photos / rel, quality=q)
        return rel

    for i, rel in enumerate(pool[:30]):  # crops in ratios make_crops.py does not use
        im = load(rel)
        base = f"set{i:02d}"
        members = [save(im, f"{base}/DSC_{i:04d}.jpg", 95)]
        kinds = [aspect(im, rnd.choice([3 / 2, 2 / 3, 21 / 9, 5 / 4])),
                 frac(im, 0.4 * rnd.random() * 0.5, 0.2, 0.6 + 0.4 * rnd.random() * 0.5, 0.8),  # ~40% off
                 frac(im, 0.1, 0.05, 0.8, 0.75)]
        kinds[2].thumbnail((720, 720))
        for j, c in enumerate(kinds[: rnd.choice([2, 3])]):
            members.append(save(c, f"{base}/edit_{j}.jpg", rnd.randint(75, 92)))
        groups.append({"id": f"o{i:03d}", "kind": "crop", "members": members, "best": [members[0]]})
    for i, rel in enumerate(pool[30:45]):  # one scene, shifted views: neither inside the other
        im = load(rel)
        a = frac(im, 0.0, 0.0, 0.75, 0.8)
        b = frac(im, 0.25, 0.2, 1.0, 1.0)
        singles += [save(a, f"scene{i:02d}/IMG_1.jpg"), save(b, f"scene{i:02d}/IMG_2.jpg")]
    logo = load(pool[45]).resize((400, 400))
    ImageDraw.Draw(logo).rectangle((0, 0, 399, 399), outline=(255, 255, 255), width=20)
    for i, rel in enumerate(pool[46:60]):  # one logo stamped on unrelated photos, at two sizes
        im = load(rel).resize((1600, 1200))
        size = 600 if i % 2 else 420
        im.paste(logo.resize((size, size)), (800 - size // 2, 600 - size // 2))
        singles.append(save(im, f"logo/{i:02d}.jpg"))
    for rel in pool[60:]:
        singles.append(save(load(rel), f"other/{Path(rel).stem}.jpg"))
    json_truth = {"version": 1, "name": "own-crops", "groups": groups, "singletons": singles, "ambiguous": []}
    (out / "truth.json").write_text(json.dumps(json_truth, indent=1))
    done.touch()
    return out


def original_kept(corpus: Path, result: dict[str, Any]) -> tuple[int, int]:
    """(groups whose first member — the uncropped photo — is kept, groups found at all)."""
    truth = json.loads((corpus / "truth.json").read_text())
    root = os.path.realpath(corpus / "photos")
    keep = {os.path.relpath(os.path.realpath(k), root) for c in result["clusters"] for k in c.get("keep", [])}
    grouped = {os.path.relpath(os.path.realpath(m), root) for c in result["clusters"] for m in c["members"]}
    found = [g for g in truth["groups"] if g["members"][0] in grouped]
    return sum(g["members"][0] in keep for g in found), len(found)


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    score = load_score()
    rows: list[dict[str, Any]] = []

    def row(corpus: Path, name: str, secs: float, result: dict[str, Any], ours: bool) -> None:
        s = score(str(corpus), result)
        r = {"corpus": corpus.name, "tool": name, "P": s["pair_precision"], "R": s["pair_recall"],
             "F1": s["pair_f1"], "false_pairs": s["false_pairs"], "lost": s["lost"],
             "best": s["best_accuracy"], "s": round(secs, 1)}
        if ours:
            kept, found = original_kept(corpus, result)
            r["original_kept"] = f"{kept}/{found}"
        rows.append(r)

    crops = cached_corpus("crops", "make_crops.py")
    own = make_own(CACHE / "crops-own")
    dev = SHARED / "datasets" / "dev"
    for corpus in (crops, own, dev):
        secs, res = run_ours(corpus / "photos")
        row(corpus, "dupligone", secs, res, corpus != dev)
        os.environ["DUPLIGONE_NO_CROPS"] = "1"
        try:
            secs, res = run_ours(corpus / "photos")
        finally:
            del os.environ["DUPLIGONE_NO_CROPS"]
        row(corpus, "dupligone --no-crops", secs, res, corpus != dev)
    peers = [p for p in args.peers.split(",") if p]
    if peers and not PEERS_PYTHON.exists():
        print(f"peers skipped: no venv at {PEERS_PYTHON}", file=sys.stderr)
        peers = []
    for peer in peers:
        try:
            secs, res = run_peer(peer, crops / "photos")
        except SystemExit as exc:
            print(f"peer {peer} failed: {str(exc)[:300]}", file=sys.stderr)
            continue
        row(crops, peer, secs, res, False)
    return {"rows": rows}


# --- scale ---------------------------------------------------------------------------------


def _real_descriptors(limit_photos: int = 400) -> np.ndarray:
    """ORB descriptors (first 128 bits) of dev photos: the bit statistics of real photos."""
    from dupligoned.adapters.decode import decode_photo
    from dupligoned.adapters.orb import extract

    dev = SHARED / "datasets" / "dev" / "photos"
    files = sorted(p for p in dev.rglob("*") if p.is_file())[:limit_photos]
    out = []
    for p in files:
        try:
            out.append(extract(decode_photo(str(p)).work).desc)
        except Exception:  # noqa: BLE001 - a broken dev file is fine to skip here
            continue
    return np.concatenate(out)


def _flip(desc: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    d = np.unpackbits(desc, axis=1)
    pick = np.argpartition(rng.random(d.shape), bits, axis=1)[:, :bits]  # `bits` distinct per row
    np.put_along_axis(d, pick, 1 - np.take_along_axis(d, pick, axis=1), axis=1)
    return np.packbits(d, axis=1)


def synthetic_library(n: int, n_crops: int, pool: np.ndarray, seed: int):
    """(features, keys, planted crop pairs (crop id, original id)) — see the module docstring."""
    import cv2

    from dupligoned.core.crops import CropParams, quantise

    rng = np.random.default_rng(seed)
    k = CropParams().max_keypoints
    feats = []
    smooth = [cv2.resize(rng.integers(0, 256, (6, 6)).astype(np.uint8), (16, 16), interpolation=cv2.INTER_CUBIC)
              for _ in range(64)]
    for i in range(n):
        desc = _flip(pool[rng.integers(0, pool.shape[0], k)], 20, rng)
        w, h = (512, 384) if i % 3 else (384, 512)
        feats.append(quantise(rng.uniform(0, [w - 1, h - 1], (k, 2)), desc, w, h, smooth[i % 64]))
    # Look-alikes: a sixth of another photo's descriptors at unrelated places.
    for i in range(0, n - 1, 5):
        a, b = feats[i], feats[i + 1]
        share = rng.choice(k, k // 6, replace=False)
        desc = b.desc.copy()
        desc[share] = _flip(a.desc[share], 6, rng)
        feats[i + 1] = quantise(b.points(), desc, b.width, b.height, b.thumb)
    crops: list[tuple[int, int]] = []
    keys = [f"lib/{i:07d}.jpg" for i in range(n)]
    for c, o in enumerate(rng.choice(n, n_crops, replace=False).tolist()):
        orig = feats[o]
        big = rng.integers(0, 256, (orig.height, orig.width)).astype(np.uint8)
        big = cv2.GaussianBlur(cv2.resize(orig.thumb, (orig.width, orig.height)), (0, 0), 3) // 2 + big // 8
        thumb = cv2.resize(big, (16, 16), interpolation=cv2.INTER_AREA)
        feats[o] = quantise(orig.points(), orig.desc, orig.width, orig.height, thumb)
        keep = rng.uniform(0.5, 0.8)
        cw, ch = orig.width * keep, orig.height * keep
        x0, y0 = rng.uniform(0, orig.width - cw), rng.uniform(0, orig.height - ch)
        pts = orig.points()
        inside = (pts[:, 0] >= x0) & (pts[:, 0] < x0 + cw) & (pts[:, 1] >= y0) & (pts[:, 1] < y0 + ch)
        s = 511 / max(cw, ch)
        w, h = int(round(cw * s)), int(round(ch * s))
        cp = (pts[inside] - [x0, y0]) * s
        cd = _flip(orig.desc[inside], 8, rng)
        extra = k - cp.shape[0]
        cp = np.vstack([cp, rng.uniform(0, [w - 1, h - 1], (extra, 2))])
        cd = np.vstack([cd, _flip(pool[rng.integers(0, pool.shape[0], extra)], 20, rng)])
        region = big[int(y0):int(y0 + ch), int(x0):int(x0 + cw)]
        cthumb = cv2.resize(region, (16, 16), interpolation=cv2.INTER_AREA)
        feats.append(quantise(cp, cd, w, h, cthumb))
        keys.append(f"new/{c:07d}.jpg")
        crops.append((len(feats) - 1, o))
    return feats, keys, crops


def scale(args: argparse.Namespace) -> dict[str, Any]:
    from dupligoned.services.crops import CropLibrary

    pool = _real_descriptors()
    n_lib, n_new = args.library, args.new
    feats, keys, planted = synthetic_library(n_lib, n_new // 4, pool, seed=1)
    # The new photos: a quarter are crops of library photos, the rest unrelated.
    new_plain, new_keys, _ = synthetic_library(n_new - n_new // 4, 0, pool, seed=2)
    new_feats = feats[n_lib:] + new_plain
    new_keys = keys[n_lib:] + [k.replace("lib/", "new/x") for k in new_keys]
    lib_feats, lib_keys = feats[:n_lib], keys[:n_lib]
    out: dict[str, Any] = {"library": n_lib, "new": n_new, "workers": args.workers}
    with ProcessPoolExecutor(args.workers) as ex:
        def pmap(fn, jobs):  # noqa: ANN001, ANN202
            return ex.map(fn, jobs, chunksize=256)

        list(pmap(abs, range(args.workers * 4)))  # start the workers outside the timings
        # Whole library: every photo new to an empty library.
        lib = CropLibrary()
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        found = lib.match_new(lib_feats, lib_keys, pmap, t)
        out["whole_library_s"] = round(time.perf_counter() - t0, 1)
        out["whole_library_pairs_checked"] = int(t["crop_pairs"])
        out["whole_library_candidates_s"] = round(t["crop_candidates"], 1)
        out["whole_library_verify_s"] = round(t["crop_verify"], 1)
        out["whole_library_false_crops"] = len(found)  # the library holds no crops
        out["index_bytes_per_photo"] = round(lib.index.nbytes_per_photo)
        out["feature_bytes_per_photo"] = round(float(np.mean([f.nbytes for f in lib_feats])))
        # Incremental: new photos against it.
        t = {}
        t0 = time.perf_counter()
        found = lib.match_new(new_feats, new_keys, pmap, t)
        out["new_photos_s"] = round(time.perf_counter() - t0, 2)
        out["new_pairs_checked"] = int(t["crop_pairs"])
    want = {(c, o) for c, o in planted}
    got = {(a, b) if m.inner == 0 else (b, a) for a, b, m in found}
    out["planted_crops"] = len(want)
    out["planted_found"] = len(want & got)
    out["false_crops"] = len(got - want)
    return out


def main() -> int:
    require_shared("datasets", "dev")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--peers", default=DEFAULT_PEERS)
    a.add_argument("--json", action="store_true")
    s = sub.add_parser("scale")
    s.add_argument("--library", type=int, default=100_000)
    s.add_argument("--new", type=int, default=1000)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = accuracy(args) if args.cmd == "accuracy" else scale(args)
    if args.json:
        print(json.dumps(res))
    elif "rows" in res:
        cols = ["corpus", "tool", "P", "R", "F1", "false_pairs", "lost", "best", "original_kept", "s"]
        print("  ".join(f"{c:>14}" for c in cols))
        for r in res["rows"]:
            print("  ".join(f"{str(r.get(c, '')):>14}" for c in cols))
    else:
        for k, v in res.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
