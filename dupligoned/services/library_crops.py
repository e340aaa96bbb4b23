"""The crop stage in the daemon: new photos matched against the whole library, once each.

Workers send each photo's local features with its analysis; ``Ingest`` keeps them in
``photo_features`` (``crops_searched = 0``). Before sessions are clustered, ``search_pending``
takes the photos not yet searched, proposes candidates against every analysed photo of the
library (``core.crop_search.StreamedQuery``: the new photos are indexed, the library's stored
descriptors stream past them a block at a time, so nothing library-sized stays in memory),
verifies the candidates exactly (``orb.match``) and records the verified crops in ``crop_pairs``.
Whichever photo arrives later finds the pair — a crop of an old original, or the original of an
old crop. ``relations`` hands clustering the recorded pairs of its members.

A photo analysed again (new content) loses its pairs and is searched again (``Ingest``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from dupligoned.adapters import orb
from dupligoned.adapters.index import Index
from dupligoned.core.crop_search import StreamedQuery, descriptors_of_blobs
from dupligoned.core.crops import CropMatch, CropParams, LocalFeatures, is_crop_resolution

log = logging.getLogger("dupligone.crops")

QUERY_BATCH = 2_000  # new photos searched together: ~25 MB of query index
LIBRARY_BLOCK = 4_000  # library photos streamed at once: ~40 MB while a block is searched
POOL_MIN_PAIRS = 4_000  # fewer pairs (about 2 s) are verified in the daemon itself
SQL_CHUNK = 500

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


def _features(index: Index, ids: Sequence[int]) -> dict[int, LocalFeatures]:
    out: dict[int, LocalFeatures] = {}
    ids = list(ids)
    for k in range(0, len(ids), SQL_CHUNK):
        chunk = ids[k : k + SQL_CHUNK]
        for r in index.conn.execute(
                f"SELECT photo_id, data FROM photo_features WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk):
            out[int(r[0])] = LocalFeatures.from_bytes(bytes(r[1]))
    return out


def _photo_column(index: Index, ids: Iterable[int], column: str) -> dict[int, Any]:
    """``photos.<column>`` of each id (``column`` is one of ours, never user input)."""
    out: dict[int, Any] = {}
    lst = sorted(set(int(i) for i in ids))
    for k in range(0, len(lst), SQL_CHUNK):
        chunk = lst[k : k + SQL_CHUNK]
        out.update((int(r[0]), r[1]) for r in index.conn.execute(
            f"SELECT id, {column} FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return out


def _paths(index: Index, ids: Iterable[int]) -> dict[int, str]:
    return {k: str(v) for k, v in _photo_column(index, ids, "path").items()}


def _widths(index: Index, ids: Iterable[int]) -> dict[int, int]:
    return {k: int(v) for k, v in _photo_column(index, ids, "width").items() if v is not None}


def _stream_library(index: Index, query: StreamedQuery, block: int) -> int:
    """Feed every analysed photo's descriptors to ``query``; returns how many photos."""
    n, after = 0, -1
    while True:
        rows = index.conn.execute(
            "SELECT f.photo_id, f.data FROM photo_features f JOIN photos p ON p.id = f.photo_id "
            "WHERE p.status = 'ok' AND f.photo_id > ? ORDER BY f.photo_id LIMIT ?", (after, block)).fetchall()
        if not rows:
            return n
        ids = np.array([int(r[0]) for r in rows], np.int64)
        desc, owner = descriptors_of_blobs([bytes(r[1]) for r in rows])
        query.feed(desc, ids[owner])
        n += len(rows)
        after = int(ids[-1])


def search_pending(
    index: Index,
    params: CropParams = CropParams(),
    *,
    workers: int = 1,
    now: float | None = None,
    query_batch: int = QUERY_BATCH,
    library_block: int = LIBRARY_BLOCK,
) -> SearchReport:
    """Match every analysed photo not yet searched against the library; record verified crops.

    Each batch commits its pairs and marks its photos searched in one transaction, so an
    interrupted search repeats one batch at most. ``workers`` > 1 verifies large batches on a
    process pool that lives only for the batch (the idle daemon keeps no pool).
    """
    rep = SearchReport()
    while True:
        pending = [int(r[0]) for r in index.conn.execute(
            "SELECT f.photo_id FROM photo_features f JOIN photos p ON p.id = f.photo_id "
            "WHERE f.crops_searched = 0 AND p.status = 'ok' ORDER BY f.photo_id LIMIT ?", (query_batch,))]
        if not pending:
            return rep
        _search_batch(index, pending, params, workers, time.time() if now is None else now, library_block, rep)


