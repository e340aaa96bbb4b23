"""Heavy crops: compact local features, a candidate index, and the exact geometric check.

A heavy crop (16:9, square, a quarter off each side) is as far from its original in hash distance
as an unrelated photo, so a second stage finds it from local features:

1. ``LocalFeatures``: per photo, a capped set of binary keypoint descriptors (the first 128 bits
   of ORB, which are its most discriminative tests) with positions quantised to 1/255 of the
   working image: 18 bytes a keypoint, 150 keypoints ≈ 2.9 KB. The adapter computes them.
2. ``CropIndex`` (``core/crop_index.py``): every descriptor in locality-sensitive hash tables
   (buckets keyed by fixed bit choices), no training, so it is the same whatever the library
   holds and grows by ``add``. A photo votes for the photos whose
   descriptors fall within ``match_bits`` of its own; each photo keeps its ``candidates_per_photo``
   best-voted others. New photos are queried against the library through the same code.
3. ``check_crop``: given the similarity transform RANSAC fitted on ratio-tested, mutual matches,
   decide whether one photo is a crop of the other, exactly: enough inliers, no rotation, a
   scale that makes it a real crop, the crop's frame inside the original, the inliers spread
   over the crop (not one logo or a line of text) and fitting tightly.

Pure: arrays in, value objects out. OpenCV matching lives in ``adapters/orb.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dupligoned.core.model import PhotoInfo

DESC_BYTES = 16  # 128 bits of each ORB descriptor
POS_LEVELS = 255  # positions quantised to 1/255 of the working image's width and height
CROP_OF_KEY = "crop_of"  # PhotoInfo.extra: the path of the photo this one was cropped from


@dataclass(frozen=True)
class CropParams:
    """Every threshold of the crop stage, with the principle behind each default.

    Sizes and distances are in working-image pixels (long edge 512) unless named otherwise.
    """

    # Features.
    # A crop keeping a quarter of the frame finds only the original's keypoints inside it: a
    # quarter of them. 99 (≤ 2 KB) left most such crops under 6 matches; 150 (2.9 KB) finds
    # 1.6× more of them (bench/README "Library scale").
    max_keypoints: int = 150  # 150 × 18 B + a 256 B thumbnail ≈ 2.9 KB
    detect_keypoints: int = 1500  # detected before the cap, so the cap keeps the strongest
    cell_share: float = 2.0  # no cell of a 4×4 grid keeps more than twice its even share
    # The budget per ORB pyramid level (scale 1.2 apart), finest first. A crop shown 2× larger
    # than in its original matches with its levels 4–7 the original's levels 0–3: each level
    # chosen on its own (not the strongest over all levels), a crop keeps at its coarse levels
    # the same points its original keeps at its fine ones. The fine levels get more: they are
    # what every crop of the photo is matched against.
    level_weights: tuple[float, ...] = (3, 3, 2, 1, 1, 1, 1, 1)
    # A crop shown s× larger meets its original's level l at level l + log(s) / log(1.2): a
    # fraction of a level off, up to half a level, which leaves its descriptors 15–30 bits from
    # the original's, where the hash tables rarely meet them. A photo being searched also
    # looks with its keypoints described at these scales (half a level either way, so one of
    # its three descriptors is at most a quarter of a level off): the query's alternates,
    # kept until the photo is searched, never stored in the crop index nor used to verify.
    # Off by default: (1.2**-0.5, 1.2**0.5) finds 1.5-2.4 points more of the labelled crop sets
    # (crop set R 0.954 -> 0.969, own 0.961 -> 0.985) and 5-9 more of the 151 crops planted at
    # 100k, but two more ORB passes a photo made the dev scan 14% slower than the issue-17
    # reference (1.00 without) and each 1M search pass 1.3-1.5x (bench/README).
    alt_scales: tuple[float, ...] = ()
    # ... for the keypoints of pyramid levels from this one up: what a crop shown 1.2² = 1.44× or
    # more larger than in its original matches with (its finer levels meet nothing there). The
    # query's descriptors then number 1.9× its keypoints, not 3×: at 1M photos each query
    # descriptor costs a binary search in every stored segment and table. (From level 3: 1.6×,
    # and the crop set's recall 0.969 → 0.954.)
    alt_min_level: int = 2
    # Candidates.
    match_bits: int = 32  # of 128: unrelated ORB descriptors sit near 64 ± 8, so 32 is 4σ away
    # Keypoints that must find a partner before a pair is worth checking. A heavy crop's
    # descriptors lie 15-30 bits from its original's, where the hash tables seldom meet them: at
    # 3, 12 of the 150 crops planted in bench/library_scale.py that verification accepts were
    # never checked; at 2, 4 of them are. The 1,000 new photos then check 4x the pairs (7,000
    # at 1M, about 2 s of verification), none of them accepted wrongly; the dev scan is 1%
    # slower and our own crop set's recall 0.961 -> 0.985 (bench/README "Crop verification").
    min_votes: int = 2
    candidates_per_photo: int = 8  # bounds the verification work to ≤ 8 pairs a photo
    hash_bits: int = 24  # bits of a bucket key: 16M buckets, under one descriptor each at 100k photos
    hash_tables: int = 5  # 5 × 24 of 128 bits; two descriptors 8% apart meet with 1-(1-.92²⁴)⁵ ≈ 52%
    # Fuller buckets (sky, repeated texture) are stop words: more than ``max_bucket``
    # descriptors, or in a large library more than ``stop_word_share`` times a bucket's even
    # share of them. A fixed cap made stop words of ever more buckets as the library grew (at
    # 1M photos, 9 descriptors a bucket on average): of the 150 crops planted in
    # bench/library_scale.py, 119 had their original among their candidates at 100k and 98 at
    # 1M. With the cap at 32 times the even share (286 at 1M; 64 still below 224,000 photos),
    # 119 at 1M, for 1.4x the search's time there (bench/README "Crop verification").
    max_bucket: int = 64
    stop_word_share: float = 32.0
    # Verification.
    ratio: float = 0.85  # Lowe's ratio test on the two nearest descriptors
    # Positions are kept to 1/255 of the working image: 2 px steps on its 512-px side, so a
    # keypoint pair of a true crop is up to 1 px off each way from quantisation alone, plus the
    # jitter of a keypoint found at a coarse pyramid level (a crop shown 2× larger is matched
    # with its levels 4-7). Under 3 / 4 / 1.5 px / 40 bits, 54 of the 150 crops planted in
    # bench/library_scale.py at 100k failed here with their original among the candidates
    # (too few pairs within 1.5 px); under these, 28. Every pair of the 673 dev photos
    # (226,000) and the 2,432 candidate pairs of that bench that are not crops: 0 accepted
    # either way; the inliers must still number ``min_inliers``, lie ``max_median_residual_px``
    # close and pass the appearance check (bench/README "Crop verification").
    ransac_px: float = 5.0  # the first, rough similarity: quantisation of both photos plus jitter
    min_seed: int = 3  # mutual ratio-tested matches on that first similarity, before the guided pass
    guided_px: float = 2.0  # ... then every pair it brings this close (one quantisation step)
    guided_bits: int = 48  # ... whose descriptors are ≤ 48 of 128 bits apart (unrelated: 64 ± 8, so 2σ)
    min_inliers: int = 6  # keypoint pairs on one similarity (random pairs: ≤ 5)
    max_rotation_deg: float = 3.0  # people crop, they do not rotate (EXIF turns are undone first)
    max_area_ratio: float = 0.9  # a crop keeps at most 90% of the frame (less: the hashes see it)
    min_scale: float = 0.25  # a crop keeps at least a quarter of each side: below, too little to tell
    # The crop's frame may stick out this share of the original's side: a similarity fitted on
    # inliers in one part of a crop puts its far corners a few percent off (the make_crops set's
    # 16:9 band of a portrait photo, its whole width kept: corners 5.5% out at 4%).
    frame_tolerance: float = 0.06
    # Inliers' hull covers this share of the crop at least: not one point. A crop whose detail
    # sits in one small patch (the same set: 8 inliers over 0.9%) passes at 0.5%; a shared logo
    # or line of text fails the coverage check below (``min_inlier_cover``) and the appearance.
    min_inlier_area: float = 0.005
    min_inlier_cover: float = 0.05  # ... and ≥ 5% of the hull of the keypoints each side has there
    thumb_px: int = 16  # side of the stored grey thumbnail (256 B) for the appearance check
    min_appearance_ncc: float = 0.85  # crop vs its place in the original: same pixels correlate > 0.9
    max_median_residual_px: float = 1.5  # one image resampled, not another shot with parallax
    # A crop holds at most the original's pixels for what it shows (1.0 at the original's
    # resolution, more when shared smaller). A "crop" with 1/0.8 = 1.25× more is a zoomed second
    # shot, which has detail the wide one lacks: not a copy to delete. True crops in the crop
    # set, our own crop set and dev all measure 0.99 or more.
    min_resolution_ratio: float = 0.8

    def bucket_cap(self, descriptors: int) -> int:
        """The most descriptors a bucket may hold before it is a stop word, in an index of
        ``descriptors`` in all."""
        return max(self.max_bucket, int(self.stop_word_share * descriptors / (1 << self.hash_bits)))

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_resolution_ratio <= 1:
            problems.append("min_resolution_ratio must be in [0, 1]")
        if self.max_keypoints < 8 or self.detect_keypoints < self.max_keypoints:
            problems.append("need 8 ≤ max_keypoints ≤ detect_keypoints")
        if not 1 <= len(self.level_weights) <= 16 or min(self.level_weights) < 0 or sum(self.level_weights) <= 0:
            problems.append("level_weights: 1 to 16 weights ≥ 0, not all 0")
        if not 0 < self.match_bits < DESC_BYTES * 8:
            problems.append("match_bits must be in (0, 128)")
        if not 8 <= self.hash_bits <= 32 or self.hash_bits * self.hash_tables > DESC_BYTES * 8:
            problems.append("need 8 ≤ hash_bits ≤ 32 and hash_bits × hash_tables ≤ 128")
        if self.max_bucket < 1 or self.stop_word_share < 0:
            problems.append("need max_bucket ≥ 1 and stop_word_share ≥ 0")
        if self.min_votes < 1 or self.candidates_per_photo < 1:
            problems.append("min_votes and candidates_per_photo must be ≥ 1")
        if not 0 < self.ratio <= 1:
            problems.append("ratio must be in (0, 1]")
        if self.min_inliers < 4 or not 2 <= self.min_seed <= self.min_inliers:
            problems.append("need 2 ≤ min_seed ≤ min_inliers and min_inliers ≥ 4 (a similarity needs 2 points; RANSAC more)")
        if not 0 <= self.guided_bits < DESC_BYTES * 8:
            problems.append("guided_bits must be in [0, 128)")
        if not 0 < self.min_scale < 1 or not 0 < self.max_area_ratio < 1:
            problems.append("min_scale and max_area_ratio must be in (0, 1)")
        if not 0 <= self.min_inlier_cover <= 1 or not 0 <= self.min_inlier_area <= 1:
            problems.append("min_inlier_cover and min_inlier_area must be in [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, eq=False)
class LocalFeatures:
    """A photo's capped keypoints: quantised positions and 128-bit descriptors.

    ``pos`` is (K, 2) uint8, x and y as fractions of the working image's width and height in
    1/255 steps; ``desc`` is (K, 16) uint8; ``width``/``height`` are the working image's size.
    """

    width: int
    height: int
    pos: npt.NDArray[np.uint8]
    desc: npt.NDArray[np.uint8]
    thumb: npt.NDArray[np.uint8]  # (T, T) grey thumbnail of the whole frame, squashed to a square
    # (S, K, 16): each keypoint described again at ``CropParams.alt_scales`` (the base descriptor
    # where that was not possible or not wanted), for searching only; dropped once searched.
    alt: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0, DESC_BYTES), np.uint8))

    def __len__(self) -> int:
        return int(self.desc.shape[0])

    @property
    def nbytes(self) -> int:
        """Stored size: the arrays plus the 16-bit sizes."""
        return self.base_nbytes + (2 + int(self.alt.nbytes) if self.alt.shape[0] else 0)

    @property
    def base_nbytes(self) -> int:
        """Stored size without the alternates: the head of ``to_bytes`` that stays once searched."""
        return int(self.pos.nbytes + self.desc.nbytes + self.thumb.nbytes + 8)

    def without_alt(self) -> LocalFeatures:
        return LocalFeatures(self.width, self.height, self.pos, self.desc, self.thumb)

    def query_desc(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The descriptors a search looks with: (R, 16), the base ones then the alternates that
        differ from them, and the keypoint (0..K-1) each belongs to (a keypoint votes once,
        whichever found)."""
        k = len(self)
        if not self.alt.shape[0] or not k:
            return self.desc, np.arange(k, dtype=np.int64)
        other = np.any(self.alt != self.desc[None], axis=2)  # (S, K)
        kp = np.nonzero(other)[1]
        return np.concatenate([self.desc, self.alt[other]]), np.r_[np.arange(k, dtype=np.int64), kp]

    def points(self) -> npt.NDArray[np.float32]:
        """(K, 2) float positions in working-image pixels."""
        scale = np.array([self.width - 1, self.height - 1], np.float32) / POS_LEVELS
        return np.asarray(self.pos.astype(np.float32) * scale, np.float32)

    def to_bytes(self) -> bytes:
        """Width, height, K, T (16-bit), positions, descriptors, thumbnail; then, when there
        are alternates, S (16-bit) and S × K descriptors."""
        head = np.array([self.width, self.height, len(self), self.thumb.shape[0]], dtype="<u2").tobytes()
        out = head + self.pos.tobytes() + self.desc.tobytes() + self.thumb.tobytes()
        if self.alt.shape[0]:
            out += np.array([self.alt.shape[0]], "<u2").tobytes() + np.ascontiguousarray(self.alt).tobytes()
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        if len(data) < 8:
            raise ValueError("crop features: truncated")
        w, h, k, t = (int(v) for v in np.frombuffer(data[:8], dtype="<u2"))
        base = 8 + (2 + DESC_BYTES) * k + t * t
        if len(data) < base:
            raise ValueError("crop features: truncated")
        at = 8 + 2 * k
        pos = np.frombuffer(data[8:at], np.uint8).reshape(k, 2).copy()
        desc = np.frombuffer(data[at : at + DESC_BYTES * k], np.uint8).reshape(k, DESC_BYTES).copy()
        at += DESC_BYTES * k
        thumb = np.frombuffer(data[at : at + t * t], np.uint8).reshape(t, t).copy()
        if len(data) == base:
            return cls(w, h, pos, desc, thumb)
        s = int.from_bytes(data[base : base + 2], "little")
        if len(data) != base + 2 + s * k * DESC_BYTES:
            raise ValueError("crop features: bad alternates")
        alt = np.frombuffer(data[base + 2 :], np.uint8).reshape(s, k, DESC_BYTES).copy()
        return cls(w, h, pos, desc, thumb, alt)


