#!/usr/bin/env python3
"""Where the planted crops of a ``bench/library_scale.py --keep DIR`` run are lost.

    python bench/crop_losses.py DIR [--param NAME=VALUE ...] [--json]

Reads the state the run left (read-only): the new photos' features as the index keeps them and
the crop index beside it, with the product's code and current ``CropParams``. For each of the
planted crops (``crop_NNNN.jpg``, of ``LNNNN.jpg``):

* ``votes``: its keypoints that found its original in the crop index (``segment_votes``, as
  the daemon searches: the whole store, stop words and all) and the original's rank among the
  crop's voted photos; ``candidate`` when it is ≥ ``min_votes`` and in the best
  ``candidates_per_photo``;
* ``pair_votes``: the same with the original alone in an index (no competition, no stop words);
* ``verified``: ``orb.match`` of the two stored features accepts it as a crop of its original;
  when not, the stage that stopped it.

And over the candidate pairs of the 1,000 new photos (each one's best-voted), those not from
one original (a crop or copy of another photo, an unrelated new photo): how many the check
accepts (false). ``--param`` changes a ``CropParams`` field for the whole split (e.g.
``--param guided_px=1.5 --param max_bucket=256``). The run's own figure (``crop_pairs_found``) can be higher: a crop is also found
through its copy among the new photos.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dupligoned.adapters import orb  # noqa: E402
from dupligoned.adapters.crop_store import CropStore, store_path  # noqa: E402
from dupligoned.adapters.index import open_index  # noqa: E402
from dupligoned.core.crop_index import CropIndex, segment_votes, top_candidates  # noqa: E402
from dupligoned.core.crops import CropParams, LocalFeatures  # noqa: E402

_NAME = re.compile(r"(L|copy_|small_|crop_)(\d{4})")


def _origin(name: str) -> int | None:
    m = _NAME.match(name)
    return int(m.group(2)) if m else (200 if name == "one_crop.jpg" else None)


def stage(a: LocalFeatures, b: LocalFeatures, params: CropParams) -> str:
    """Why ``orb.match`` does not accept the pair: the first step that stops it ('ok' if none)."""
    if orb.match(a, b, params) is not None:
        return "ok"
    if len(orb._mutual_matches(a.desc, b.desc, params.ratio)) < params.min_seed:
        return "too few mutual matches"
    if orb._fit(a, b, params) is None:
        return "too few pairs on one similarity"
    return "the crop check"


def losses(state: Path, params: CropParams, per_crop: bool = False) -> dict[str, Any]:
    db = state / "state" / "index.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT id, path FROM photos WHERE path LIKE '%/new/%' OR path LIKE '%/real/L%'").fetchall()
    con.close()
    name = {int(i): Path(p).name for i, p in rows}
    by_name = {n: i for i, n in name.items()}
    new = [i for i, p in rows if "/new/" in p]
    idx = open_index(str(db))
    feats = {k: LocalFeatures.from_bytes(v) for k, v in idx.crop_feature_blobs(new).items()}
    new = [i for i in new if i in feats]
    store = CropStore(store_path(idx.path), idx, params)
    try:
        votes = segment_votes([feats[i] for i in new], store.segments, params, np.asarray(new, np.int64))
    finally:
        store.close()
    top = top_candidates(votes, params)
    cand = [(new[a], int(b)) for a, b in zip(top.i.tolist(), top.j.tolist(), strict=True)]
    feats.update({k: LocalFeatures.from_bytes(v) for k, v in
                  idx.crop_feature_blobs({b for _, b in cand} | set(by_name.values())).items()})
    pos = {q: k for k, q in enumerate(new)}
    per: list[dict[str, Any]] = []
    for n, c in sorted((n, i) for n, i in by_name.items() if n.startswith("crop_")):
        o = by_name[f"L{_origin(n):04d}.jpg"]
        sel = votes.i == pos[c]
        vj, vd = votes.j[sel], votes.dist[sel]
        mine = vd[vj == o]
        v = int(mine[0]) if mine.size else 0
        rank = int((vd > v).sum()) + 1
        alone = CropIndex(params)
        alone.add([feats[o]])
        pv = alone.votes([feats[c]])
        per.append({"crop": n, "votes": v, "rank": rank,
                    "candidate": v >= params.min_votes and rank <= params.candidates_per_photo,
                    "pair_votes": int(pv.dist[0]) if len(pv) else 0, "verified": stage(feats[c], feats[o], params)})
    neg = [(a, b) for a, b in cand if _origin(name[a]) is None or _origin(name.get(b, "")) != _origin(name[a])]
    false = [(name[a], name.get(b, str(b))) for a, b in neg if orb.match(feats[a], feats[b], params) is not None]
    ok = [p["verified"] == "ok" for p in per]
    out = {
        "crops": len(per),
        "verified": sum(ok),
        "candidate": sum(p["candidate"] for p in per),
        "candidate_and_verified": sum(p["candidate"] and k for p, k in zip(per, ok, strict=True)),
        "pair_votes_ge_min": sum(p["pair_votes"] >= params.min_votes for p in per),
        "not_verified_by_stage": dict(collections.Counter(p["verified"] for p in per if p["verified"] != "ok")),
        "verified_not_candidate": [(p["crop"], p["votes"], p["rank"]) for p, k in zip(per, ok, strict=True)
                                   if k and not p["candidate"]],
        "other_candidate_pairs": len(neg), "other_accepted": len(false), "other_accepted_pairs": false[:10],
    }
    if per_crop:
        out["per_crop"] = per
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="a bench/library_scale.py --keep folder (after its run)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a CropParams field other than its default")
    ap.add_argument("--per-crop", action="store_true", help="also each crop's votes, rank and verdict")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = CropParams()
    changes = {}
    for spec in args.param:
        name, _, value = spec.partition("=")
        if not hasattr(base, name):
            ap.error(f"--param {spec}: CropParams has no field {name!r}")
        changes[name] = type(getattr(base, name))(value)
    res = losses(args.dir, dataclasses.replace(base, **changes), args.per_crop)
    if args.json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        if k != "per_crop":
            print(f"{k:28s} {v}")
    for p in res.get("per_crop", []):
        print(f"  {p['crop']}  votes {p['votes']:3d}  rank {p['rank']:4d}  pair votes {p['pair_votes']:3d}  {p['verified']}")


if __name__ == "__main__":
    main()
