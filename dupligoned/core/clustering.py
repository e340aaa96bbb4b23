"""Grouping photos: automatic eps, DBSCAN on a sparse graph, and no chains.

1. ``choose_eps`` reads the elbow of the k-distance graph (Kneedle, as kneed finds it), scales it, clamps it to
   [eps_min, eps_max], and falls back to stricter figures when there is no elbow.
2. ``cluster`` runs DBSCAN on a sparse precomputed graph holding only pairs within eps, then splits
   every cluster by complete linkage so that all members of a group are within ``max_diameter``
   of each other: a long chain of slightly different frames never becomes one group.

Every input is an array; the caller supplies a sort key per photo so that the result does not
depend on input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dupligoned.core.elbow import elbow_index
from dupligoned.core.neighbours import Pairs

# scipy's hierarchical clustering costs memory and start-up when imported; the daemon keeps
# running for months, so it is imported only for a cluster that must be split.


@dataclass(frozen=True)
class ClusterParams:
    """Every knob of the grouping, with defaults chosen on principle.

    Distances are the mean of the pHash and dHash Hamming distances (0–64). Unrelated photos sit
    around 32; re-encodes and resizes of one photo within 0–3; light edits up to about 10.
    """

    eps_scale: float = 0.7  # applied to the elbow of the k-distance graph
    eps_min: float = 3.0  # never stricter: re-encodes and resizes must always group
    eps_max: float = 10.0  # never looser: beyond this, unrelated photos start to meet
    min_samples: int = 2  # DBSCAN: a pair is already a group
    k: int = 1  # the k of the k-distance graph (k = min_samples - 1)
    kdist_sample: int = 5000  # photos sampled for the k-distance graph
    fallback_percentile: float = 10.0  # eps when there is no elbow (then the median)
    # All members within factor × eps of each other. 2 is what a group of copies of one original,
    # each within eps of it, needs; a chain of frames drifting further apart is split.
    max_diameter_factor: float = 2.0
    large_cluster: int = 3000  # bigger clusters are split greedily (complete linkage is n²)

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.eps_scale <= 2:
            problems.append("eps_scale must be in (0, 2]")
        if not 0 <= self.eps_min <= self.eps_max <= 64:
            problems.append("need 0 ≤ eps_min ≤ eps_max ≤ 64")
        if self.min_samples < 2:
            problems.append("min_samples must be ≥ 2")
        if self.k < 1:
            problems.append("k must be ≥ 1")
        if not 0 < self.fallback_percentile < 100:
            problems.append("fallback_percentile must be in (0, 100)")
        if self.max_diameter_factor < 1:
            problems.append("max_diameter_factor must be ≥ 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def search_radius(self) -> float:
        """The largest distance any step needs: the neighbour search radius."""
        return self.eps_max * self.max_diameter_factor


@dataclass(frozen=True)
class EpsChoice:
    eps: float
    method: str  # "elbow", "percentile", "median", "default"
    raw: float  # the figure before scaling and clamping


def choose_eps(kdist: npt.NDArray[np.floating], params: ClusterParams) -> EpsChoice:
    """eps from a sample of k-th neighbour distances (any order)."""
    values = np.sort(np.asarray(kdist, dtype=np.float64))
    if values.size < 3 or values[-1] == values[0]:
        return EpsChoice(params.eps_max, "default", float("nan"))
    raw = float("nan")
    method = ""
    knee = elbow_index(values)  # kneed's KneeLocator (convex, increasing, offline, S = 1)
    if knee is not None:
        raw, method = float(values[knee]), "elbow"
    if not method:
        raw, method = float(np.percentile(values, params.fallback_percentile)), "percentile"
        if raw <= 0:
            raw, method = float(np.median(values)), "median"
    eps = float(np.clip(raw * params.eps_scale, params.eps_min, params.eps_max))
    return EpsChoice(eps, method, raw)


def _pair_distance_matrix(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """Condensed pairwise photo distances of a small set of packed codes."""
    bits = np.unpackbits(codes, axis=1).astype(np.float64)
    # Hamming = a·(1-b) + (1-a)·b, via one matrix product.
    ones = bits.sum(axis=1)
    ham = ones[:, None] + ones[None, :] - 2.0 * (bits @ bits.T)
    n = codes.shape[0]
    iu = np.triu_indices(n, 1)
    return np.asarray(ham[iu] / 2.0)


def _split_by_diameter(
    members: npt.NDArray[np.int64],
    codes: npt.NDArray[np.uint8],
    max_diameter: float,
    large: int,
    links: set[tuple[int, int]],
) -> list[npt.NDArray[np.int64]]:
    if members.size <= 2:
        return [members]
    if members.size <= large:
        cond = _pair_distance_matrix(codes[members])
        if links:
            n = members.size
            for a in range(n):
                for b in range(a + 1, n):
                    if (int(members[a]), int(members[b])) in links:
                        # condensed index of (a, b)
                        cond[n * a - a * (a + 1) // 2 + (b - a - 1)] = 0.0
        if cond.max() <= max_diameter:
            return [members]
        from scipy.cluster.hierarchy import fcluster, linkage

        labels = fcluster(linkage(cond, method="complete"), t=max_diameter, criterion="distance")
        return [members[labels == lab] for lab in np.unique(labels)]
    # Greedy for degenerate giant components: take the first remaining photo as a centre and
    # every photo within half the diameter of it, so any two members are within the diameter.
    out = []
    left = members
    while left.size:
        c = codes[left[0]]
        ham = np.unpackbits(np.bitwise_xor(codes[left], c), axis=1).sum(axis=1) / 2.0
        take = ham <= max_diameter / 2.0
        out.append(left[take])
        left = left[~take]
    return out


def _components(n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Connected components of an undirected graph: each node's lowest-numbered node.

    Union by hooking each edge's higher root under its lower one, then pointer jumping, until
    no edge joins two roots: a few array passes even for a million nodes, no recursion.
    """
    root = np.arange(n, dtype=np.int64)
    while a.size:
        ra, rb = root[a], root[b]
        apart = ra != rb
        if not apart.any():
            break
        lo, hi = np.minimum(ra[apart], rb[apart]), np.maximum(ra[apart], rb[apart])
        np.minimum.at(root, hi, lo)  # hi is a root: it now points at a lower root
        while True:  # pointer jumping: every node points straight at its root
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
    return root


