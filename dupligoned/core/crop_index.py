"""The crop stage's candidate index: which pairs are worth the geometric check.

See ``core/crops.py`` for the whole stage. Kept apart from it so that analysing workers, which
only extract features, never import the neighbour search (faiss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dupligoned.core.crops import DESC_BYTES, CropParams, LocalFeatures
from dupligoned.core.neighbours import Pairs

QUERY_BLOCK = 4096  # query photos per block: bounds the memory of the bucket joins
MAX_SEGMENTS = 16  # more sorted batches than this are merged into one
SPAN_BYTES = 96 << 20  # ``segment_votes``: the bucket spans of one pass over the segments
FENCE = 1024  # sorted keys between two fence posts (``_buckets``): one 4-KB page of them
SPARSE_QUERY = 256  # queries are sparse in a segment when it holds this many keys per query key
# A search reads a stored segment ahead (``segment_votes``' ``access``) when its keys would
# touch more than 1/8 of the segment's key pages: a page read on its own from disk cost 12x
# a page read in sequence here (0.065 ms against 5.5 us).
READ_AHEAD_SHARE = 8
MERGE_KEYS = 1 << 20  # keys of a table ``merged_table`` sorts at once: ~1M, 0.1 s and 12 MB of work arrays


def _words(desc: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """(N, 2) big-endian 64-bit words of 128-bit descriptors."""
    return np.ascontiguousarray(desc).view(">u8").astype(np.uint64).reshape(-1, 2)


def _keys(words: npt.NDArray[np.uint64], params: CropParams) -> npt.NDArray[np.int64]:
    """(N, tables) bucket keys: consecutive, disjoint ``hash_bits``-bit slices of each descriptor."""
    b = params.hash_bits
    mask = np.uint64((1 << b) - 1)
    hi, lo = words[:, 0], words[:, 1]
    out = np.empty((words.shape[0], params.hash_tables), np.int64)
    for t in range(params.hash_tables):
        a, z = t * b, (t + 1) * b  # bits [a, z) counted from the top
        if z <= 64:
            v = (hi >> np.uint64(64 - z)) & mask
        elif a >= 64:
            v = (lo >> np.uint64(128 - z)) & mask
        else:
            v = ((hi << np.uint64(z - 64)) | (lo >> np.uint64(128 - z))) & mask
        out[:, t] = v.astype(np.int64)
    return out



def _query_rows(
    features: Sequence[LocalFeatures],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """What queries look with: the words of every query descriptor, base and alternates
    (``LocalFeatures.query_desc``); the query photo of each keypoint (keypoints numbered over
    all queries); and the keypoint of each descriptor."""
    counts = np.array([len(f) for f in features], np.int64)
    starts = np.cumsum(counts) - counts
    desc, kp = [], []
    for f, s in zip(features, starts.tolist(), strict=True):
        if len(f):
            d, k = f.query_desc()
            desc.append(d)
            kp.append(k + s)
    if not desc:
        return np.empty((0, 2), np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
    qrow = np.repeat(np.arange(len(features), dtype=np.int64), counts)
    return _words(np.concatenate(desc)), qrow, np.concatenate(kp)


def _buckets(
    keys: npt.NDArray[np.uint32], qk: npt.NDArray[np.uint32], fence: npt.NDArray[np.uint32] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where each of the (sorted) query keys ``qk`` starts in the sorted ``keys``, and how many
    there share it. The end is searched only for keys present (most buckets a query looks in
    are empty: a second binary search for each would double the work).

    With ``fence`` (every ``FENCE``-th key, ``_fence``: for queries sparse in ``keys``), each
    search reads one window of ``FENCE`` keys: a binary search over the whole array touches a
    dozen pages a key, and at 1M photos one photo's search read nearly every page of a stored
    segment's keys. Dense queries (a large batch) read every page anyway: numpy searches them."""
    # Queries in the keys' own dtype: numpy casts the whole sorted array to a wider one.
    lo = np.searchsorted(keys, qk, "left") if fence is None else _lower_bound(keys, qk, fence)
    size = np.zeros(qk.shape[0], np.int64)
    if keys.shape[0]:
        there = keys[np.minimum(lo, keys.shape[0] - 1)] == qk
        end = (np.searchsorted(keys, qk[there], "right") if fence is None
               else _lower_bound(keys, qk[there].astype(np.int64) + 1, fence))
        size[there] = end - lo[there]
    return lo, size