def descriptors_of_blobs(blobs: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """(M, 16) descriptors of ``LocalFeatures.to_bytes`` blobs, and the blob index of each,
    without building the feature objects (a library streams through this when the crop index
    is rebuilt)."""
    parts: list[bytes] = []
    counts = np.empty(len(blobs), np.int64)
    for n, b in enumerate(blobs):
        k = int.from_bytes(b[4:6], "little")
        at = 8 + 2 * k
        parts.append(b[at : at + DESC_BYTES * k])
        counts[n] = k
    desc = np.frombuffer(b"".join(parts), np.uint8).reshape(-1, DESC_BYTES)
    return desc, np.repeat(np.arange(len(blobs), dtype=np.int64), counts)


def quantise(
    xy: npt.NDArray[np.floating],
    desc: npt.NDArray[np.uint8],
    width: int,
    height: int,
    thumb: npt.NDArray[np.uint8] | None = None,
    alt: npt.NDArray[np.uint8] | None = None,
) -> LocalFeatures:
    """Features from float keypoint positions (working-image pixels) and ≥16-byte descriptors
    (``alt``: (S, K, ≥16) alternates of the same keypoints)."""
    scale = np.array([max(1, width - 1), max(1, height - 1)], np.float64)
    q = np.clip(np.rint(np.asarray(xy, np.float64) / scale * POS_LEVELS), 0, POS_LEVELS).astype(np.uint8)
    d = np.ascontiguousarray(np.asarray(desc, np.uint8)[:, :DESC_BYTES]).reshape(-1, DESC_BYTES)
    t = np.zeros((0, 0), np.uint8) if thumb is None else np.ascontiguousarray(thumb, np.uint8)
    a = (np.zeros((0, d.shape[0], DESC_BYTES), np.uint8) if alt is None
         else np.ascontiguousarray(np.asarray(alt, np.uint8)[:, :, :DESC_BYTES]))
    return LocalFeatures(int(width), int(height), q.reshape(-1, 2), d, t, a)


# --- the geometric check -------------------------------------------------------------------


@dataclass(frozen=True)
class CropMatch:
    """``inner`` (index 0 or 1 of the pair checked) is a crop of the other photo.

    ``rect`` is the crop's frame in the original as fractions (x0, y0, x1, y1).
    """

    inner: int
    inliers: int
    scale: float  # inner pixel → outer pixel, in working-image units (< 1)
    rect: tuple[float, float, float, float]


def resolution_ratio(match: CropMatch, inner: tuple[int, int], outer: tuple[int, int]) -> float:
    """Full-resolution pixels of the outer photo per pixel of the inner one, over what both show.

    ``inner`` and ``outer`` are each photo's (working-image width, full width). 1 for a crop at
    its original's resolution, above 1 for a crop shared smaller, below 1 when the inner photo
    has more pixels for the scene than the outer: taken zoomed in, not cut out of it.
    """
    (inner_work, inner_full), (outer_work, outer_full) = inner, outer
    return match.scale * (inner_work / max(1, inner_full)) * (outer_full / max(1, outer_work))


def is_crop_resolution(
    match: CropMatch, inner: tuple[int, int], outer: tuple[int, int], params: CropParams = CropParams()
) -> bool:
    """Whether the inner photo's resolution allows it to be cut from the outer (see above)."""
    return resolution_ratio(match, inner, outer) >= params.min_resolution_ratio


def _hull_area(pts: npt.NDArray[np.float64]) -> float:
    """Area of the convex hull of 2-D points (monotone chain)."""
    p = np.unique(pts, axis=0)
    if p.shape[0] < 3:
        return 0.0
    order = np.lexsort((p[:, 1], p[:, 0]))
    p = p[order]

    def half(seq: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]:
        out: list[npt.NDArray[np.float64]] = []
        for q in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (q[1] - ay) - (by - ay) * (q[0] - ax) <= 0:
                    out.pop()
                else:
                    break
            out.append(q)
        return out

    hull = np.array(half(p)[:-1] + half(p[::-1])[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def check_crop(
    transform: npt.NDArray[np.floating],
    pts_a: npt.NDArray[np.floating],
    pts_b: npt.NDArray[np.floating],
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    params: CropParams,
    all_a: npt.NDArray[np.floating] | None = None,
    all_b: npt.NDArray[np.floating] | None = None,
    thumb_a: npt.NDArray[np.uint8] | None = None,
    thumb_b: npt.NDArray[np.uint8] | None = None,
) -> CropMatch | None:
    """Is one photo a crop of the other?

    ``transform`` is the 2×3 similarity mapping b's working-image pixels onto a's; ``pts_a`` and
    ``pts_b`` are its inlier correspondences (N×2 each); sizes are (width, height) of the working
    images; ``all_a``/``all_b`` are every keypoint of each photo (for the coverage check, which
    is skipped without them); ``thumb_a``/``thumb_b`` their square grey thumbnails (for the
    appearance check, likewise). Returns the match with the inner (cropped) photo, or None when any check fails.
    """
    m = np.asarray(transform, np.float64)
    pa = np.asarray(pts_a, np.float64).reshape(-1, 2)
    pb = np.asarray(pts_b, np.float64).reshape(-1, 2)
    n = pa.shape[0]
    if n < params.min_inliers or not np.all(np.isfinite(m)):
        return None
    s = math.hypot(m[0, 0], m[1, 0])
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    if abs(angle) > params.max_rotation_deg or s <= 0:
        return None
    # Make the transform map the inner photo onto the outer one (scale < 1 in area terms).
    (wa, ha), (wb, hb) = size_a, size_b
    area_ratio_b_in_a = (s * s * wb * hb) / (wa * ha)  # b's frame mapped into a, as a share of a
    if area_ratio_b_in_a <= 1.0:
        inner, (wi, hi), (wo, ho), pi_, po = 1, (wb, hb), (wa, ha), pb, pa
        t = m
        area = area_ratio_b_in_a
    else:
        inner, (wi, hi), (wo, ho), pi_, po = 0, (wa, ha), (wb, hb), pa, pb
        rot_inv = np.array([[m[0, 0], m[1, 0]], [m[0, 1], m[1, 1]]]) / (s * s)
        t = np.hstack([rot_inv, -(rot_inv @ m[:, 2]).reshape(2, 1)])
        area = 1.0 / area_ratio_b_in_a
    if area > params.max_area_ratio:
        return None  # about the whole frame: a copy or another shot, for the hashes to judge
    # Side ratios: the crop keeps a share of the original's width and of its height.
    scale = math.hypot(t[0, 0], t[1, 0])
    keep_w, keep_h = scale * wi / wo, scale * hi / ho
    if min(keep_w, keep_h) < params.min_scale:
        return None
    # The crop's frame must lie inside the original (a shifted view sticks out).
    corners = np.array([[0, 0], [wi - 1, 0], [0, hi - 1], [wi - 1, hi - 1]], np.float64)
    mapped = corners @ t[:, :2].T + t[:, 2]
    tol_x, tol_y = params.frame_tolerance * wo, params.frame_tolerance * ho
    if (mapped[:, 0].min() < -tol_x or mapped[:, 0].max() > wo - 1 + tol_x
            or mapped[:, 1].min() < -tol_y or mapped[:, 1].max() > ho - 1 + tol_y):
        return None
    # The inliers must span the part of each picture that has features: a shared logo or line
    # of text matches in one place while the rest of both pictures finds no partner.
    if _hull_area(pi_) < params.min_inlier_area * wi * hi:
        return None
    if all_a is not None and all_b is not None:
        ki, ko = (np.asarray(all_b, np.float64), np.asarray(all_a, np.float64)) if inner == 1 else (
            np.asarray(all_a, np.float64), np.asarray(all_b, np.float64))
        x0, x1 = mapped[:, 0].min(), mapped[:, 0].max()
        y0, y1 = mapped[:, 1].min(), mapped[:, 1].max()
        ko = ko[(ko[:, 0] >= x0) & (ko[:, 0] <= x1) & (ko[:, 1] >= y0) & (ko[:, 1] <= y1)]
        cover = min(_hull_area(pi_) / max(_hull_area(ki), 1.0), _hull_area(po) / max(_hull_area(ko), 1.0))
        if cover < params.min_inlier_cover:
            return None
    # A resampled crop fits to about a pixel; another shot of the scene leaves parallax.
    resid = np.hypot(*(pi_ @ t[:, :2].T + t[:, 2] - po).T)
    if float(np.median(resid)) > params.max_median_residual_px:
        return None
    if thumb_a is not None and thumb_b is not None and thumb_a.size and thumb_b.size:
        ti, to = (thumb_b, thumb_a) if inner == 1 else (thumb_a, thumb_b)
        if appearance_ncc(t, ti, to, (wi, hi), (wo, ho)) < params.min_appearance_ncc:
            return None
    x0, y0 = mapped[:, 0].min() / wo, mapped[:, 1].min() / ho
    x1, y1 = mapped[:, 0].max() / wo, mapped[:, 1].max() / ho
    return CropMatch(inner, n, scale, (float(x0), float(y0), float(x1), float(y1)))


def _bilinear(img: npt.NDArray[np.float64], u: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    h, w = img.shape
    u = np.clip(u, 0, w - 1)
    v = np.clip(v, 0, h - 1)
    u0 = np.minimum(np.floor(u).astype(np.int64), w - 2)
    v0 = np.minimum(np.floor(v).astype(np.int64), h - 2)
    fu, fv = u - u0, v - v0
    top = img[v0, u0] * (1 - fu) + img[v0, u0 + 1] * fu
    bottom = img[v0 + 1, u0] * (1 - fu) + img[v0 + 1, u0 + 1] * fu
    return np.asarray(top * (1 - fv) + bottom * fv)


def appearance_ncc(
    transform: npt.NDArray[np.floating],
    thumb_inner: npt.NDArray[np.uint8],
    thumb_outer: npt.NDArray[np.uint8],
    size_inner: tuple[int, int],
    size_outer: tuple[int, int],
    blocks: bool = False,
) -> float:
    """Normalised correlation of the crop's thumbnail and its place in the original's.

    ``transform`` maps inner working-image pixels onto outer ones; thumbnails are square grey
    images of each whole frame. The crop is read on a grid of half the thumbnail's side, the
    original at the same places. Both at one resolution: each grid point of the crop is the
    mean of 4×4 samples (bilinear, as the original is read) over what one pixel of the
    original's thumbnail covers there, at least a 2×2 block; ``blocks`` reads the crop's plain
    2×2 block means where one pixel of the original covers less (what ``core.bursts`` was
    measured with). A crop keeping 35% of its original's height spans under 6 of the original's
    thumbnail rows: read sharper than that, the crop's edges did not correlate with the
    original's blurred ones, and true crops of a sharp subject on a soft background measured
    0.70–0.85. Gain and offset (an exposure edit) do not count.
    """
    t = thumb_inner.shape[0]
    g = max(2, t // 2)
    (wi, hi), (wo, ho) = size_inner, size_outer
    to = thumb_outer.shape[0]
    m = np.asarray(transform, np.float64)
    s = max(math.hypot(m[0, 0], m[1, 0]), 1e-9)  # outer pixels per inner pixel
    # One pixel of the outer thumbnail, in inner thumbnail pixels (at least a grid cell).
    fx, fy = max(t / g, wo / to / s * t / wi), max(t / g, ho / to / s * t / hi)
    cx = (np.arange(g) + 0.5) * wi / g
    cy = (np.arange(g) + 0.5) * hi / g
    xx, yy = np.meshgrid(cx, cy)
    thumb = thumb_inner.astype(np.float64)
    if blocks and fx <= t / g and fy <= t / g:
        inner = thumb.reshape(g, t // g, g, t // g).mean(axis=(1, 3))
    else:
        sub = (np.arange(4) + 0.5) / 4 - 0.5  # 4×4 samples spread over the footprint
        inner = np.mean([_bilinear(thumb, xx * t / wi - 0.5 + dx * fx, yy * t / hi - 0.5 + dy * fy)
                         for dx in sub for dy in sub], axis=0)
    ox = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    oy = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    outer = _bilinear(thumb_outer.astype(np.float64), ox * to / wo - 0.5, oy * to / ho - 0.5)
    a, b = inner.ravel() - inner.mean(), outer.ravel() - outer.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 1e-9 else 0.0


# --- from verified crops to groups and keepers ---------------------------------------------


def crop_links(
    crops: Sequence[tuple[int, int]],
) -> list[tuple[int, int]]:
    """Pairs to join the grouping: each (crop, original), and the crops of one original together.

    Two crops of one photo rarely contain each other, and their hashes are far apart; both lie in
    the same original, so they belong in its group. Returns sorted unique (lo, hi) pairs.
    """
    by_orig: dict[int, set[int]] = {}
    out: set[tuple[int, int]] = set()
    for c, o in crops:
        by_orig.setdefault(o, set()).add(c)
        out.add((min(c, o), max(c, o)))
    for cs in by_orig.values():
        lst = sorted(cs)
        for x, a in enumerate(lst):
            for b in lst[x + 1 :]:
                out.add((a, b))
    return sorted(out)


def originals_of(crops: Mapping[str, str], members: Sequence[str]) -> dict[str, str]:
    """For each member that is a crop of another member, the uncropped photo it comes from.

    Follows chains (a crop of a crop) to the outermost member; ignores originals outside
    ``members`` and cycles.
    """
    inside = set(members)
    out: dict[str, str] = {}
    for m in members:
        seen = {m}
        cur = m
        while crops.get(cur) in inside and crops[cur] not in seen:
            cur = crops[cur]
            seen.add(cur)
        if cur != m:
            out[m] = cur
    return out


def crop_reasons(photos: Sequence[PhotoInfo], crops: Mapping[str, str] | None = None) -> dict[int, str]:
    """For the keeper: index → "cropped copy of NAME" for each member cut from another member.

    ``crops`` maps a crop's path to its original's; without it, each photo's
    ``extra[CROP_OF_KEY]`` (set by the crop stage) is read.
    """
    if crops is None:
        crops = {p.path: str(p.extra[CROP_OF_KEY]) for p in photos if CROP_OF_KEY in p.extra}
    if not crops:
        return {}
    paths = [p.path for p in photos]
    where = {path: k for k, path in enumerate(paths)}
    return {where[c]: f"cropped copy of {o.rsplit('/', 1)[-1]}" for c, o in originals_of(crops, paths).items()}
