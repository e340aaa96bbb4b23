"""The crop stage's candidate index: which pairs are worth the geometric check.

See ``core/crops.py`` for the whole stage. Kept apart from it so that analysing workers, which
only extract features, never import faiss.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np
import numpy.typing as npt

from dupligoned.core.crops import DESC_BYTES, CropParams, LocalFeatures
from dupligoned.core.neighbours import Pairs


class CropIndex:
    """Every descriptor of a growing library, for proposing crop candidates.

    Photos are added in batches with ``add``; ``candidates`` returns, for each query photo, the
    library photos most worth verifying. The index needs no training, so its answers do not
    depend on what was added before, nor on the order.
    """

    def __init__(self, params: CropParams = CropParams()) -> None:
        self.params = params
        self._index = faiss.IndexBinaryMultiHash(DESC_BYTES * 8, params.hash_tables, params.hash_bits)
        self._index.nflip = 1
        self._owner: list[npt.NDArray[np.int64]] = []  # descriptor → photo id, per batch
        self._owner_all: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self.photos = 0
        self.descriptors = 0

    def add(self, features: Sequence[LocalFeatures]) -> npt.NDArray[np.int64]:
        """Add photos; returns their ids (consecutive, from ``photos`` before the call)."""
        ids = np.arange(self.photos, self.photos + len(features), dtype=np.int64)
        counts = np.array([len(f) for f in features], np.int64)
        if counts.sum():
            self._index.add(np.concatenate([f.desc for f in features if len(f)]))
        self._owner.append(np.repeat(ids, counts))
        self._owner_all = np.concatenate(self._owner) if len(self._owner) > 1 else self._owner[0]
        self._owner = [self._owner_all]
        self.photos += len(features)
        self.descriptors += int(counts.sum())
        return ids

    @property
    def nbytes_per_photo(self) -> float:
        """Index memory per photo: descriptors, their ids and the owner table."""
        return (self.descriptors * (DESC_BYTES + 8 + 8)) / max(1, self.photos)

    def votes(self, features: Sequence[LocalFeatures], query_ids: npt.NDArray[np.int64] | None = None) -> Pairs:
        """(query position, library id, votes): how many of a query's descriptors found a partner.

        ``query_ids`` (the queries' own ids when they are in the library) are not paired with
        themselves. ``Pairs.dist`` holds the vote counts.
        """
        counts = np.array([len(f) for f in features], np.int64)
        empty = Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        if not counts.sum() or not self.descriptors:
            return empty
        q = np.concatenate([f.desc for f in features if len(f)])
        qrow = np.repeat(np.arange(len(features), dtype=np.int64), counts)
        lims, _, ids = self._index.range_search(q, self.params.match_bits + 1)
        hits = np.diff(lims).astype(np.int64)
        src_desc = np.repeat(np.arange(q.shape[0], dtype=np.int64), hits)
        lib = self._owner_all[ids.astype(np.int64)]
        keep = np.ones(lib.size, bool)
        if query_ids is not None:
            keep = lib != np.asarray(query_ids, np.int64)[qrow[src_desc]]
        # One vote per query descriptor and library photo, however many partners it has there.
        n_lib = max(1, self.photos)
        key = np.unique(src_desc[keep] * n_lib + lib[keep])
        d_of_key, lib_of_key = key // n_lib, key % n_lib
        pk = qrow[d_of_key] * n_lib + lib_of_key
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
        start = np.r_[0, np.flatnonzero(np.diff(qi)) + 1]
        run = np.arange(qi.size) - np.repeat(start, np.diff(np.r_[start, qi.size]))
        top = run < self.params.candidates_per_photo
        return Pairs(qi[top], li[top], vv[top])


def symmetric_pairs(cand: Pairs) -> npt.NDArray[np.int64]:
    """(M, 2) unique unordered pairs (lo, hi) from candidates found within one library."""
    if not len(cand):
        return np.empty((0, 2), np.int64)
    lo, hi = np.minimum(cand.i, cand.j), np.maximum(cand.i, cand.j)
    return np.unique(np.stack([lo, hi], axis=1), axis=0)


# --- from verified crops to groups and keepers ---------------------------------------------