def _fence(keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Every ``FENCE``-th of the sorted ``keys`` (one 4-KB page of them), in memory."""
    return np.array(keys[::FENCE], np.uint32)


def _lower_bound(
    keys: npt.NDArray[np.uint32], q: npt.NDArray[np.integer[Any]], fence: npt.NDArray[np.uint32]
) -> npt.NDArray[np.int64]:
    """``np.searchsorted(keys, q, "left")``, each search within the one window of ``FENCE``
    keys the fence posts leave it (``fence[j - 1] < q <= fence[j]``: the first key ≥ q is in
    ``((j - 1) × FENCE, j × FENCE]``)."""
    q = np.asarray(q, np.int64)
    n = keys.shape[0]
    j = np.searchsorted(fence.astype(np.int64), q, "left")
    lo = np.maximum(j - 1, 0) * FENCE
    hi = np.minimum(j * FENCE, n)
    for _ in range(FENCE.bit_length()):
        act = lo < hi
        if not act.any():
            break
        mid = (lo + hi) >> 1
        less = keys[np.minimum(mid, n - 1)].astype(np.int64) < q
        lo = np.where(act & less, mid + 1, lo)
        hi = np.where(act & ~less, mid, hi)
    return lo


def _bucket_hits(
    q: npt.NDArray[np.uint64], qo: npt.NDArray[np.int64], lo: npt.NDArray[np.int64], size: npt.NDArray[np.int64],
    order_t: npt.NDArray[np.integer[Any]], words: npt.NDArray[np.uint64], own: npt.NDArray[np.integer[Any]],
    match_bits: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The (query row, owner) pairs of one key table: every stored descriptor in the bucket
    ``lo[i] : lo[i] + size[i]`` of sorted query ``qo[i]`` that lies within ``match_bits``."""
    n = int(size.sum())
    src = np.repeat(qo, size)
    offs = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
    hl = order_t[np.repeat(lo, size) + offs]
    x = q[src] ^ words[hl]
    close = (np.bitwise_count(x[:, 0]) + np.bitwise_count(x[:, 1])) <= match_bits
    return src[close], own[hl[close]].astype(np.int64)

class _Segment:
    """One batch of the index: descriptors, owners, and per table the keys sorted."""

    def __init__(self, words: npt.NDArray[np.uint64], own: npt.NDArray[np.int64], params: CropParams) -> None:
        # 32-bit owners, positions and keys (hash_bits ≤ 32): 60 bytes a descriptor with 5 tables.
        self.words, self.own = words, own.astype(np.int32)
        keys = _keys(words, params)
        self.order = [np.argsort(keys[:, t], kind="stable").astype(np.int32) for t in range(keys.shape[1])]
        self.keys = [keys[o, t].astype(np.uint32) for t, o in enumerate(self.order)]


class CropIndex:
    """Every descriptor of a growing library, for proposing crop candidates.

    Locality-sensitive hashing: each descriptor goes into ``hash_tables`` buckets, each keyed by
    a disjoint slice of ``hash_bits`` of its 128 bits (ORB's tests are chosen to be uncorrelated;
    no training, so the index is the same whatever the library holds). Two descriptors of one keypoint (a few bits apart) share a bucket
    in at least one table with good odds; unrelated ones almost never. Buckets holding more than
    ``CropParams.bucket_cap`` descriptors (flat sky, repeated texture) are ignored like stop words. A query
    keypoint votes for every photo owning a descriptor within ``match_bits`` of one of its
    descriptors (``LocalFeatures.query_desc``: the base one and the alternates) in a shared
    bucket; each query photo keeps its ``candidates_per_photo`` best-voted photos.
    Photos are added in batches with ``add``; answers do not depend on the order of addition.
    """

    def __init__(self, params: CropParams = CropParams()) -> None:
        self.params = params
        self._segments: list[_Segment] = []
        self.photos = 0
        self.descriptors = 0

    def add(self, features: Sequence[LocalFeatures]) -> npt.NDArray[np.int64]:
        """Add photos; returns their ids (consecutive, from ``photos`` before the call).

        Each batch becomes a sorted segment (only the batch is sorted: adding 1,000 photos to a
        large library is cheap); many small segments are merged into one.
        """
        ids = np.arange(self.photos, self.photos + len(features), dtype=np.int64)
        counts = np.array([len(f) for f in features], np.int64)
        if counts.sum():
            desc = np.concatenate([f.desc for f in features if len(f)])
            self._segments.append(_Segment(_words(desc), np.repeat(ids, counts), self.params))
        if len(self._segments) > MAX_SEGMENTS:
            self._segments = [_Segment(
                np.concatenate([g.words for g in self._segments]),
                np.concatenate([g.own for g in self._segments]), self.params,
            )]
        self.photos += len(features)
        self.descriptors += int(counts.sum())
        return ids

    @property
    def nbytes_per_photo(self) -> float:
        """Index memory per photo: descriptors, owners, and per table a sorted key and position."""
        per_desc = DESC_BYTES + 4 + self.params.hash_tables * 8
        return self.descriptors * per_desc / max(1, self.photos)

    def votes(self, features: Sequence[LocalFeatures], query_ids: npt.NDArray[np.int64] | None = None) -> Pairs:
        """(query position, library id, votes): how many of a query's descriptors found a partner.

        ``query_ids`` (the queries' own ids when they are in the library) are not paired with
        themselves. ``Pairs.dist`` holds the vote counts.
        """
        out_i, out_j, out_v = [], [], []
        for b0 in range(0, len(features), QUERY_BLOCK):
            block = features[b0 : b0 + QUERY_BLOCK]
            qids = None if query_ids is None else np.asarray(query_ids, np.int64)[b0 : b0 + QUERY_BLOCK]
            v = self._votes_block(block, qids)
            out_i.append(v.i + b0)
            out_j.append(v.j)
            out_v.append(v.dist)
        if not out_i:
            return Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        return Pairs(np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_v))

    def _votes_block(self, features: Sequence[LocalFeatures], query_ids: npt.NDArray[np.int64] | None) -> Pairs:
        empty = Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        q, qrow, kp = _query_rows(features)
        if not q.shape[0] or not self.descriptors:
            return empty
        qkeys = _keys(q, self.params)
        cap = self.params.bucket_cap(self.descriptors)
        hit_q, hit_lib = [], []
        for seg in self._segments:
            for t in range(qkeys.shape[1]):
                qo = np.argsort(qkeys[:, t])  # sorted queries: the binary searches stay in cache
                qk = qkeys[qo, t].astype(np.uint32)
                lo, size = _buckets(seg.keys[t], qk)
                size[size > cap] = 0  # stop words
                if size.any():
                    hq, hlib = _bucket_hits(q, qo, lo, size, seg.order[t], seg.words, seg.own, self.params.match_bits)
                    hit_q.append(hq)
                    hit_lib.append(hlib)
        if not hit_q:
            return empty
        hq, lib = kp[np.concatenate(hit_q)], np.concatenate(hit_lib)
        if query_ids is not None:
            keep = lib != query_ids[qrow[hq]]
            hq, lib = hq[keep], lib[keep]
        # One vote per query keypoint and library photo, however many partners it has there.
        n_lib = max(1, self.photos)
        key = np.unique(hq * n_lib + lib)
        pk = qrow[key // n_lib] * n_lib + key % n_lib
        uniq, votes = np.unique(pk, return_counts=True)
        return Pairs(uniq // n_lib, uniq % n_lib, votes.astype(np.float32))

    def candidates(
        self,
        features: Sequence[LocalFeatures],
        query_ids: npt.NDArray[np.int64] | None = None,
        rank_key: npt.NDArray[np.int64] | None = None,
    ) -> Pairs:
        """Each query's best-voted library photos (≥ ``min_votes``, at most ``candidates_per_photo``).

        Ties are broken by ``rank_key[library id]`` (e.g. the rank of the photo's path), so the
        choice does not depend on insertion order. Returns (query position, library id, votes).
        """
        v = self.votes(features, query_ids)
        ok = v.dist >= self.params.min_votes
        qi, li, vv = v.i[ok], v.j[ok], v.dist[ok]
        tie = rank_key[li] if rank_key is not None else li
        order = np.lexsort((tie, -vv, qi))
        qi, li, vv = qi[order], li[order], vv[order]
        # Position of each row within its query's run: keep the first few.
        start = np.r_[0, np.flatnonzero(np.diff(qi)) + 1] if qi.size else np.zeros(0, np.int64)
        run = np.arange(qi.size) - np.repeat(start, np.diff(np.r_[start, qi.size]))
        top = run < self.params.candidates_per_photo
        return Pairs(qi[top], li[top], vv[top])


@dataclass(frozen=True, eq=False)
class Segment:
    """One sorted batch of stored descriptors, as arrays (memory-mapped files in the daemon).

    ``words`` (M, 2) uint64 descriptors, ``own`` (M,) int32 photo ids; per table ``keys[t]``
    (M,) uint32 bucket keys sorted, and ``order[t]`` (M,) int32 the descriptor at each place.
    """

    words: npt.NDArray[np.uint64]
    own: npt.NDArray[np.int32]
    keys: tuple[npt.NDArray[np.uint32], ...]
    order: tuple[npt.NDArray[np.int32], ...]
    _fences: dict[int, npt.NDArray[np.uint32]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.own.shape[0])

    @property
    def fenced(self) -> bool:
        """Whether every table's fence posts are made (or were given)."""
        return len(self._fences) == len(self.keys)

    def fence(self, t: int) -> npt.NDArray[np.uint32]:
        """Table ``t``'s fence posts (``_fence``): made on first use, then kept (4 KB per 4 MB
        of keys; a stored segment's pages are read once for them)."""
        f = self._fences.get(t)
        if f is None:
            f = self._fences[t] = _fence(self.keys[t])
        return f


def make_segment(desc: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64], params: CropParams) -> Segment:
    """A sorted segment of (M, 16) descriptors owned by photo ids ``owners`` (< 2**31)."""
    words = _words(np.ascontiguousarray(desc, np.uint8)) if len(desc) else np.empty((0, 2), np.uint64)
    keys = _keys(words, params)
    order = tuple(np.argsort(keys[:, t], kind="stable").astype(np.int32) for t in range(params.hash_tables))
    return Segment(words, np.asarray(owners, np.int32), tuple(keys[o, t].astype(np.uint32) for t, o in enumerate(order)),
                   order)


def merged_table(segments: Sequence[Segment], t: int, hash_bits: int, block: int = MERGE_KEYS
                 ) -> Iterator[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32]]]:
    """Table ``t`` of ``segments`` merged into one segment whose descriptors are theirs one
    after another: its sorted keys and order, one key range after another (each about
    ``block`` keys), exactly what ``make_segment`` of all their descriptors gives.

    Each segment's keys are already sorted: a range of keys is a slice of each, and only that
    is sorted (stably, so equal keys keep the segments' order). Memory stays at a range's
    arrays however large the segments are; sorting them whole took ~0.5 GB per 32,000 photos.
    Keys are slices of descriptors, so even ranges of key values hold about even shares."""
    sizes = np.array([len(s) for s in segments], np.int64)
    if sizes.sum() >= 2**31:
        raise ValueError(f"{int(sizes.sum())} descriptors: order entries are int32")
    offsets = np.cumsum(sizes) - sizes
    parts = max(1, -(-int(sizes.sum()) // block))
    inner = np.linspace(0, 1 << hash_bits, parts + 1)[1:-1].astype(np.uint32)  # the keys' own dtype
    cuts = [np.r_[0, np.searchsorted(s.keys[t], inner, "left"), len(s)] for s in segments]
    for r in range(parts):
        keys = np.concatenate([s.keys[t][c[r]:c[r + 1]] for s, c in zip(segments, cuts, strict=True)])
        order = np.concatenate([np.asarray(s.order[t][c[r]:c[r + 1]], np.int64) + off
                                for s, c, off in zip(segments, cuts, offsets.tolist(), strict=True)])
        by_key = np.argsort(keys, kind="stable")
        yield np.ascontiguousarray(keys[by_key], np.uint32), order[by_key].astype(np.int32)


def segment_votes(
    features: Sequence[LocalFeatures],
    segments: Sequence[Segment],
    params: CropParams,
    query_ids: npt.NDArray[np.int64] | None = None,
    release: Callable[[int], None] | None = None,
    access: Callable[[int, bool], None] | None = None,
) -> Pairs:
    """(query position, photo id, votes) of query photos against stored segments.

    The rule of ``CropIndex.votes``: a query keypoint votes once for each photo owning a
    descriptor within ``match_bits`` of one of its descriptors in a shared bucket; a bucket holding more than
    ``CropParams.bucket_cap`` of all the segments' descriptors is a stop word; ``query_ids`` are not paired
    with themselves. ``release(s)`` is called each time a table of segment ``s`` is done with
    for a while, so that a caller holding memory-mapped files can let their pages go;
    ``access(s, dense)`` before segment ``s`` is searched: dense when the queries' keys would
    touch more than 1/``READ_AHEAD_SHARE`` of its key pages, so that such a caller can have the
    segment read ahead in large pieces, or else read only the scattered pages it touches.
    """
    empty = Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    counts = np.array([len(f) * (1 + f.alt.shape[0]) for f in features], np.int64)
    if not counts.sum() or not segments:
        return empty
    # The spans below take 8 bytes a query descriptor, table and segment: many queries are
    # answered a part at a time (each query's votes do not depend on the others).
    per_photo = 8 * params.hash_tables * len(segments) * max(1, int(counts.max()))
    chunk = max(1, SPAN_BYTES // per_photo)
    if len(features) > chunk:
        parts = []
        for a in range(0, len(features), chunk):
            v = segment_votes(features[a : a + chunk], segments, params,
                              None if query_ids is None else np.asarray(query_ids)[a : a + chunk], release, access)
            parts.append(Pairs(v.i + a, v.j, v.dist))
        return Pairs(np.concatenate([v.i for v in parts]), np.concatenate([v.j for v in parts]),
                     np.concatenate([v.dist for v in parts]))
    q, qrow, kp = _query_rows(features)
    qkeys = _keys(q, params)
    tables = range(params.hash_tables)
    qo = [np.argsort(qkeys[:, t], kind="stable") for t in tables]  # sorted queries: the searches stay local
    qk = [qkeys[qo[t], t].astype(np.uint32) for t in tables]
    # Segment by segment, all tables at once: each segment's pages are read once a pass and
    # then let go, not once per table (at 1M photos a pass over the store is paged in, and a
    # page of descriptors serves every table). First the bucket spans and sizes ...
    n = q.shape[0]
    spans: list[list[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None]] = []
    total = [np.zeros(n, np.int64) for _ in tables]
    for s, seg in enumerate(segments):
        if not len(seg):
            spans.append([None for _ in tables])
            continue
        row: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None] = []
        if access is not None:
            access(s, qk[0].shape[0] * READ_AHEAD_SHARE * FENCE >= len(seg))
        for t in tables:
            sparse = qk[t].shape[0] * SPARSE_QUERY < len(seg)
            lo, size = _buckets(seg.keys[t], qk[t], seg.fence(t) if sparse else None)
            total[t] += size
            row.append((lo.astype(np.int32), size.astype(np.int32)))
            if release is not None:
                release(s)  # a table at a time: a large segment's keys are 4 bytes a descriptor each
        spans.append(row)
    cap = params.bucket_cap(sum(len(seg) for seg in segments))
    full = [total[t] > cap for t in tables]  # stop words, over all segments
    # ... then the descriptors in them.
    hit_q: list[npt.NDArray[np.int64]] = []
    hit_lib: list[npt.NDArray[np.int64]] = []
    for s, seg in enumerate(segments):
        for t in tables:
            sp = spans[s][t]
            if sp is None:
                continue
            size = np.where(full[t], 0, sp[1]).astype(np.int64)
            if not size.any():
                continue
            hq, hlib = _bucket_hits(q, qo[t], sp[0].astype(np.int64), size, seg.order[t], seg.words, seg.own,
                                    params.match_bits)
            hit_q.append(hq)
            hit_lib.append(hlib)
            if release is not None:
                release(s)
        spans[s] = [None for _ in tables]
    if not hit_q:
        return empty
    hq, lib = kp[np.concatenate(hit_q)], np.concatenate(hit_lib)
    if query_ids is not None:
        keep = lib != np.asarray(query_ids, np.int64)[qrow[hq]]
        hq, lib = hq[keep], lib[keep]
    return _count_votes(hq, lib, qrow)


def _count_votes(hq: npt.NDArray[np.int64], lib: npt.NDArray[np.int64], qrow: npt.NDArray[np.int64]) -> Pairs:
    """(query photo, photo, votes) from (query keypoint, photo) hits: one vote per query
    keypoint and photo, however many partners it has there (with any of its descriptors).

    One explicit sort of (query photo, photo, query descriptor) packed in 63 bits when they fit
    (``np.unique`` hashes on numpy ≥ 2.3: its order is not relied on), else two ``np.unique``.
    """
    if not hq.size:
        return Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    bq, bl = int(hq.max()).bit_length(), int(lib.max()).bit_length()
    br = int(qrow[-1]).bit_length()
    if bq + bl + br <= 63:
        key = (qrow[hq] << (bl + bq)) | (lib << bq) | hq
        key.sort()
        key = key[np.r_[True, key[1:] != key[:-1]]]  # each (descriptor, photo) once
        pair = key >> bq
        start = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        votes = np.diff(np.r_[start, pair.size])
        uniq = pair[start]
        return Pairs(uniq >> bl, uniq & ((1 << bl) - 1), votes.astype(np.float32))
    k1 = np.unique((hq << 32) | lib)
    uniq, votes = np.unique((qrow[k1 >> 32] << 32) | (k1 & 0xFFFFFFFF), return_counts=True)
    return Pairs(uniq >> 32, uniq & 0xFFFFFFFF, votes.astype(np.float32))


def top_candidates(v: Pairs, params: CropParams, tie: npt.NDArray[np.int64] | None = None) -> Pairs:
    """Of votes (query, photo, votes): each query's best-voted photos, ≥ ``min_votes``, at most
    ``candidates_per_photo``; ties by ``tie`` (one per row of ``v``), else by photo id."""
    ok = v.dist >= params.min_votes
    qi, li, vv = v.i[ok], v.j[ok], v.dist[ok]
    tk = tie[ok] if tie is not None else li
    order = np.lexsort((tk, -vv, qi))
    qi, li, vv = qi[order], li[order], vv[order]
    start = np.r_[0, np.flatnonzero(np.diff(qi)) + 1] if qi.size else np.zeros(0, np.int64)
    run = np.arange(qi.size) - np.repeat(start, np.diff(np.r_[start, qi.size]))
    top = run < params.candidates_per_photo
    return Pairs(qi[top], li[top], vv[top])


def kth_votes(v: Pairs, n_queries: int, params: CropParams) -> npt.NDArray[np.int64]:
    """Per query, the votes a newcomer needs to enter its candidates: its
    ``candidates_per_photo``-th best (``min_votes`` while it has fewer candidates)."""
    out = np.full(n_queries, params.min_votes, np.int64)
    ok = v.dist >= params.min_votes
    qi, vv = v.i[ok], v.dist[ok].astype(np.int64)
    order = np.lexsort((-vv, qi))
    qi, vv = qi[order], vv[order]
    start = np.r_[0, np.flatnonzero(np.diff(qi)) + 1] if qi.size else np.zeros(0, np.int64)
    run = np.arange(qi.size) - np.repeat(start, np.diff(np.r_[start, qi.size]))
    at_k = run == params.candidates_per_photo - 1
    out[qi[at_k]] = vv[at_k]
    return out


def symmetric_pairs(cand: Pairs) -> npt.NDArray[np.int64]:
    """(M, 2) unique unordered pairs (lo, hi) from candidates found within one library."""
    if not len(cand):
        return np.empty((0, 2), np.int64)
    lo, hi = np.minimum(cand.i, cand.j), np.maximum(cand.i, cand.j)
    return np.unique(np.stack([lo, hi], axis=1), axis=0)


# --- from verified crops to groups and keepers ---------------------------------------------
