"""The crop stage in the daemon: new photos matched against the whole library, once each.

Workers send each photo's local features with its analysis; ``Ingest`` keeps them in
``photo_features`` (``crops_searched = 0``). Before sessions are clustered, ``search_pending``
takes the photos not yet searched and asks the crop index (``adapters/crop_store.py``: every
searched photo's descriptors in sorted, memory-mapped segments beside the index) for the
library photos sharing descriptors with them, reading only their buckets — plus the batch
against itself. Candidates are kept both ways: a library photo is checked when it is among the
new photo's best-voted (``candidates_per_photo``), and also when the new photo would be among
*its* best-voted (votes at least its ``crop_kth``, the votes of its last candidate when it was
searched) — so a new original gathers old crops even when its own candidates are taken by
look-alikes. Candidates are verified exactly (``orb.match``) against the features in the
index, the verified crops recorded in ``crop_pairs``, the batch appended to the crop index and
marked searched (its features blobs lose the alternate descriptors only a search uses).
Whichever photo arrives later finds the pair. ``relations`` hands clustering
the recorded pairs of its members.

A photo analysed again (new content) loses its pairs and is searched again (``Ingest``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from dupligoned.adapters import orb
from dupligoned.adapters.crop_store import CropStore, store_path
from dupligoned.adapters.index import Index
from dupligoned.core.crop_index import kth_votes, make_segment, segment_votes, top_candidates
from dupligoned.core.crops import CropMatch, CropParams, LocalFeatures, is_crop_resolution
from dupligoned.core.neighbours import Pairs

log = logging.getLogger("dupligone.crops")

QUERY_BATCH = 2_000  # new photos searched together
POOL_MIN_PAIRS = 4_000  # fewer pairs (about 2 s) are verified in the daemon itself

MapFn = Callable[..., Iterable[object]]


@dataclass
class SearchReport:
    searched: int = 0  # photos matched against the library
    library: int = 0  # photos with features in the library
    pairs_checked: int = 0
    crops_found: int = 0
    candidates_s: float = 0.0
    verify_s: float = 0.0


def _verify(pair: tuple[LocalFeatures, LocalFeatures], params: CropParams) -> CropMatch | None:
    return orb.match(pair[0], pair[1], params)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _features(index: Index, ids: Iterable[int]) -> dict[int, LocalFeatures]:
    return {k: LocalFeatures.from_bytes(v) for k, v in index.crop_feature_blobs(ids).items()}


def open_store(index: Index, params: CropParams = CropParams()) -> CropStore:
    """The crop index beside ``index``, rebuilt first when it must be (blocking)."""
    store = CropStore(store_path(index.path), index, params)
    store.rebuild_all()
    return store


def search_pending(
    index: Index,
    params: CropParams = CropParams(),
    *,
    store: CropStore | None = None,
    workers: int = 1,
    now: float | None = None,
    query_batch: int = QUERY_BATCH,
) -> SearchReport:
    """Match every analysed photo not yet searched against the library; record verified crops.

    ``store`` is the crop index (opened, and rebuilt when needed, beside the index when None);
    it must be ``ready``. Each batch goes into the store, then commits its pairs and marks its
    photos searched in one transaction, so an interrupted search repeats one batch at most.
    ``workers`` > 1 verifies large batches on a process pool that lives only for the batch.
    """
    own_store = store is None
    st = open_store(index, params) if store is None else store
    if not st.ready:
        raise RuntimeError("the crop index is being rebuilt")
    rep = SearchReport()
    try:
        while True:
            pending = index.crop_pending_ids(query_batch)
            if not pending:
                return rep
            _search_batch(index, st, pending, params, workers, time.time() if now is None else now, rep)
    finally:
        if own_store:
            st.close()


def _both_ways(index: Index, v: Pairs, batch: set[int], fwd: Pairs, params: CropParams) -> Pairs:
    """Of the votes (query position, photo id, votes), the pairs not already among the query's
    best-voted ``fwd`` where the query would be among the library photo's own best-voted: votes
    ≥ its recorded ``crop_kth`` (at most ``candidates_per_photo`` such photos a query, the
    best-voted first)."""
    ok = v.dist >= params.min_votes
    if len(fwd):
        ok &= ~np.isin((v.i << 32) | v.j, (fwd.i << 32) | fwd.j)
    qi, li, vv = v.i[ok], v.j[ok], v.dist[ok]
    lib = np.unique(li)
    lib = lib[~np.isin(lib, np.fromiter(batch, np.int64, len(batch)))]
    kth = index.crop_kth(lib.tolist())
    known = np.fromiter(kth.keys(), np.int64, len(kth))
    need_of = np.fromiter(kth.values(), np.int64, len(kth))
    srt = np.argsort(known)
    known, need_of = known[srt], need_of[srt]
    at = np.clip(np.searchsorted(known, li), 0, max(0, len(known) - 1))
    need = np.full(li.size, np.inf, np.float64)
    if known.size:
        hit = known[at] == li
        need[hit] = np.maximum(need_of[at[hit]], params.min_votes)
    keep = vv >= need
    return top_candidates(Pairs(qi[keep], li[keep], vv[keep]), params)


@dataclass
class Candidates:
    """What one batch's candidate search found: the unordered pairs to verify, every vote, and
    (path, width) of the photos involved."""

    pairs: list[tuple[int, int]]
    votes: Pairs
    info: dict[int, tuple[str, int]]


def candidates(index: Index, store: CropStore, qids: list[int], qfeats: list[LocalFeatures],
               params: CropParams) -> Candidates:
    """Pairs worth verifying for the new photos ``qids`` (features ``qfeats``): each one's best-voted
    photos in the store and the batch, and the library photos it would be a best-voted of."""
    counts = np.array([len(f) for f in qfeats], np.int64)
    desc = np.concatenate([f.desc for f in qfeats if len(f)]) if counts.sum() else np.empty((0, 16), np.uint8)
    batch_seg = make_segment(desc, np.repeat(np.asarray(qids, np.int64), counts), params)
    n_store = len(store.segments)
    v = segment_votes(qfeats, [*store.segments, batch_seg], params, np.asarray(qids, np.int64),
                      release=lambda s: store.release(s) if s < n_store else None,
                      access=lambda s, dense: store.access(s, dense) if s < n_store else None)
    # Ties by path, so the choice does not depend on ids (as the one-shot scan does).
    voted = v.dist >= params.min_votes
    info = index.photo_paths_widths(np.unique(v.j[voted]).tolist() + list(qids))
    ids_by_path = np.array(sorted(info, key=lambda i: info[i][0]), np.int64)
    rank_of = np.empty(ids_by_path.size, np.int64)
    srt = np.argsort(ids_by_path)
    rank_of[srt] = np.arange(ids_by_path.size)  # rank of the k-th smallest id
    sorted_ids = ids_by_path[srt]
    tie = np.full(v.j.size, 1 << 40, np.int64)
    if sorted_ids.size:
        at = np.clip(np.searchsorted(sorted_ids, v.j), 0, sorted_ids.size - 1)
        hit = sorted_ids[at] == v.j
        tie[hit] = rank_of[at[hit]]
    fwd = top_candidates(v, params, tie)
    rev = _both_ways(index, v, set(qids), fwd, params)
    qa = np.asarray(qids, np.int64)
    pairs = sorted({(min(a, b), max(a, b)) for a, b in zip(
        np.r_[qa[fwd.i], qa[rev.i]].tolist(), np.r_[fwd.j, rev.j].tolist(), strict=True)})
    return Candidates(pairs, v, info)


def _search_batch(index: Index, store: CropStore, pending: list[int], params: CropParams, workers: int, now: float,
                  rep: SearchReport) -> None:
    t0 = time.perf_counter()
    feats = _features(index, pending)
    qids = [i for i in pending if i in feats]
    qfeats = [feats[i] for i in qids]
    cand = candidates(index, store, qids, qfeats, params)
    rep.library = store.photos + len(qids)
    pairs, info = cand.pairs, cand.info
    feats.update(_features(index, [x for p in pairs for x in p if x not in feats]))
    # The same direction whatever the ids: by path, as the one-shot scan does.
    path = {k: p for k, (p, _) in info.items()}
    jobs_ids = [(a, b) if path.get(a, "") <= path.get(b, "") else (b, a) for a, b in pairs
                if a in feats and b in feats]
    t1 = time.perf_counter()
    jobs = [(feats[a], feats[b]) for a, b in jobs_ids]
    verify = partial(_verify, params=params)
    results: list[Any]
    if workers > 1 and len(jobs) >= POOL_MIN_PAIRS:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["dupligoned.adapters.orb"])
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as ex:
            results = list(ex.map(verify, jobs, chunksize=64))
    else:
        results = [verify(j) for j in jobs]
    matched = [((a, b) if m.inner == 0 else (b, a), m) for (a, b), m in zip(jobs_ids, results, strict=True)
               if isinstance(m, CropMatch)]
    width = {k: w for k, (_, w) in info.items()}
    # A "crop" with more pixels for the scene than its "original" is a zoomed second shot.
    found = [(c, o, m.inliers) for (c, o), m in matched
             if is_crop_resolution(m, (feats[c].width, width.get(c, 0)), (feats[o].width, width.get(o, 0)), params)]
    t2 = time.perf_counter()
    kth = kth_votes(cand.votes, len(qids), params)
    counts = np.array([len(f) for f in qfeats], np.int64)
    desc = np.concatenate([f.desc for f in qfeats if len(f)]) if counts.sum() else np.empty((0, 16), np.uint8)
    store.append(desc, np.repeat(np.asarray(qids, np.int64), counts), len(qids))  # before the index says searched: see CropStore.append
    index.record_crop_search(pending, {q: int(k) for q, k in zip(qids, kth.tolist(), strict=True)}, found, now,
                             {q: f.base_nbytes for q, f in zip(qids, qfeats, strict=True) if f.alt.shape[0]})
    rep.searched += len(qids)
    rep.pairs_checked += len(jobs)
    rep.crops_found += len(found)
    rep.candidates_s += t1 - t0
    rep.verify_s += t2 - t1
    log.info("crops: %d new photos against %d: %d pairs checked, %d crops (%.2f s + %.2f s)",
             len(qids), rep.library, len(jobs), len(found), t1 - t0, t2 - t1)


def relations(index: Index, member_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Recorded (crop id, original id) pairs touching ``member_ids``, both photos analysed."""
    return index.crop_relations(member_ids)
