"""The one-shot scan: walk, analyse on every core, group, decide. Changes no file."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from dupligoned.adapters.walk import walk_photos
from dupligoned.core.clustering import ClusterParams, EpsChoice
from dupligoned.core.keeper import KeeperParams
from dupligoned.core.model import GroupDecision, PhotoInfo
from dupligoned.errors import PhotoError
from dupligoned.services.analyse import analyse_file
from dupligoned.services.decide import decide_group
from dupligoned.services.grouping import group_photos


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

    def to_json(self) -> dict[str, object]:
        return {
            "photos": len(self.photos),
            "clusters": [
                {"members": list(g.members), "keep": g.keep, "delete": g.delete,
                 "reasons": {v.path: v.reason for v in g.verdicts}}
                for g in self.groups
            ],
            "errors": [{"path": e.path, "reason": e.reason} for e in self.errors],
        }


def _is_under(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _analyse_one(args: tuple[str, bool]) -> PhotoInfo | ScanError:
    path, protected = args
    try:
        return analyse_file(path, protected=protected)
    except PhotoError as exc:
        return ScanError(path, exc.reason)


def _decide_one(photos: list[PhotoInfo]) -> GroupDecision:
    return decide_group(photos)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads only contend


def scan(
    roots: Iterable[str],
    *,
    workers: int | None = None,
    protect: Sequence[str] = (),
    cluster_params: ClusterParams = ClusterParams(),
    keeper_params: KeeperParams = KeeperParams(),
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Analyse every photo under ``roots`` and group them.

    ``protect`` folders' photos are never recommended for deletion. ``progress(done, total)``
    is called as photos are analysed.
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
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) if workers > 1 else None
    try:
        results: Iterable[PhotoInfo | ScanError]
        if pool is None:
            results = map(_analyse_one, jobs)
        else:
            results = pool.map(_analyse_one, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8) or 1)))
        for done, r in enumerate(results, 1):
            (errors if isinstance(r, ScanError) else photos).append(r)  # type: ignore[arg-type]
            if progress:
                progress(done, len(jobs))
        t2 = time.perf_counter()
        grouping = group_photos(photos, cluster_params)
        t3 = time.perf_counter()
        members = [[photos[k] for k in g] for g in grouping.groups]
        if pool is None:
            decisions = [decide_group(m, keeper_params) for m in members]
        else:
            decisions = list(pool.map(_decide_one, members, chunksize=4))
        t4 = time.perf_counter()
    finally:
        if pool is not None:
            pool.shutdown()
    errors.sort(key=lambda e: e.path)
    return ScanResult(
        photos, decisions, errors, grouping.eps,
        {"walk": t1 - t0, "analyse": t2 - t1, "group": t3 - t2, "decide": t4 - t3},
    )
