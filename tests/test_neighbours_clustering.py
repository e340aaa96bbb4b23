"""Neighbour search is exact; clustering finds planted groups, never chains, ignores input order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dupligoned.core import clustering, neighbours


def _random_codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2**63, n, dtype=np.uint64) * 2 + rng.integers(0, 2, n, dtype=np.uint64),
            rng.integers(0, 2**63, n, dtype=np.uint64))


def _flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def _brute(codes: np.ndarray, radius: float) -> set[tuple[int, int, float]]:
    bits = np.unpackbits(codes, axis=1)
    out = set()
    for i in range(len(codes)):
        d = (bits[i + 1:] != bits[i]).sum(axis=1) / 2.0
        for off in np.flatnonzero(d <= radius):
            out.add((i, i + 1 + int(off), float(d[off])))
    return out


def _planted(n_groups: int, seed: int) -> tuple[list[int], list[int], list[list[int]]]:
    rng = np.random.default_rng(seed)
    ph, dh, groups = [], [], []
    for _ in range(n_groups):
        p0, d0 = (int(x) for x in rng.integers(0, 2**63, 2))
        members = []
        for _ in range(int(rng.integers(1, 4))):
            members.append(len(ph))
            ph.append(_flip(p0, list(rng.choice(64, int(rng.integers(0, 4)), replace=False))))
            dh.append(_flip(d0, list(rng.choice(64, int(rng.integers(0, 4)), replace=False))))
        groups.append(members)
    return ph, dh, groups


def test_range_search_equals_brute_force_across_blocks() -> None:
    ph, dh, _ = _planted(300, seed=3)
    codes = neighbours.pack(ph, dh)
    got = neighbours.within(codes, 8.0, block=97)  # several blocks, uneven last one
    found = {(int(a), int(b), float(c)) for a, b, c in zip(got.i, got.j, got.dist, strict=True)}
    assert found == _brute(codes, 8.0)
    assert all(a < b for a, b, _ in found)


def test_query_finds_new_photos_neighbours_in_the_library() -> None:
    ph, dh, groups = _planted(200, seed=4)
    codes = neighbours.pack(ph, dh)
    new = codes[[g[0] for g in groups]]
    got = neighbours.query(new, codes, 6.0)
    pairs = {(int(a), int(b)) for a, b in zip(got.i, got.j, strict=True)}
    for q, g in enumerate(groups):
        assert (q, g[0]) in pairs  # itself, at distance 0


def test_pack_orders_phash_then_dhash_big_endian() -> None:
    codes = neighbours.pack([0x0102030405060708], [0xFF])
    assert codes.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0xFF]]


def test_planted_groups_are_found_and_nothing_else() -> None:
    ph, dh, groups = _planted(400, seed=5)
    codes = neighbours.pack(ph, dh)
    params = clustering.ClusterParams()
    pairs = neighbours.within(codes, params.search_radius)
    found = clustering.cluster(codes, pairs, 6.0, params)
    expected = sorted(sorted(g) for g in groups if len(g) > 1)
    assert sorted(sorted(g) for g in found) == expected


def test_a_long_chain_of_frames_is_not_one_group() -> None:
    # 30 frames, each 3 bits (distance 1.5) from the previous: every step is near, the ends are far.
    p, ph, dh = 0, [], []
    rng = np.random.default_rng(7)
    d0 = int(rng.integers(0, 2**63))
    for k in range(30):
        ph.append(p)
        dh.append(d0)
        p = _flip(p, [3 * k % 64, (3 * k + 1) % 64, (3 * k + 2) % 64])
    codes = neighbours.pack(ph, dh)
    params = clustering.ClusterParams()
    eps = 4.0
    groups = clustering.cluster(codes, neighbours.within(codes, params.search_radius), eps, params)
    assert len(groups) > 1
    for g in groups:  # every group's members are near each other, not merely chained
        for a in g:
            for b in g:
                assert np.unpackbits(codes[a] ^ codes[b]).sum() / 2 <= eps * params.max_diameter_factor


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(60))))
def test_clustering_does_not_depend_on_input_order(perm: list[int]) -> None:
    ph, dh, _ = _planted(25, seed=11)
    n = len(ph)
    perm = [k for k in perm if k < n] + list(range(60, n))
    params = clustering.ClusterParams()
    base_codes = neighbours.pack(ph, dh)
    keys = [f"{k:04d}" for k in range(n)]  # a canonical key per photo, as paths are
    base = clustering.cluster(base_codes, neighbours.within(base_codes, params.search_radius), 5.0, params)
    shuffled = neighbours.pack([ph[k] for k in perm], [dh[k] for k in perm])
    order = sorted(range(n), key=lambda s: keys[perm[s]])
    got = clustering.cluster(shuffled, neighbours.within(shuffled, params.search_radius), 5.0, params, order=order)
    assert sorted(sorted(perm[s] for s in g) for g in got) == sorted(sorted(g) for g in base)


def test_eps_from_elbow_is_scaled_and_clamped() -> None:
    params = clustering.ClusterParams()
    # Duplicates at 0–2, everything else at 20–30: the elbow sits where the curve shoots up.
    kdist = np.concatenate([np.linspace(0, 2, 300), np.linspace(20, 30, 700)])
    choice = clustering.choose_eps(kdist, params)
    assert choice.method == "elbow"
    assert params.eps_min <= choice.eps <= params.eps_max


def test_eps_falls_back_when_there_is_no_elbow() -> None:
    params = clustering.ClusterParams(eps_min=0.5)
    flat = np.full(100, 4.0)
    assert clustering.choose_eps(flat, params).method == "default"
    line = np.linspace(0, 9, 200)  # a straight line has no elbow: the stricter low percentile
    choice = clustering.choose_eps(line, params)
    assert choice.method == "percentile"
    assert choice.raw == np.percentile(line, params.fallback_percentile)
    assert choice.eps == max(params.eps_min, choice.raw * params.eps_scale)


def test_bad_params_are_refused_with_every_problem() -> None:
    import pytest

    with pytest.raises(ValueError) as err:
        clustering.ClusterParams(eps_min=5, eps_max=2, min_samples=1)
    assert "eps_min" in str(err.value) and "min_samples" in str(err.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=4))
def test_sparse_dbscan_equals_scikit_learn(seed: int, min_samples: int) -> None:
    import scipy.sparse as sp
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(seed)
    n = 60
    m = 150
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = i != j
    i, j = i[keep], j[keep]
    d = rng.uniform(0.5, 6.0, i.size).round(1)
    dense = np.zeros((n, n))
    dense[i, j] = d
    dense = np.maximum(dense, dense.T)  # a distance graph is symmetric, as the product builds it
    ii, jj = np.nonzero(dense)
    graph = sp.csr_matrix((dense[ii, jj], (ii, jj)), shape=(n, n))
    ours = clustering.dbscan(n, ii, jj, dense[ii, jj], 3.0, min_samples)
    theirs = DBSCAN(eps=3.0, min_samples=min_samples, metric="precomputed").fit(graph).labels_
    assert np.array_equal(ours == -1, theirs == -1)
    # Same partition (labels may be numbered differently).
    pairs_ours = {(a, b) for a in range(n) for b in range(n) if ours[a] >= 0 and ours[a] == ours[b]}
    pairs_theirs = {(a, b) for a in range(n) for b in range(n) if theirs[a] >= 0 and theirs[a] == theirs[b]}
    assert pairs_ours == pairs_theirs


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=3000))
def test_components_equal_scipy(seed: int, n: int) -> None:
    """Connected components (lowest node of each) as scipy's, on random graphs and long chains."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    m = int(rng.integers(0, 2 * n))
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    chain = rng.permutation(n)  # a chain through every node in random order, cut in places
    cut = rng.random(n - 1) < 0.05
    a = np.concatenate([a, chain[:-1][~cut]]).astype(np.int64)
    b = np.concatenate([b, chain[1:][~cut]]).astype(np.int64)
    ours = clustering._components(n, a, b)
    _, theirs = connected_components(sp.coo_matrix((np.ones(a.size), (a, b)), shape=(n, n)), directed=False)
    assert np.array_equal(ours[ours], ours)  # every node points at a root
    assert all(ours[k] <= k for k in range(n))  # the lowest node of its component
    same_ours = ours[a] == ours[b]
    assert same_ours.all()
    # Same partition: two nodes share a root exactly when scipy puts them together.
    first = {}
    for k in range(n):
        first.setdefault(int(theirs[k]), k)
    assert [first[int(theirs[k])] for k in range(n)] == ours.tolist()


def test_a_crop_verified_against_a_copy_keeps_the_original_in_its_group() -> None:
    """A re-encoded copy (hash-identical to the original) and a heavy crop verified against the
    copy: one group of the three, not the crop and the copy without the original (which the
    diameter check would split off, the crop being far from it by hash)."""
    p, d = _random_codes(2, 9)
    orig = (int(p[0]), int(d[0]))
    crop = (int(p[1]), int(d[1]))  # another picture to the hashes
    codes = neighbours.pack([orig[0], crop[0], orig[0]], [orig[1], crop[1], _flip(orig[1], [3])])
    # index 0: the copy, 1: the crop, 2: the original (path order: new/copy, new/crop, old/...)
    params = clustering.ClusterParams()
    verified = neighbours.Pairs(np.array([1]), np.array([0]), np.zeros(1, np.float32))
    groups = clustering.cluster(codes, neighbours.within(codes, params.search_radius), 4.0, params, verified=verified)
    assert groups == [[0, 1, 2]]
    # Without the copy, the crop verified against nothing near the original stays apart.
    alone = clustering.cluster(codes[[1, 2]], neighbours.within(codes[[1, 2]], params.search_radius), 4.0, params)
    assert alone == []
