"""The one-shot scan: walk, analyse on every core, group, decide. Changes no file."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from dupligoned.adapters import companions, orb
from dupligoned.adapters.walk import walk_photos
from dupligoned.core.keeper import KeeperParams
from dupligoned.core.model import GroupDecision, PhotoInfo
from dupligoned.services.analyse import Failed, analyse_job

# The grouping stack (faiss, the crop index) is imported inside ``scan`` once the workers have
# their jobs, so its start-up overlaps with the decoding instead of delaying it, and a worker
# that unpickles ``_decide_one`` does not pay it.
if TYPE_CHECKING:
    from dupligoned.core.clustering import ClusterParams, EpsChoice


@dataclass(frozen=True)
class ScanError:
    path: str
    reason: str


@dataclass
class ScanResult:
    photos: list[PhotoInfo]
    groups: list[GroupDecision]
    errors: list[ScanError]
    eps: EpsChoice | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Each grouped photo's companions (Live Photo video, sidecars, Takeout JSON): they would
    # go and come back with it.
    companions: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self, *, reasons: bool = False) -> dict[str, object]:
        """The ``dupligone scan --json`` document; ``reasons`` adds each verdict's reason.
        Each cluster has ``companions``: path -> its companion files (every member, maybe [])."""
        clusters: list[dict[str, object]] = []
        for g in self.groups:
            c: dict[str, object] = {"members": list(g.members), "keep": g.keep, "delete": g.delete,
                                    "uncertain": g.uncertain}
            if reasons:
                c["reasons"] = {v.path: v.reason for v in g.verdicts}
            c["companions"] = {m: self.companions.get(m, []) for m in g.members}
            clusters.append(c)
        return {
            "photos": len(self.photos),
            "clusters": clusters,
            "errors": [{"path": e.path, "reason": e.reason} for e in self.errors],
        }


def _with_content_hashes(photos: list[PhotoInfo], errors: list[ScanError]) -> list[PhotoInfo]:
    """Fill in content hashes, reading again only files whose size another photo shares.

    Byte-identical files have equal sizes, so a photo of a size no other photo has is identical
    to none: "size:N" identifies its content within this scan as well as a hash would, and
    saves hashing every byte of a library of unique files (~4 ms per 12-MP JPEG).
    """
    from collections import Counter

    from dupligoned.adapters.decode import hash_file
    from dupligoned.errors import PhotoError

    shared = {size for size, n in Counter(p.size_bytes for p in photos).items() if n > 1}
    out: list[PhotoInfo] = []
    for p in photos:
        if p.size_bytes not in shared:
            out.append(replace(p, content_hash=f"size:{p.size_bytes}"))
            continue
        try:
            out.append(replace(p, content_hash=hash_file(p.path)))
        except PhotoError as exc:  # vanished or unreadable since it was decoded
            errors.append(ScanError(p.path, exc.reason))
    return out


def _is_under(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _decide_one(photos: list[PhotoInfo], params: KeeperParams) -> GroupDecision:
    from dupligoned.services.decide import decide_group

    return decide_group(photos, params)


# Below this many candidate pairs (~0.5 ms each) verification stays in this process: sending
# them to the pool and back costs more (a 60-photo scan's 14 pairs: 8 ms here, ~50 ms there).
POOL_VERIFY_MIN = 200


def _crop_map(pool: ProcessPoolExecutor | None) -> Callable[..., Iterable[object]] | None:
    """Verification of crop candidates, on the pool when there is one and it pays."""
    if pool is None:
        return None

    def verify_map(fn: Callable[..., object], jobs: Sequence[object]) -> Iterable[object]:
        if len(jobs) < POOL_VERIFY_MIN:
            return map(fn, jobs)
        return pool.map(fn, jobs, chunksize=64)

    return verify_map


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads only contend


# How workers start. A plain fork is the fastest: the workers begin at once with the analysis
# modules this module already imported (a 100-photo scan: 3.3 s -> 3.0 s). It is only safe in a
# process that runs no other thread (a lock held by one at fork time stays held in the child),
# so elsewhere the workers come from a fork server: a fresh interpreter that imports the analysis
# modules once and forks each worker from that (one start-up instead of N with spawn).
_PRELOAD = ["dupligoned.services.analyse", "dupligoned.services.decide"]


def _start_method() -> str:
    if threading.active_count() == 1 and "fork" in mp.get_all_start_methods():
        return "fork"
    return "forkserver"


def _make_pool(workers: int) -> ProcessPoolExecutor:
    method = _start_method()
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(_PRELOAD)
    else:
        # OpenCV's thread pool, once this process has used it (an earlier scan verified crops
        # here), does not survive a fork: a child that touches it waits forever for threads it
        # does not have. One thread here means no pool to inherit (``scan`` restores it).
        import cv2

        cv2.setNumThreads(1)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)


def _chunksize(jobs: int, workers: int) -> int:
    # Photos go out one by one until a scan is big enough for the pool's per-task overhead to
    # matter: the last chunk of a worker is the time the other cores sit idle at the end (a
    # 60-photo scan: 1.57 -> 1.54 s with chunks of 1 instead of 7). At most 16 photos (a 12-MP
    # JPEG takes ~40 ms) so the progress bar moves and a slow file does not hold a whole chunk.
    return max(1, min(16, jobs // (workers * 64)))


def scan(
    roots: Iterable[str],
    *,
    workers: int | None = None,
    protect: Sequence[str] = (),
    cluster_params: ClusterParams | None = None,
    keeper_params: KeeperParams = KeeperParams(),
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Analyse every photo under ``roots`` and group them.

    ``protect`` folders' photos are never recommended for deletion. ``progress(done, total)``
    is called as photos are analysed. ``cluster_params`` None means the defaults.
    """
    import time

    t0 = time.perf_counter()
    protect_abs = [os.path.realpath(p) for p in protect]
    paths = list(walk_photos(roots))
    jobs = [(p, _is_under(os.path.realpath(p), protect_abs)) for p in paths]
    workers = workers or os.cpu_count() or 1
    photos: list[PhotoInfo] = []
    errors: list[ScanError] = []
    t1 = time.perf_counter()
    import cv2

    opencv_threads = cv2.getNumThreads()
    pool = _make_pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results: Iterable[PhotoInfo | Failed]
        if pool is None:
            results = map(analyse_job, jobs)
        else:
            results = pool.map(analyse_job, jobs, chunksize=_chunksize(len(jobs), workers))
        # Every job is queued now: import the grouping stack while the workers decode.
        from dupligoned.core import originals
        from dupligoned.core.clustering import ClusterParams
        from dupligoned.services.bursts import features_in_extra
        from dupligoned.services.bursts import links as burst_links
        from dupligoned.services.crops import find_crops, mark_crops
        from dupligoned.services.decide import decide_group
        from dupligoned.services.grouping import group_photos

        cluster_params = cluster_params or ClusterParams()
        for done, r in enumerate(results, 1):
            if isinstance(r, Failed):
                errors.append(ScanError(r.path, r.reason))
            else:
                photos.append(r)
            if progress:
                progress(done, len(jobs))
        photos = _with_content_hashes(photos, errors)
        t2 = time.perf_counter()
        # Heavy crops (issue 4): verified pairs join the grouping; crops are noted for the keeper.
        crops = find_crops(photos, map_fn=_crop_map(pool)) if orb.crops_enabled() else None
        if crops is not None:
            photos = mark_crops(photos, crops.crop_of)
        # A RAW+JPEG pair is one shot whatever the hash distance of the two developments, and
        # so is a burst of one view, whatever the frames' hash distance.
        verified = originals.join_links(crops.verified if crops else None, originals.pair_links(photos))
        if crops is not None:
            verified = originals.join_links(verified, burst_links(photos, features_in_extra(photos)))
        grouping = group_photos(photos, cluster_params, verified=verified)
        t3 = time.perf_counter()
        members = [[photos[k] for k in g] for g in grouping.groups]
        if pool is None:
            decisions = [decide_group(m, keeper_params) for m in members]
        else:
            decisions = list(pool.map(partial(_decide_one, params=keeper_params), members, chunksize=4))
        t4 = time.perf_counter()
    finally:
        if pool is not None:
            pool.shutdown()
        cv2.setNumThreads(opencv_threads)
    errors.sort(key=lambda e: e.path)
    listing = companions.FolderListing()
    comps = {m: list(listing.companions_of(m).all) for g in decisions for m in g.members}
    return ScanResult(
        photos, decisions, errors, grouping.eps,
        {"walk": t1 - t0, "analyse": t2 - t1, "group": t3 - t2, "decide": t4 - t3}, comps,
    )
