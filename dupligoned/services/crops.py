"""The crop stage: candidates from the feature index, verification, and what grouping needs.

``CropLibrary`` holds the features and the index of a library that grows; ``match_new`` matches
a batch of new photos against everything already there (and against each other). A one-shot
scan is the same thing with an empty library: ``find_crops``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from dupligoned.adapters import orb
from dupligoned.core.crop_index import CropIndex
from dupligoned.core.crops import (
    CROP_OF_KEY,
    CropMatch,
    CropParams,
    LocalFeatures,
    crop_links,
    is_crop_resolution,
)
from dupligoned.core.model import PhotoInfo
from dupligoned.core.neighbours import Pairs

# map(fn, jobs) or a process pool's map: how verification is spread over cores.
MapFn = Callable[..., Iterable[object]]
VERIFY_BATCH = 20_000  # pairs handed to the map at once


def _verify(pair: tuple[LocalFeatures, LocalFeatures], params: CropParams = CropParams()) -> CropMatch | None:
    return orb.match(pair[0], pair[1], params)


@dataclass
class CropLibrary:
    """A library's crop features and index. Photo ids are positions in ``features``.

    ``keys`` order photos canonically (e.g. by path), so that a pair is always verified in the
    same direction and ties fall the same way whatever order photos arrived in.
    """

    params: CropParams = CropParams()
    features: list[LocalFeatures] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    index: CropIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = CropIndex(self.params)

    def match_new(
        self,
        features: Sequence[LocalFeatures],
        keys: Sequence[str],
        map_fn: MapFn | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[tuple[int, int, CropMatch]]:
        """Add new photos and verify them against the library and each other.

        Returns (id, id, match) with ids into the grown library, the pair in key order
        (``match.inner`` 0 means the first is the crop).
        """
        t0 = time.perf_counter()
        ids = self.index.add(features)
        self.features.extend(features)
        self.keys.extend(keys)
        rank = np.argsort(np.argsort(np.array(self.keys, dtype=object), kind="stable"), kind="stable")
        cand = self.index.candidates(features, query_ids=ids, rank_key=rank)
        qa, lb = ids[cand.i], cand.j
        lo = np.where(rank[qa] < rank[lb], qa, lb)
        hi = np.where(rank[qa] < rank[lb], lb, qa)
        pairs = np.unique(np.stack([lo, hi], 1), axis=0) if lo.size else np.empty((0, 2), np.int64)
        t1 = time.perf_counter()
        verify = partial(_verify, params=self.params)
        results: list[object] = []
        for b0 in range(0, len(pairs), VERIFY_BATCH):  # bounded memory for a whole library
            jobs = [(self.features[int(a)], self.features[int(b)]) for a, b in pairs[b0 : b0 + VERIFY_BATCH]]
            results.extend((map_fn or map)(verify, jobs))
        t2 = time.perf_counter()
        if timings is not None:
            timings["crop_candidates"] = timings.get("crop_candidates", 0.0) + t1 - t0
            timings["crop_verify"] = timings.get("crop_verify", 0.0) + t2 - t1
            timings["crop_pairs"] = timings.get("crop_pairs", 0.0) + len(pairs)
        return [(int(a), int(b), r) for (a, b), r in zip(pairs, results, strict=True) if isinstance(r, CropMatch)]


@dataclass(frozen=True)
class CropResult:
    verified: Pairs  # indices into the photos given: crop–original and crop–crop links
    crop_of: dict[str, str]  # crop path -> the path of the photo it was cut from
    pairs_checked: int


def find_crops(
    photos: Sequence[PhotoInfo],
    params: CropParams = CropParams(),
    map_fn: MapFn | None = None,
    timings: dict[str, float] | None = None,
) -> CropResult:
    """Crops among ``photos`` (those with features in ``extra``), independent of their order.

    Byte-identical files are matched once; a crop's identical copies are crops too.
    """
    by_path = sorted(range(len(photos)), key=lambda k: photos[k].path)
    reps: list[int] = []
    rep_of: dict[str, int] = {}
    feats: list[LocalFeatures] = []
    for k in by_path:
        f = orb.features_of(photos[k].extra)
        if f is None or photos[k].content_hash in rep_of:
            continue
        rep_of[photos[k].content_hash] = k
        reps.append(k)
        feats.append(f)
    lib = CropLibrary(params)
    t: dict[str, float] = {} if timings is None else timings
    found = lib.match_new(feats, [photos[k].path for k in reps], map_fn, t)
    links_in: list[tuple[int, int]] = []
    outer_of: dict[int, list[int]] = {}
    for a, b, m in found:
        ci, oi = (a, b) if m.inner == 0 else (b, a)
        crop, orig = reps[ci], reps[oi]
        if not is_crop_resolution(m, (feats[ci].width, photos[crop].width), (feats[oi].width, photos[orig].width),
                                  params):
            continue  # more pixels for the scene than the "original": a zoomed second shot
        links_in.append((crop, orig))
        outer_of.setdefault(crop, []).append(orig)
    crop_of: dict[str, str] = {}
    for crop, origs in outer_of.items():
        # Of several photos a crop lies in, name the largest (then by path): the original.
        best = min(origs, key=lambda o: (-photos[o].pixels, photos[o].path))
        for k in by_path:
            if photos[k].content_hash == photos[crop].content_hash:
                crop_of[photos[k].path] = photos[best].path
    links = crop_links(links_in)
    verified = Pairs(
        np.array([a for a, _ in links], np.int64), np.array([b for _, b in links], np.int64),
        np.zeros(len(links), np.float32),
    )
    return CropResult(verified, crop_of, int(t.get("crop_pairs", 0)))


def mark_crops(photos: Sequence[PhotoInfo], crop_of: dict[str, str]) -> list[PhotoInfo]:
    """The photos with each crop's original noted in ``extra`` (read by the keeper)."""
    out = []
    for p in photos:
        if p.path in crop_of:
            p = replace(p, extra={**p.extra, CROP_OF_KEY: crop_of[p.path]})
        out.append(p)
    return out
