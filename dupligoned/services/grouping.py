"""From analysed photos to groups: byte-identical files first, then near-duplicates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dupligoned.core import clustering, neighbours
from dupligoned.core.model import PhotoInfo


@dataclass(frozen=True)
class Grouping:
    groups: list[list[int]]  # indices into the photos given, each group sorted by path
    eps: clustering.EpsChoice


def group_photos(
    photos: Sequence[PhotoInfo],
    params: clustering.ClusterParams = clustering.ClusterParams(),
    verified: neighbours.Pairs | None = None,
    eps: float | None = None,
) -> Grouping:
    """Groups of photo indices (two or more each), independent of the order of ``photos``.

    Byte-identical files are always one group (whatever their hashes); the rest is grouped by
    hash distance, plus any ``verified`` pairs (indices into ``photos``) from a later stage.
    ``eps`` fixes the threshold (e.g. the whole library's, when grouping part of it); without
    it, eps is chosen from these photos' k-distance graph.
    """
    by_path = sorted(range(len(photos)), key=lambda k: photos[k].path)
    # One representative per content: identical files need no neighbour search.
    rep_of: dict[str, int] = {}
    copies: dict[int, list[int]] = defaultdict(list)
    for k in by_path:
        rep = rep_of.setdefault(photos[k].content_hash, k)
        copies[rep].append(k)
    reps = list(copies)  # in path order
    slot = {r: s for s, r in enumerate(reps)}
    codes = neighbours.pack([photos[r].phash for r in reps], [photos[r].dhash for r in reps])
    if eps is None:
        kdist = neighbours.kth_neighbour_distance(codes, params.k, params.kdist_sample)
        choice = clustering.choose_eps(kdist, params)
    else:
        choice = clustering.EpsChoice(eps, "given", eps)
    pairs = neighbours.within(codes, choice.eps)  # DBSCAN needs only pairs within eps
    rep_verified = None
    if verified is not None and len(verified):
        vi = np.array([slot[rep_of[photos[int(a)].content_hash]] for a in verified.i], np.int64)
        vj = np.array([slot[rep_of[photos[int(b)].content_hash]] for b in verified.j], np.int64)
        same = vi == vj
        rep_verified = neighbours.Pairs(vi[~same], vj[~same], verified.dist[~same])
    # reps are already in path order, so the identity permutation is canonical.
    rep_groups = clustering.cluster(codes, pairs, choice.eps, params, verified=rep_verified)
    grouped: set[int] = set()
    groups: list[list[int]] = []
    for g in rep_groups:
        members = sorted((m for s in g for m in copies[reps[s]]), key=lambda k: photos[k].path)
        grouped.update(g)
        groups.append(members)
    for s, r in enumerate(reps):
        if s not in grouped and len(copies[r]) > 1:
            groups.append(list(copies[r]))
    groups.sort(key=lambda g: photos[g[0]].path)
    return Grouping(groups, choice)
