"""OpenCV's part of the crop stage: ORB features from the working image, and pair matching.

``extract`` runs on the greyscale working image the decode adapter already made (no second
decode), in the analysing worker. ``match`` does the ratio test, the mutual check and the RANSAC
similarity fit, then hands the geometry to ``core.crops.check_crop``, which decides; ``is_burst``
hands the same fit to ``core.bursts.check_burst``.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import numpy.typing as npt

from dupligoned.core.bursts import BurstParams, check_burst
from dupligoned.core.crops import CropMatch, CropParams, LocalFeatures, check_crop, quantise

FEATURES_KEY = "crop_features"  # the key in ``PhotoInfo.extra``
DISABLE_ENV = "DUPLIGONE_NO_CROPS"  # set to 1 to turn the crop stage off (features and matching)

FEATURES_VERSION = 3  # of what ``extract`` keeps; photos with older features are analysed again
GRID = 4  # cells a side for spreading the kept keypoints
_orb_cache: dict[tuple[int, int], cv2.ORB] = {}


def crops_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _orb(n: int, levels: int = len(CropParams().level_weights)) -> cv2.ORB:
    orb = _orb_cache.get((n, levels))
    if orb is None:
        # edgeThreshold 15 (not 31) lets keypoints sit nearer the border: a crop's border is
        # in the middle of its original, where both must have features.
        orb = _orb_cache[n, levels] = cv2.ORB_create(  # type: ignore[attr-defined]
            nfeatures=n, scaleFactor=1.2, nlevels=levels, edgeThreshold=15, patchSize=31, fastThreshold=10
        )
    return orb


def level_quotas(params: CropParams) -> npt.NDArray[np.int64]:
    """Keypoints kept per pyramid level (finest first): ``max_keypoints`` by ``level_weights``."""
    w = np.asarray(params.level_weights, np.float64)
    q: npt.NDArray[np.int64] = np.floor(w / w.sum() * params.max_keypoints).astype(np.int64)
    q[int(np.argmax(w))] += params.max_keypoints - int(q.sum())
    return q


def extract(work: npt.NDArray[np.uint8], params: CropParams = CropParams()) -> LocalFeatures:
    """At most ``max_keypoints`` ORB keypoints of a greyscale working image: per pyramid level
    its quota (``level_quotas``) of the strongest, spread over a grid.

    Keypoints are detected first and only the kept ones are described: the same descriptors
    ``detectAndCompute`` gives them (tested), for a fraction of the cost (1,500 detected, 99
    kept: 4.7 -> 3.6 ms a photo, measured on 12-MP camera JPEGs).
    """
    h, w = work.shape[:2]
    thumb = np.asarray(cv2.resize(work, (params.thumb_px, params.thumb_px), interpolation=cv2.INTER_AREA), np.uint8)
    levels = len(params.level_weights)
    orb = _orb(params.detect_keypoints, levels)
    kps = orb.detect(work, None)
    if not kps:
        return quantise(np.empty((0, 2)), np.zeros((0, 32), np.uint8), w, h, thumb)
    n = len(kps)
    resp = np.fromiter((k.response for k in kps), np.float64, n)
    xy = np.asarray(cv2.KeyPoint.convert(kps), np.float64).reshape(n, 2)
    level = np.fromiter((k.octave for k in kps), np.int64, n)
    # Strongest first (ties by position, so the choice is deterministic).
    order = np.lexsort((xy[:, 1], xy[:, 0], -resp))
    g = GRID
    cell = (np.minimum(xy[:, 0] * g // w, g - 1) * g + np.minimum(xy[:, 1] * g // h, g - 1)).astype(np.int64)
    # Each level on its own: a crop shown s× larger than in its original has at level l + log(s)
    # / log(1.2) what the original has at level l, and keeps the same strongest points there
    # when both choose within the level. A level short of points (a small or smooth image's
    # coarse levels) leaves its quota to the next finer one.
    quota = level_quotas(params)
    parts = []
    spare = 0
    for lv in range(levels - 1, -1, -1):
        take = _spread(order[level[order] == lv], cell, int(quota[lv]) + spare, params.cell_share)
        spare += int(quota[lv]) - take.size
        parts.append(take)
    chosen = np.concatenate(parts)
    # ``compute`` returns keypoints grouped by pyramid level, as ``detect`` made them: pass them
    # in detection order, check each came back, and put the descriptors in the chosen order.
    idx = np.sort(chosen)
    given = [kps[k] for k in idx]
    described, desc = orb.compute(work, given)
    same = desc is not None and len(described) == len(given) and all(
        d.pt == g.pt and d.octave == g.octave for d, g in zip(described, given, strict=True))
    if same:
        desc = np.asarray(desc)[np.searchsorted(idx, chosen)]
    else:  # a keypoint was dropped or moved: describe them all, as detectAndCompute does
        _, desc_all = orb.compute(work, kps)
        desc = np.asarray(desc_all)[chosen]
    base: npt.NDArray[np.uint8] = np.asarray(desc, np.uint8)
    coarse = np.flatnonzero(level[chosen] >= params.alt_min_level)
    alt = None
    if params.alt_scales:
        alt = np.repeat(base[None], len(params.alt_scales), axis=0)
        for n, f in enumerate(params.alt_scales):
            if coarse.size:
                alt[n, coarse] = _described_at(work, [kps[k] for k in chosen[coarse]], f, base[coarse], orb)
    return quantise(xy[chosen], base, w, h, thumb, alt)


def _described_at(
    work: npt.NDArray[np.uint8], kps: list[cv2.KeyPoint], factor: float, base: npt.NDArray[np.uint8], orb: cv2.ORB
) -> npt.NDArray[np.uint8]:
    """(K, 32) descriptors of ``kps`` on the image scaled by ``factor``, each at its own
    pyramid level (so described ``factor`` × its scale); ``base``'s where ORB cannot (too near
    the border)."""
    h, w = work.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    img = cv2.resize(work, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    moved = [cv2.KeyPoint(k.pt[0] * factor, k.pt[1] * factor, k.size * factor, k.angle, k.response, k.octave, n)
             for n, k in enumerate(kps)]
    described, desc = orb.compute(img, moved)
    out = base.copy()
    if desc is not None:
        ids = np.fromiter((d.class_id for d in described), np.int64, len(described))
        out[ids] = np.asarray(desc, np.uint8)[:, : out.shape[1]]
    return out


def _spread(
    order: npt.NDArray[np.int64], cell: npt.NDArray[np.int64], n: int, share: float
) -> npt.NDArray[np.int64]:
    """The first ``n`` of ``order``, at most ``share`` × the even share in each grid cell: the
    strongest responses cluster on one textured patch, and a crop of another part of the photo
    would find nothing to match."""
    if n <= 0 or not order.size:
        return order[:0]
    per_cell = max(1, math.ceil(share * n / (GRID * GRID)))
    cells = cell[order]
    by_cell = np.argsort(cells, kind="stable")  # within a cell, still strongest first
    sorted_cells = cells[by_cell]
    run_start = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    starts = np.repeat(run_start, np.diff(np.r_[run_start, cells.size]))
    seen = np.empty(cells.size, np.int64)
    seen[by_cell] = np.arange(cells.size) - starts  # how many stronger ones share the cell
    return order[seen < per_cell][:n]


def photo_extra(work: npt.NDArray[np.uint8], params: CropParams = CropParams()) -> dict[str, object]:
    """What the crop stage keeps in ``PhotoInfo.extra`` (nothing when the stage is off)."""
    if not crops_enabled():
        return {}
    return {FEATURES_KEY: extract(work, params)}


def _mutual_matches(da: npt.NDArray[np.uint8], db: npt.NDArray[np.uint8], ratio: float) -> list[tuple[int, int]]:
    """(a index, b index) pairs each the other's nearest descriptor, and nearer than ``ratio``
    × the second nearest, both ways (Lowe's ratio test and the mutual check). One distance
    matrix for both directions: what two brute-force k=2 searches give, in about 2/3 the time
    (most pairs checked are unrelated photos, rejected here)."""
    if da.shape[0] < 2 or db.shape[0] < 2:
        return []
    wa = np.ascontiguousarray(da).view(np.uint64)
    wb = np.ascontiguousarray(db).view(np.uint64)
    d = np.bitwise_count(wa[:, None, 0] ^ wb[None, :, 0]) + np.bitwise_count(wa[:, None, 1] ^ wb[None, :, 1])
    near_b = np.argmin(d, axis=1)  # for each a, its nearest b
    near_a = np.argmin(d, axis=0)
    two_b = np.partition(d, 1, axis=1)[:, :2].astype(np.float64)
    two_a = np.partition(d, 1, axis=0)[:2, :].astype(np.float64)
    ok_a = two_b[:, 0] < ratio * two_b[:, 1]
    ok_b = two_a[0] < ratio * two_a[1]
    i = np.flatnonzero(ok_a)
    j = near_b[i]
    keep = ok_b[j] & (near_a[j] == i)
    return list(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


def match(a: LocalFeatures, b: LocalFeatures, params: CropParams = CropParams()) -> CropMatch | None:
    """Is one of ``a``, ``b`` a crop of the other? ``CropMatch.inner`` is 0 for a, 1 for b.

    Ratio-tested, mutual matches give a first similarity (RANSAC, at least ``min_seed``
    inliers); then every keypoint pair it brings within ``ransac_px`` whose descriptors are
    within ``guided_bits`` is taken (each keypoint once, closest descriptors first). A crop's
    keypoints often have the second nearest descriptor close to the nearest (a scaled patch is
    described less sharply), so the ratio test alone keeps too few of them to decide; the
    similarity finds them again. The result is refitted on those pairs and judged by
    ``core.crops.check_crop``.
    """
    fit = _fit(a, b, params)
    if fit is None:
        return None
    m, pa, pb = fit
    all_a, all_b = a.points(), b.points()
    return check_crop(m, pa, pb, (a.width, a.height), (b.width, b.height), params, all_a, all_b, a.thumb, b.thumb)


def is_burst(a: LocalFeatures, b: LocalFeatures, params: BurstParams = BurstParams()) -> bool:
    """Are ``a`` and ``b`` two frames of one view (``core.bursts.check_burst``)? The same
    matching as a crop's: mutual ratio-tested matches, RANSAC, the guided pass, the refit."""
    fit = _fit(a, b, params.fit)
    if fit is None:
        return False
    m, pa, pb = fit
    return check_burst(m, pa, pb, (a.width, a.height), (b.width, b.height), params, a.thumb, b.thumb)


def _fit(
    a: LocalFeatures, b: LocalFeatures, params: CropParams
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    """The similarity mapping b's working-image pixels onto a's and its inlier pairs, or None
    when fewer than ``min_inliers`` pairs agree on one."""
    if len(a) < params.min_inliers or len(b) < params.min_inliers:
        return None
    pairs = _mutual_matches(a.desc, b.desc, params.ratio)
    if len(pairs) < params.min_seed:
        return None
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    all_a, all_b = a.points(), b.points()
    m, mask = cv2.estimateAffinePartial2D(
        all_b[ib], all_a[ia], method=cv2.RANSAC, ransacReprojThreshold=params.ransac_px, maxIters=2000,
        confidence=0.999
    )
    if m is None or mask is None or int(mask.sum()) < params.min_seed:
        return None
    seed = mask.ravel().astype(bool)
    m = _least_squares_similarity(all_b[ib][seed], all_a[ia][seed])
    gi, gj = _guided(a, b, m, params)
    if gi.size < params.min_inliers:
        return None
    pa, pb = all_a[gi], all_b[gj]
    return _least_squares_similarity(pb, pa), pa, pb


def _guided(
    a: LocalFeatures, b: LocalFeatures, m: npt.NDArray[np.float64], params: CropParams
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(a index, b index) of keypoint pairs the similarity ``m`` (b's pixels onto a's) brings
    within ``ransac_px``, descriptors within ``guided_bits``: each keypoint in one pair at most,
    the closest descriptors first."""
    pa, pb = a.points().astype(np.float64), b.points().astype(np.float64)
    mb = pb @ m[:, :2].T + m[:, 2]
    near = np.hypot(mb[:, None, 0] - pa[None, :, 0], mb[:, None, 1] - pa[None, :, 1]) <= params.guided_px
    jb, ia = np.nonzero(near)
    if not jb.size:
        return ia, jb
    wa = np.ascontiguousarray(a.desc).view(np.uint64)
    wb = np.ascontiguousarray(b.desc).view(np.uint64)
    bits = np.bitwise_count(wa[ia] ^ wb[jb]).sum(axis=1)
    ok = bits <= params.guided_bits
    ia, jb, bits = ia[ok], jb[ok], bits[ok]
    order = np.lexsort((jb, ia, bits))
    used_a: set[int] = set()
    used_b: set[int] = set()
    out_a, out_b = [], []
    for k in order.tolist():
        i, j = int(ia[k]), int(jb[k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out_a.append(i)
            out_b.append(j)
    return np.array(out_a, np.int64), np.array(out_b, np.int64)


def _least_squares_similarity(src: npt.NDArray[np.float32], dst: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The similarity (2×3) mapping ``src`` onto ``dst`` best in least squares: RANSAC's fit
    uses a minimal sample; the refit on every inlier gives the residuals the check reads."""
    x, y = src[:, 0].astype(np.float64), src[:, 1].astype(np.float64)
    one, zero = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    target = np.concatenate([dst[:, 0], dst[:, 1]]).astype(np.float64)
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def features_of(extra: dict[str, object]) -> LocalFeatures | None:
    f = extra.get(FEATURES_KEY)
    return f if isinstance(f, LocalFeatures) else None
