"""The burst stage: frames one camera took of one view seconds apart join one group.

``links`` takes the candidates ``core.bursts.candidate_pairs`` finds (one camera, close in time),
checks each with the crop stage's local features (``adapters.orb.is_burst``), and returns the
pairs the grouping joins whatever their hash distance. The scan reads the features from each
photo's ``extra``; the daemon from the index (``Index.crop_feature_blobs``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence

from dupligoned.adapters import orb
from dupligoned.adapters.index import Index
from dupligoned.core import bursts
from dupligoned.core.crops import LocalFeatures
from dupligoned.core.model import PhotoInfo
from dupligoned.core.originals import capture_seconds

Features = Callable[[Sequence[int]], Mapping[int, LocalFeatures]]


def links(photos: Sequence[PhotoInfo], features: Features,
          params: bursts.BurstParams = bursts.BurstParams()) -> list[tuple[int, int]]:
    """Sorted (lo, hi) index pairs of ``photos`` that are frames of one burst (every pair of
    each burst). ``features`` gives the local features of the photos at the indices asked."""
    candidates = bursts.candidate_pairs(photos, params)
    if not candidates:
        return []
    feats = features(sorted({k for pair in candidates for k in pair}))
    return bursts.burst_links([(a, b) for a, b in candidates
                               if a in feats and b in feats and orb.is_burst(feats[a], feats[b], params)])


def features_in_extra(photos: Sequence[PhotoInfo]) -> Features:
    """The features the scan's analysis left in each photo's ``extra``."""
    def get(ks: Sequence[int]) -> dict[int, LocalFeatures]:
        found = {k: orb.features_of(photos[k].extra) for k in ks}
        return {k: f for k, f in found.items() if f is not None}
    return get


def features_in_index(index: Index, ids: Sequence[int]) -> Features:
    """The features the index holds for the photos whose ids are ``ids`` (by position)."""
    def get(ks: Sequence[int]) -> dict[int, LocalFeatures]:
        blobs = index.crop_feature_blobs(ids[k] for k in ks)
        at = {ids[k]: k for k in ks}
        return {at[i]: LocalFeatures.from_bytes(b) for i, b in blobs.items()}
    return get


def partners(index: Index, ids: Iterable[int], params: bursts.BurstParams = bursts.BurstParams()) -> set[int]:
    """Photos of the library the same camera took within ``window_s`` of any of ``ids`` (the
    candidates for their bursts, wherever their session), ``ids`` left out."""
    spans = set()
    for camera, taken in index.captures(ids).values():
        t = capture_seconds(taken)
        if t is None:
            continue
        first, last = (dt.datetime.fromtimestamp(t + d, dt.UTC).strftime("%Y:%m:%d %H:%M:%S")
                       for d in (-params.window_s, params.window_s))
        spans.add((camera, first, last))
    return index.shot_between(sorted(spans)) - set(ids)