def _search_batch(index: Index, pending: list[int], params: CropParams, workers: int, now: float,
                  library_block: int, rep: SearchReport) -> None:
    t0 = time.perf_counter()
    feats = _features(index, pending)
    qids = [i for i in pending if i in feats]
    query = StreamedQuery([feats[i] for i in qids], qids, params)
    rep.library = _stream_library(index, query, library_block)

    def rank(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        paths = _paths(index, ids.tolist())
        order = sorted(range(len(ids)), key=lambda k: paths.get(int(ids[k]), ""))
        r = np.empty(len(ids), np.int64)
        r[order] = np.arange(len(ids))
        return r

    cand = query.candidates(rank)
    qa = np.asarray(qids, np.int64)[cand.i] if len(cand) else np.empty(0, np.int64)
    pairs = sorted({(min(a, b), max(a, b)) for a, b in zip(qa.tolist(), cand.j.tolist(), strict=True)})
    paths = _paths(index, [x for p in pairs for x in p])
    feats.update(_features(index, [x for p in pairs for x in p if x not in feats]))
    # The same direction whatever the ids: by path, as the one-shot scan does.
    jobs_ids = [(a, b) if paths.get(a, "") <= paths.get(b, "") else (b, a) for a, b in pairs
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
    widths = _widths(index, [x for (c, o), _ in matched for x in (c, o)])
    # A "crop" with more pixels for the scene than its "original" is a zoomed second shot.
    found = [((c, o), m.inliers) for (c, o), m in matched
             if is_crop_resolution(m, (feats[c].width, widths.get(c, 0)), (feats[o].width, widths.get(o, 0)), params)]
    t2 = time.perf_counter()
    with index.tx() as conn:
        # Only photos still as they were searched: a result applied meanwhile reset its row.
        alive = {int(r[0]) for r in conn.execute(
            f"SELECT photo_id FROM photo_features WHERE photo_id IN ({','.join('?' * len(qids))}) "
            "AND crops_searched = 0", qids)} if qids else set()
        for (crop, orig), inliers in found:
            conn.execute("INSERT INTO crop_pairs(crop_id, original_id, inliers, found_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(crop_id, original_id) DO UPDATE SET inliers = excluded.inliers",
                         (crop, orig, inliers, now))
        for k in range(0, len(pending), SQL_CHUNK):
            chunk = [i for i in pending[k : k + SQL_CHUNK] if i in alive or i not in feats]
            if chunk:
                conn.execute(f"UPDATE photo_features SET crops_searched = 1 WHERE photo_id IN ({','.join('?' * len(chunk))})",
                             chunk)
    rep.searched += len(qids)
    rep.pairs_checked += len(jobs)
    rep.crops_found += len(found)
    rep.candidates_s += t1 - t0
    rep.verify_s += t2 - t1
    log.info("crops: %d new photos against %d: %d pairs checked, %d crops (%.1f s + %.1f s)",
             len(qids), rep.library, len(jobs), len(found), t1 - t0, t2 - t1)


def relations(index: Index, member_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Recorded (crop id, original id) pairs touching ``member_ids``, both photos analysed."""
    ids = sorted(set(member_ids))
    out: set[tuple[int, int]] = set()
    for k in range(0, len(ids), SQL_CHUNK):
        chunk = ids[k : k + SQL_CHUNK]
        q = ",".join("?" * len(chunk))
        for r in index.conn.execute(
                "SELECT c.crop_id, c.original_id FROM crop_pairs c JOIN photos a ON a.id = c.crop_id "
                f"JOIN photos b ON b.id = c.original_id WHERE (c.crop_id IN ({q}) OR c.original_id IN ({q})) "
                "AND a.status = 'ok' AND b.status = 'ok'", chunk + chunk):
            out.add((int(r[0]), int(r[1])))
    return sorted(out)