def dbscan(
    n: int,
    i: npt.NDArray[np.int64],
    j: npt.NDArray[np.int64],
    dist: npt.ArrayLike,
    eps: float,
    min_samples: int,
) -> npt.NDArray[np.int64]:
    """DBSCAN labels (-1 = noise) of ``n`` points on a sparse precomputed distance graph.

    The edges (``i[k]``, ``j[k]``) at ``dist[k]`` (either direction, repeats allowed) are the
    only neighbours, as scikit-learn's DBSCAN with ``metric="precomputed"`` reads a sparse
    matrix; a point counts itself, so it is a core point when it has ``min_samples - 1``
    neighbours within ``eps``. Core points within eps of each other share a cluster; a border
    point joins the first-found cluster among its core neighbours' (DBSCAN expands clusters in
    index order); the rest is noise. Clusters are numbered by their lowest core point. Same
    partition as scikit-learn (tested), without its import — nor scipy's.
    """
    i, j, d = np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(dist, np.float64)
    near = (d <= eps) & (i != j)
    key = np.unique(np.minimum(i[near], j[near]) * n + np.maximum(i[near], j[near]))
    a, b = key // n, key % n  # each neighbouring pair once, a < b
    core = np.bincount(a, minlength=n) + np.bincount(b, minlength=n) + 1 >= min_samples
    labels = np.full(n, -1, np.int64)
    if not core.any():
        return labels
    both = core[a] & core[b]
    root = _components(n, a[both], b[both])
    core_idx = np.flatnonzero(core)
    # Roots are each cluster's lowest core point: number clusters in that order.
    _, labels[core_idx] = np.unique(root[core_idx], return_inverse=True)
    # Border points: the lowest-numbered cluster among their core neighbours.
    one = core[a] != core[b]
    border = np.where(core[a[one]], b[one], a[one])
    via = np.where(core[a[one]], a[one], b[one])
    best = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, border, labels[via])
    joined = best < np.iinfo(np.int64).max
    labels[joined] = best[joined]
    return labels


def cluster(
    codes: npt.NDArray[np.uint8],
    pairs: Pairs,
    eps: float,
    params: ClusterParams,
    order: Sequence[int] | None = None,
    verified: Pairs | None = None,
) -> list[list[int]]:
    """Groups of two or more photo indices; photos in no group are left out.

    ``pairs`` must hold every pair within ``eps`` (more is fine). ``order`` is a permutation of
    the indices in a canonical order (e.g. sorted by path) so that the result does not depend
    on the order photos were given in. ``verified`` pairs (from a later matching stage, such as
    crops) join the graph whatever their hash distance, and count as near in the diameter check
    — as do a verified photo and the other one's neighbours within eps (its copies).
    Groups are returned sorted by their first member.
    """
    n = codes.shape[0]
    if n == 0:
        return []
    perm = np.asarray(order if order is not None else np.arange(n), dtype=np.int64)
    rank = np.empty(n, np.int64)
    rank[perm] = np.arange(n)
    keep = pairs.dist <= eps
    i, j, d = rank[pairs.i[keep]], rank[pairs.j[keep]], pairs.dist[keep].astype(np.float64)
    links: set[tuple[int, int]] = set()
    if verified is not None and len(verified):
        vi, vj = rank[verified.i], rank[verified.j]
        # A photo verified against another is as near to that one's copies (its neighbours
        # within eps): a crop of a re-encoded copy is a crop of the original too, and the
        # diameter check must not split the original off the group it shares with them.
        near: dict[int, list[int]] = {}
        for a, b in zip(i.tolist(), j.tolist(), strict=True):
            if a != b:
                near.setdefault(a, []).append(b)
                near.setdefault(b, []).append(a)
        for a, b in zip(vi.tolist(), vj.tolist(), strict=True):
            for x, y in ((a, b), (b, a)):
                links.update((min(x, z), max(x, z)) for z in [y, *near.get(y, ())] if z != x)
        i, j = np.concatenate([i, vi]), np.concatenate([j, vj])
        d = np.concatenate([d, np.zeros(vi.size)])
    labels = dbscan(n, i, j, d, eps, params.min_samples)
    ranked_codes = codes[perm]
    groups: list[list[int]] = []
    max_diameter = eps * params.max_diameter_factor
    order_lab = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order_lab])) + 1
    for chunk in np.split(order_lab, bounds):
        if chunk.size == 0 or labels[chunk[0]] < 0:
            continue
        for part in _split_by_diameter(
            np.sort(chunk), ranked_codes, max_diameter, params.large_cluster, links
        ):
            if part.size >= 2:
                groups.append([int(perm[r]) for r in part])  # part is sorted by rank
    groups.sort(key=lambda g: int(rank[g[0]]))
    return groups
