"""Crop candidates of a few photos against a library streamed past them in blocks.

``CropIndex`` holds every descriptor of a library: about 6 KB a photo, 0.6 GB for 100,000 photos,
far beyond what a daemon that idles at under 200 MB may keep. The daemon's question is narrower
— which library photos are worth checking against *these* new photos — so ``StreamedQuery``
turns the index around: it indexes the new photos' descriptors (small), and the library's
descriptors stream past it a block at a time (``feed``), so memory is one block and the library
is never sorted. The answer is the one ``CropIndex.candidates`` gives for the same photos against
the same library: a query descriptor votes once for each library photo owning a descriptor
within ``match_bits`` in a shared bucket; buckets holding more than ``max_bucket`` library
descriptors are stop words; each query keeps its ``candidates_per_photo`` best-voted photos
(ties by ``rank``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from dupligoned.core.crop_index import _keys, _query_rows, _words
from dupligoned.core.crops import DESC_BYTES, CropParams, LocalFeatures
from dupligoned.core.neighbours import Pairs


class StreamedQuery:
    """Query photos (``features``, with their library ids ``ids``) waiting for library blocks."""

    def __init__(self, features: Sequence[LocalFeatures], ids: Sequence[int], params: CropParams = CropParams()) -> None:
        self.params = params
        self.ids = np.asarray(ids, np.int64)
        # Every query descriptor, base and alternates; ``kp`` the keypoint of each, ``row`` the
        # query of each keypoint.
        self.words, self.row, self.kp = _query_rows(features)
        self.n_desc = int(self.words.shape[0])
        keys = _keys(self.words, params)
        self.order = [np.argsort(keys[:, t], kind="stable") for t in range(params.hash_tables)]
        self.sorted = [keys[o, t] for t, o in enumerate(self.order)]
        # Per table, one bit per possible key (2 MB at 24 bits): a library descriptor whose bucket
        # holds no query descriptor — nearly all of them — is dropped before any binary search.
        self.present = []
        for t in range(params.hash_tables):
            bits = np.zeros(1 << params.hash_bits, bool)
            bits[keys[:, t]] = True
            self.present.append(np.packbits(bits, bitorder="little"))
        # Library descriptors in each query bucket, counted at the bucket's first sorted position.
        self.bucket = [np.zeros(self.n_desc, np.int64) for _ in range(params.hash_tables)]
        # Per block, the unique (query descriptor, library photo) hits, with a bit per table
        # that found them: 9 bytes a hit (stop words are known only once the library is fed).
        self._hit_desc: list[npt.NDArray[np.uint32]] = []
        self._hit_lib: list[npt.NDArray[np.uint32]] = []
        self._hit_tables: list[npt.NDArray[np.uint8]] = []
        self.fed = 0

    def feed(self, desc: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64]) -> None:
        """One block of the library: (M, 16) descriptors and the photo id owning each.

        Every library photo must be fed exactly once (the query photos' own included: they
        count in bucket sizes, and are never paired with themselves).
        """
        if not self.n_desc or not len(desc):
            return
        lw = _words(np.ascontiguousarray(desc, np.uint8))
        lkeys = _keys(lw, self.params)
        own = np.asarray(owners, np.int64)
        self.fed += len(desc)
        keys_found, tables_found = [], []
        for t in range(self.params.hash_tables):
            lk = lkeys[:, t]
            has = np.flatnonzero((self.present[t][lk >> 3] >> (lk & 7).astype(np.uint8)) & 1)
            if not has.size:
                continue
            srt = self.sorted[t]
            lo = np.searchsorted(srt, lk[has], "left")
            sz = np.searchsorted(srt, lk[has], "right") - lo
            self.bucket[t] += np.bincount(lo, minlength=self.n_desc)
            live = self.bucket[t][lo] <= self.params.max_bucket  # a full bucket is a stop word already
            has, lo, sz = has[live], lo[live], sz[live]
            n = int(sz.sum())
            src = np.repeat(has, sz)  # library descriptor
            offs = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(sz) - sz, sz)
            qd = self.order[t][np.repeat(lo, sz) + offs]  # query descriptor
            x = lw[src] ^ self.words[qd]
            close = (np.bitwise_count(x[:, 0]) + np.bitwise_count(x[:, 1])) <= self.params.match_bits
            keys_found.append((qd[close] << 32) | own[src[close]])
            tables_found.append(np.full(int(close.sum()), 1 << t, np.uint8))
        if not keys_found:
            return
        uniq, inv = np.unique(np.concatenate(keys_found), return_inverse=True)
        mask = np.zeros(uniq.size, np.uint8)
        np.bitwise_or.at(mask, inv.ravel(), np.concatenate(tables_found))
        self._hit_desc.append((uniq >> 32).astype(np.uint32))
        self._hit_lib.append((uniq & 0xFFFFFFFF).astype(np.uint32))
        self._hit_tables.append(mask)

    def votes(self) -> Pairs:
        """(query position, library id, votes) for every pair with at least one vote."""
        empty = Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        if not self._hit_desc:
            return empty
        qd = np.concatenate(self._hit_desc).astype(np.int64)
        lib = np.concatenate(self._hit_lib).astype(np.int64)
        tables = np.concatenate(self._hit_tables)
        # Stop words: a bucket's size is kept at its first sorted position. A hit counts when
        # one of the tables that found it has a bucket that is not full.
        open_tables = np.zeros(self.n_desc, np.uint8)
        for t in range(self.params.hash_tables):
            inv = np.empty(self.n_desc, np.int64)
            inv[self.order[t]] = np.arange(self.n_desc)
            first = np.searchsorted(self.sorted[t], self.sorted[t][inv], "left")
            open_tables |= np.where(self.bucket[t][first] <= self.params.max_bucket, 1 << t, 0).astype(np.uint8)
        keep = ((tables & open_tables[qd]) != 0) & (lib != self.ids[self.row[self.kp[qd]]])
        qd, lib = qd[keep], lib[keep]
        if not qd.size:
            return empty
        # One vote per query keypoint and library photo, whichever of its descriptors found it.
        n_lib = int(lib.max()) + 1
        hits = np.unique(self.kp[qd] * n_lib + lib)
        uniq, counts = np.unique(self.row[hits // n_lib] * n_lib + hits % n_lib, return_counts=True)
        return Pairs(uniq // n_lib, uniq % n_lib, counts.astype(np.float32))

    def candidates(self, rank: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]] | None = None) -> Pairs:
        """Each query's best-voted library photos (≥ ``min_votes``, at most ``candidates_per_photo``).

        ``rank`` maps the (unique, sorted) library ids that need it to a canonical rank each
        (e.g. of their paths) to break ties, so that the choice does not depend on ids.
        Returns (query position, library id, votes).
        """
        v = self.votes()
        ok = v.dist >= self.params.min_votes
        qi, li, vv = v.i[ok], v.j[ok], v.dist[ok]
        if rank is not None and li.size:
            uniq, inv = np.unique(li, return_inverse=True)
            tie = np.asarray(rank(uniq), np.int64)[inv]
        else:
            tie = li
        order = np.lexsort((tie, -vv, qi))
        qi, li, vv = qi[order], li[order], vv[order]
        start = np.r_[0, np.flatnonzero(np.diff(qi)) + 1] if qi.size else np.zeros(0, np.int64)
        run = np.arange(qi.size) - np.repeat(start, np.diff(np.r_[start, qi.size]))
        top = run < self.params.candidates_per_photo
        return Pairs(qi[top], li[top], vv[top])


def descriptors_of_blobs(blobs: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(M, 16) descriptors of ``LocalFeatures.to_bytes`` blobs, and the blob index of each,
    without building the feature objects (a library block streams through this)."""
    parts: list[bytes] = []
    counts = np.empty(len(blobs), np.int64)
    for n, b in enumerate(blobs):
        k = int.from_bytes(b[4:6], "little")
        at = 8 + 2 * k
        parts.append(b[at : at + DESC_BYTES * k])
        counts[n] = k
    desc = np.frombuffer(b"".join(parts), np.uint8).reshape(-1, DESC_BYTES)
    return desc, np.repeat(np.arange(len(blobs), dtype=np.int64), counts)
