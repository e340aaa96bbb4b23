"""Bursts: frames one camera took of one scene seconds apart, grouped whatever their hash distance.

The frames of a burst are distinct captures of one view: the camera moved a little between them
(a few per cent of the frame) and the subject or the shake blurred some of them. A shift of 6%
moves the perceptual hashes 15–24 bits, as far as two different photos of a similar scene, so
the hashes alone split a burst: its sharp frame ends up alone and a blurred one is "kept" in the
other group. Two pieces of evidence that are hard to meet by chance join them instead:

1. ``candidate_pairs``: the same camera model, capture times ``window_s`` apart at most, not the
   same file. Cheap (a sort by time), and it leaves out everything but a camera's own sequence.
2. ``check_burst``: the two frames' local features (the crop stage's ORB keypoints) fit one
   similarity of scale about 1, no rotation, at least ``min_inliers`` keypoint pairs within
   1.5 px, the frames overlapping over most of each (a panorama's frames overlap a third: they
   are parts of one picture, never copies), and the overlap correlating as the same pixels.

Measured (bench/README "Bursts"): on every pair of different photos within 26 hash bits in dev
and our unseen sets (17,039 pairs, no time or camera condition) the check accepts none; it
accepts 94% of the pairs of frames of the bursts set and all of dev's.

Pure: times are EXIF strings, features are arrays; OpenCV's matching is in ``adapters/orb.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dupligoned.core.crops import CropParams, appearance_ncc
from dupligoned.core.originals import capture_seconds


@dataclass(frozen=True)
class BurstParams:
    window_s: float = 10.0  # capture times this far apart at most (a burst, a few tries of one shot)
    min_inliers: int = 8  # keypoint pairs on the similarity (unrelated photos: none passed at 6)
    max_scale_change: float = 0.12  # a burst is shot from one place: no zoom between frames
    max_rotation_deg: float = 3.0
    max_median_residual_px: float = 1.5  # one view, moved: no parallax to speak of
    min_overlap: float = 0.75  # of each frame: a panorama's frames overlap far less
    min_appearance_ncc: float = 0.85  # the overlap correlates as the same scene (blur lowers it little)
    # The keypoint fit (``adapters/orb._fit``) with the crop stage's first settings, with which
    # every burst figure was measured (bench/README "Bursts and captures"): not moved with the
    # crop stage's looser ones.
    fit: CropParams = CropParams(ransac_px=3.0, min_seed=4, guided_px=1.5, guided_bits=40)

    def __post_init__(self) -> None:
        if self.window_s < 0 or self.min_inliers < 4 or not 0 < self.min_overlap <= 1:
            raise ValueError("need window_s ≥ 0, min_inliers ≥ 4 and min_overlap in (0, 1]")


class Capture(Protocol):
    """What pairing needs of a photo (``PhotoInfo`` has it)."""

    @property
    def camera(self) -> str | None: ...
    @property
    def taken_at(self) -> str | None: ...
    @property
    def content_hash(self) -> str: ...


def candidate_pairs(photos: Sequence[Capture], params: BurstParams = BurstParams()) -> list[tuple[int, int]]:
    """(lo, hi) index pairs that could be frames of one burst: one camera, close in time."""
    by_camera: dict[str, list[tuple[float, int]]] = {}
    for k, p in enumerate(photos):
        t = capture_seconds(p.taken_at)
        if p.camera and t is not None:
            by_camera.setdefault(p.camera.strip(), []).append((t, k))
    out: set[tuple[int, int]] = set()
    for shots in by_camera.values():
        shots.sort()
        for x, (t, a) in enumerate(shots):
            for u, b in shots[x + 1 :]:
                if u - t > params.window_s:
                    break
                if photos[a].content_hash != photos[b].content_hash:
                    out.add((min(a, b), max(a, b)))
    return sorted(out)


def check_burst(
    transform: npt.NDArray[np.floating],
    pts_a: npt.NDArray[np.floating],
    pts_b: npt.NDArray[np.floating],
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    params: BurstParams = BurstParams(),
    thumb_a: npt.NDArray[np.uint8] | None = None,
    thumb_b: npt.NDArray[np.uint8] | None = None,
) -> bool:
    """Are a and b two frames of one view? ``transform`` maps b's working-image pixels onto a's
    (a 2×3 similarity fitted on the inlier pairs ``pts_a``/``pts_b``); sizes are (width, height)
    of the working images; thumbnails are each frame's square grey thumbnail."""
    m = np.asarray(transform, np.float64)
    pa = np.asarray(pts_a, np.float64).reshape(-1, 2)
    pb = np.asarray(pts_b, np.float64).reshape(-1, 2)
    if pa.shape[0] < params.min_inliers or not np.all(np.isfinite(m)):
        return False
    s = math.hypot(m[0, 0], m[1, 0])
    if abs(s - 1.0) > params.max_scale_change:  # working images share one long edge
        return False
    if abs(math.degrees(math.atan2(m[1, 0], m[0, 0]))) > params.max_rotation_deg:
        return False
    resid = np.hypot(*(pb @ m[:, :2].T + m[:, 2] - pa).T)
    if float(np.median(resid)) > params.max_median_residual_px:
        return False
    # b's frame mapped into a's: the shared part, as a share of each frame.
    (wa, ha), (wb, hb) = size_a, size_b
    corners = np.array([[0, 0], [wb, 0], [0, hb], [wb, hb]], np.float64) @ m[:, :2].T + m[:, 2]
    x0, x1 = max(0.0, corners[:, 0].min()), min(float(wa), corners[:, 0].max())
    y0, y1 = max(0.0, corners[:, 1].min()), min(float(ha), corners[:, 1].max())
    shared = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if shared < params.min_overlap * wa * ha or shared < params.min_overlap * s * s * wb * hb:
        return False
    if thumb_a is not None and thumb_b is not None and thumb_a.size and thumb_b.size:
        if appearance_ncc(m, thumb_b, thumb_a, size_b, size_a, blocks=True) < params.min_appearance_ncc:
            return False
    return True


def burst_links(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every pair within each connected set of verified frame pairs, as sorted (lo, hi): the
    first and the last frame of a burst may be far apart in hashes and never checked against
    each other, and the grouping's diameter check must not split the burst between them."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    sets: dict[int, list[int]] = {}
    for x in list(parent):
        sets.setdefault(root(x), []).append(x)
    return sorted((a, b) for members in sets.values() for i, a in enumerate(sorted(members))
                  for b in sorted(members)[i + 1 :])
