"""Choosing the photo a person would keep in a group, and saying why the others can go.

The questions, in order, each with the reason it gives:

1. Protected photos are never recommended for deletion; among same-size copies the protected
   one is the keeper.
2. Byte-identical files are one photo: keep the one whose name does not look like a copy.
   Provenance (``core/provenance.py``): a member that carries another member's JPEG history (its
   quantiser lattice, or its quantisation error once a tone or filter edit is undone) was made
   from it and is never the keeper while its source is in the group.
3. Resolution: a copy with clearly fewer pixels than the largest is a down-scaled or cropped copy.
4. Among copies of (about) the largest size, drop the degraded ones:
   - heavy JPEG compression (quality below 50: what messengers do, never a camera);
   - clipped: a copy clipped to white or black where another copy of the shot still shows
     texture (``provenance.clipped_detail``) is not the original, whatever was made from it;
   - an exposure outlier (more than a quarter off the group's median brightness), unless the
     member it would be called a copy of clipped what it shows;
   - sharpened: a copy much "sharper" than another that holds no detail the other cannot
     predict (a sharpening filter can be undone, a blur cannot: the data processing
     inequality), the softer keeping a flat share of every higher frequency (``band_gains``);
   - blur: a structured (low-frequency) difference to a copy more than twice as sharp
     (sharpness taken relative to contrast², which exposure changes scale alike), and softer
     across the picture, tile by tile (a caption's edges sharpen only the tiles it covers);
   - added noise: a white (high-frequency) difference, spread evenly over the picture (a
     denoiser's is not: it takes detail where there is detail), to a less sharp copy, with
     more measured noise. White noise has a Laplacian-to-variance ratio of 20; a blur or
     exposure difference is far lower, so the ratio tells the two apart.
5. Of the rest: a member others were provably made from (not merely converted with the same
   pixels), a copy with camera EXIF over a stripped one (messengers strip it), lossless over
   lossy, a camera's file name (in a DCIM folder first) over an editor's or a messenger's, then
   the medoid of the tone-matched pixel differences over every same-size copy (the
   source differs from each copy by one change, copies from each other by two), higher JPEG
   quality, more bytes; for distinct shots (a burst) the weighted quality score instead.
6. Then a deterministic tie-break: not a copy-looking name, earliest capture date, shortest path.

Camera originals (``core/originals.py``) come before 3–5: a RAW is the original of every JPEG or
HEIC developed from it, so it is the keeper of a group that holds one (of copies of one shot;
between distinct shots the best shot is kept too), and no RAW is recommended for deletion but a
byte-identical copy of another. The JPEG of a RAW+JPEG pair is kept beside its RAW unless
``raw_jpeg_pairs = "keep-raw"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from dupligoned.core import hashing, originals
from dupligoned.core.crops import crop_reasons
from dupligoned.core.model import GroupDecision, PhotoInfo, Verdict
from dupligoned.core.provenance import (
    Lineage,
    band_gains,
    clipped_detail,
    tile_sharpness,
    tone_curve,
    unclipped,
    unexplained,
)
from dupligoned.core.quality import QualityWeights, int_laplacian, mean_var, score
from dupligoned.core.quality import shown as on_card

_COPY_NAME = re.compile(r"(\(\d+\)|\bcopy\b|\bkopie\b|\bcopie\b|-\d+$|_\d$)", re.IGNORECASE)


@dataclass(frozen=True)
class KeeperParams:
    resolution_ratio: float = 0.8  # below this share of the largest pixel count: lower resolution
    heavy_jpeg_quality: int = 50  # below: a messenger-grade re-save
    exposure_outlier: float = 0.25  # share of the group's median brightness a copy may differ by
    exposure_outlier_min: float = 10.0  # grey levels: never stricter than this
    blur_sharpness_ratio: float = 2.0  # a copy this much sharper, with a structured difference
    white_ratio: float = 12.0  # Laplacian/variance of a difference above this: white (noise-like)
    noise_sharpness_ratio: float = 1.2  # a copy this much "sharper" by white noise is noisier
    sharpened_ratio: float = 2.0  # a sharper copy's unexplained detail below this × the softer's: sharpened
    sharpened_max_residual: float = 12.0  # grey levels: a pair further apart is not one filter away
    sharpened_fit: float = 0.7  # and at most this share of their mean difference
    sharpened_floor: tuple[float, float] = (0.3, 0.8)  # share of amplitude a sharpening undone keeps
    sharpened_white: float = 2.5  # a filter's difference is at least this white...
    sharpened_tone_fit: float = 0.3  # ...unless a tone change makes most of it (then this share)
    noise_ratio: float = 1.2  # measured noise this much higher (with an even, white difference): noisier
    even_noise: float = 1.6  # texture_bias at most this: the difference is spread evenly (added noise)
    # An unsharp mask of amount a lifts the finest detail's amplitude up to 1 + a, its energy
    # (1 + a)²: 6 at a = 1.5, the strong end of what editors and phones apply.
    sharpening_reach: float = 6.0
    shot_distance: float = 5.0  # median hash distance above which photos are distinct shots
    # Mean grey-level difference, tones matched, under which two members are one shot whatever
    # their hashes say (copies: 1–4 after an exposure change; burst frames moved: 6 and more).
    same_shot_shape: float = 4.0
    # A copy called blurrier must be softer across the picture: the median tile this much.
    blur_broadly: float = 1.3
    weights: QualityWeights = QualityWeights()
    raw_jpeg_pairs: str = "keep-both"  # or "keep-raw": the JPEG of a RAW+JPEG pair may go

    def __post_init__(self) -> None:
        if self.raw_jpeg_pairs not in originals.PAIR_POLICIES:
            raise ValueError(f"raw_jpeg_pairs must be one of {', '.join(originals.PAIR_POLICIES)}")
        if not 0 < self.resolution_ratio <= 1:
            raise ValueError("resolution_ratio must be in (0, 1]")
        if self.blur_sharpness_ratio < 1 or self.noise_sharpness_ratio < 1:
            raise ValueError("sharpness ratios must be ≥ 1")


@dataclass(frozen=True)
class Comparison:
    """Pixel comparison of a group's members at one common size (square matrices)."""

    diff: npt.NDArray[np.float64]  # mean absolute grey-level difference
    white: npt.NDArray[np.float64]  # var(Laplacian(difference)) / var(difference); 20 = white noise
    # Compression history (core/provenance.py): members carrying another member's JPEG quantiser,
    # and (child, parent) pairs among them whose pixels are the same.
    lineage: tuple[Lineage, ...] = ()
    identical: tuple[tuple[int, int], ...] = ()
    # Mean difference with the tones matched (``shape_difference``): the medoid's distance.
    shape: npt.NDArray[np.float64] | None = None
    # The compared images themselves, for the measures only some pairs need (``unexplained``).
    images: tuple[npt.NDArray[np.uint8] | None, ...] = ()
    # Measures of a pair computed when a rule first asks (most pairs never need them).
    _measured: dict[tuple[str, int, int], Any] = field(default_factory=dict, repr=False)

    def _pair(self, what: str, a: int, b: int, measure: Callable[[Any, Any], Any], default: Any) -> Any:
        """``measure(image a, image b)``, once per pair; ``default`` when either image is
        missing or the two differ in size."""
        if a >= len(self.images) or b >= len(self.images):
            return default
        ia, ib = self.images[a], self.images[b]
        if ia is None or ib is None or ia.shape != ib.shape:
            return default
        if (what, a, b) not in self._measured:
            self._measured[(what, a, b)] = measure(ia, ib)
        return self._measured[(what, a, b)]

    def unexplained(self, a: int, b: int) -> float | None:
        """RMS grey levels of image ``a`` that image ``b`` cannot predict (``provenance.unexplained``)."""
        return cast("float | None", self._pair("unexplained", a, b, unexplained, None))

    def clipped(self, a: int, b: int) -> tuple[float, str] | None:
        """Whether image ``a`` is clipped (to "white" or "black") where image ``b`` still shows
        detail, and how much (``provenance.clipped_detail``)."""
        return cast("tuple[float, str] | None", self._pair("clipped", a, b, lambda ia, ib: clipped_detail(ib, ia), None))

    def broadly_sharper(self, a: int, b: int) -> float:
        """How much sharper image ``a`` is than ``b`` across the picture: the median, over the
        tiles with detail, of their Laplacian energy ratio (``provenance.tile_sharpness``). A
        blur softens every tile; a caption, a watermark or a sticker added to a copy sharpens
        only the few it covers (while its edges lift the copy's sharpness figure)."""
        return float(self._pair("broadly", a, b, tile_sharpness, 1.0))

    def textured(self, a: int, b: int) -> float:
        """How much the difference of ``a`` and ``b`` follows the picture's texture
        (``texture_bias``): ~1 for noise added evenly, far above for detail smoothed away."""
        # every other pixel: noise keeps its level, and it is 4x cheaper
        return float(self._pair("textured", min(a, b), max(a, b),
                                lambda ia, ib: texture_bias(ia[::2, ::2], ib[::2, ::2]), 1.0))

    def gains(self, soft: int, sharp: int) -> npt.NDArray[np.float64] | None:
        """The share of ``sharp``'s amplitude ``soft`` keeps, by frequency band (``band_gains``)."""
        return cast("npt.NDArray[np.float64] | None", self._pair("gains", soft, sharp, band_gains, None))


def compare(images: Sequence[npt.NDArray[np.uint8] | None]) -> Comparison:
    """Compare same-shape greyscale images pairwise; ``None`` (unreadable) is far from all."""
    n = len(images)
    diff = np.zeros((n, n))
    white = np.zeros((n, n))
    shape = np.zeros((n, n))
    wide = [None if im is None else im.astype(np.int16) for im in images]
    for a in range(n):
        for b in range(a + 1, n):
            wa, wb = wide[a], wide[b]
            if wa is None or wb is None or wa.shape != wb.shape:
                diff[a, b] = diff[b, a] = 255.0
                continue
            # In integers (exact, and a fraction of the floating-point cost): the difference
            # lies in ±255 and its Laplacian in ±2040.
            d = wa - wb
            diff[a, b] = diff[b, a] = float(np.abs(d).sum(dtype=np.int64)) / d.size
            var = mean_var(d)[1]
            white[a, b] = white[b, a] = mean_var(int_laplacian(d))[1] / var if var > 1e-9 else 0.0
            ia, ib = images[a], images[b]
            assert ia is not None and ib is not None
            shape[a, b] = shape[b, a] = shape_difference(ia[::4, ::4], ib[::4, ::4])
    return Comparison(diff, white, images=tuple(images), shape=shape)


def shape_difference(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Mean grey-level difference once each copy's tones are matched to the other's (the lower of
    the two ways): what a filter, noise or a blur changed, not an exposure or contrast change."""
    mask = unclipped(a, b)
    if not mask.any():
        return 255.0
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    return min(float(np.abs(fa - tone_curve(b, a, mask)[b]).mean()), float(np.abs(fb - tone_curve(a, b, mask)[a]).mean()))


TILE = 16  # pixels of the tiles texture_bias compares


def texture_bias(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """How much the difference of two copies of one picture follows its texture: the difference's
    energy (after matching b's tones to a's) in the most textured quarter of tiles over that in
    the least textured quarter. Noise added to a copy is spread evenly (about 1, a little more
    where bright areas show more); a denoiser or a heavy compressor takes away detail where there
    was detail, so its difference is many times stronger in the textured tiles."""
    h, w = (a.shape[0] // TILE) * TILE, (a.shape[1] // TILE) * TILE
    if h < 4 * TILE or w < 4 * TILE:
        return 1.0
    a, b = a[:h, :w], b[:h, :w]
    mask = unclipped(a, b)
    # The tones are matched from the cleaner copy to the noisier (matched the other way, the
    # noise flattens the fitted curve and leaves an error that grows with contrast): which is
    # which is not known here, and the wrong way only reads higher, so the lower of the two.
    return min(_bias(a, b, a.astype(np.float64) - tone_curve(b, a, mask)[b], mask, h, w),
               _bias(a, b, b.astype(np.float64) - tone_curve(a, b, mask)[a], mask, h, w))


def _bias(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], d: npt.NDArray[np.float64],
          mask: npt.NDArray[np.bool_], h: int, w: int) -> float:
    mean = (a.astype(np.float64) + b) / 2
    smooth = (mean[:-2, :-2] + mean[:-2, 1:-1] + mean[:-2, 2:] + mean[1:-1, :-2] + mean[1:-1, 1:-1]
              + mean[1:-1, 2:] + mean[2:, :-2] + mean[2:, 1:-1] + mean[2:, 2:]) / 9.0
    grad = np.zeros_like(mean)
    gy = np.diff(smooth, axis=0)[:, :-1]
    gx = np.diff(smooth, axis=1)[:-1, :]
    grad[1:-2, 1:-2] = gy * gy + gx * gx

    def tiles(x: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        t = x.reshape(h // TILE, TILE, w // TILE, TILE).transpose(0, 2, 1, 3).reshape(-1, TILE * TILE)
        return np.asarray(t, dtype=np.float64)

    keep = tiles(mask).mean(axis=1) > 0.95
    if int(keep.sum()) < 16:
        return 1.0
    tex = tiles(grad).mean(axis=1)[keep]
    energy = tiles(d).var(axis=1)[keep]
    lo, hi = np.quantile(tex, [0.25, 0.75])
    low = float(energy[tex <= lo].mean())
    return float(energy[tex >= hi].mean()) / max(low, 0.05)


def pair_distances(photos: Sequence[PhotoInfo]) -> list[float]:
    """Hash distances of every pair: copies of one shot stay within a few bits, frames do not."""
    return [hashing.distance(a.phash, a.dhash, b.phash, b.dhash)
            for x, a in enumerate(photos) for b in photos[x + 1:]]


def looks_like_copy(path: str) -> bool:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return bool(_COPY_NAME.search(stem))


# File names cameras and phones write (DCF "IMG_1234", "DSC01234", "P1010001", "_DSC1234", Olympus
# "PC065609" (P, the month 1-9 or A-C, the day, a number);
# dated "IMG_20210101_120000", "PXL_20210101_120000123", "20210101_120000"), whole: an editor's or
# a messenger's copy adds a suffix ("_3", "-edited", " (1)") or names it anew ("image (92)",
# "IMG-20190301-WA0013", "3f87673c67").
_CAMERA_NAME = re.compile(
    r"(?:(?:IMG|DSC|DSCN|DSCF|DSC_|_DSC|_MG|_IMG|SAM|SDC|CIMG|IMGP|PICT|HPIM|GOPR|GH\d\d|DJI|P|R|PANO|MVIMG)"
    r"[_-]?\d{4,}|P[1-9A-C]\d{6}|(?:IMG_|PXL_|VID_)?\d{8}_\d{6}\d{0,3})", re.IGNORECASE)
_CAMERA_FOLDER = re.compile(r"(?:^|/)DCIM/", re.IGNORECASE)


def name_evidence(path: str) -> int:
    """How much a file's name and folder look written by the camera: 0 a camera's name in a
    DCIM folder (where cameras and phones store what they shoot), 1 a camera's name elsewhere,
    2 any other name (an editor's, a messenger's, a copy's)."""
    if not _CAMERA_NAME.fullmatch(_stem(path)):
        return 2
    return 0 if _CAMERA_FOLDER.search(path) else 1


def _camera_file(p: PhotoInfo) -> bool:
    """A camera's make or model and a camera's name, and no editor's mark (an editor named in
    the EXIF, or the file saved again after its capture): what the camera wrote, as it wrote it."""
    return bool(p.camera) and name_evidence(p.path) < 2 and not p.edited_by


def _anonymous(p: PhotoInfo) -> bool:
    """Not what a camera wrote: an editor's mark, or no camera named in it and no camera's name
    (a messenger's, an editor's or a web copy; an editor may write a date, never a camera it is
    not)."""
    return bool(p.edited_by) or (not p.camera and name_evidence(p.path) == 2)


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _two_captures(a: PhotoInfo, b: PhotoInfo) -> bool:
    """Whether two files carry two different names a camera wrote (IMG_0001, IMG_0002): two
    captures, such as the frames of an exposure bracket, not a file and a copy of it."""
    return name_evidence(a.path) < 2 and name_evidence(b.path) < 2 and _stem(a.path).upper() != _stem(b.path).upper()


def _capture_file(p: PhotoInfo) -> bool:
    """A camera's name and a capture time: a file that may be a capture of its own."""
    return name_evidence(p.path) < 2 and bool(p.taken_at)


def _captures(photos: Sequence[PhotoInfo], members: Sequence[int]) -> dict[int, int] | None:
    """The capture each member belongs to (as one member of it), when the members hold more than
    one: files a camera named differently (DSC_8457, DSC_8458) that carry different capture
    times are two captures, such as the frames of a burst. A phone saving a received copy names
    it anew but has no capture time of its own to give it, and an editor's copy keeps the time.
    Members without both join the capture they are nearest to by hash. None: one capture."""
    roots: list[int] = []
    capture: dict[int, int] = {}
    for k in sorted(members, key=lambda k: _tie_key(photos[k])):
        p = photos[k]
        if not _capture_file(p):
            continue
        same = [r for r in roots if p.taken_at == photos[r].taken_at
                or _stem(p.path).upper() == _stem(photos[r].path).upper()]
        if not same:
            roots.append(k)
        capture[k] = same[0] if same else k
    if len(roots) < 2:
        return None
    for k in members:
        if k not in capture:
            capture[k] = capture[min(roots, key=lambda r: (pair_distances([photos[k], photos[r]])[0], _tie_key(photos[r])))]
    return capture


def _name(p: PhotoInfo) -> str:
    return p.path.rsplit("/", 1)[-1]


def _tie_key(p: PhotoInfo) -> tuple[bool, str, int, str]:
    return (looks_like_copy(p.path), p.taken_at or "9999", len(p.path), p.path)


_FORMAT_WORD = {"PNG": "PNG", "WEBP": "WebP", "HEIF": "HEIC", "AVIF": "AVIF", "TIFF": "TIFF", "JPEG": "JPEG"}


def fig(value: float) -> str:
    """A quality figure as the review card shows it (``quality.shown``): reasons quote that number."""
    return str(round(float(value), 1))


def _derived_reason(child: PhotoInfo, parent: PhotoInfo, same: bool, kind: str = "quantiser") -> str:
    """Why ``child`` is a copy of ``parent``, in the words of the evidence (core/provenance.py)."""
    pname = _name(parent)
    if kind == "carried":
        quality = f", quality {parent.jpeg_quality}" if parent.jpeg_quality else ""
        return (f"edited copy of {pname} (made from it: it still carries the JPEG compression of "
                f"{pname}{quality})")
    kind = _FORMAT_WORD.get(child.format, child.format)
    what = "conversion" if child.lossless else "re-encode"
    if same:
        return f"{kind} {what} of {pname} (identical pixels" + \
            ("; no camera data)" if not child.camera and parent.camera else ")")
    if child.format == "JPEG" and parent.format != "JPEG":  # a JPEG ghost
        lossless = "lossless " if parent.lossless else ""
        return (f"JPEG copy of {lossless}{pname} (saving {pname} at JPEG quality {child.jpeg_quality} "
                "gives these pixels)")
    if child.format == "JPEG":
        first = f"first saved at JPEG quality {parent.jpeg_quality}, then {child.jpeg_quality}"
        heavy = child.jpeg_quality is not None and child.jpeg_quality < KeeperParams.heavy_jpeg_quality
        return f"{'heavily compressed copy of' if heavy else 're-saved from'} {pname} ({first})"
    return f"{kind} {what} of {pname} (it keeps the JPEG compression of {pname}, quality {parent.jpeg_quality})"


def decide(
    photos: Sequence[PhotoInfo],
    comparison: Comparison | None = None,
    params: KeeperParams = KeeperParams(),
    crops: Mapping[str, str] | None = None,
    shown: Sequence[PhotoInfo] | None = None,
) -> GroupDecision:
    """Keep/delete verdicts for one group (``comparison`` in the order of ``photos``).

    ``crops`` maps a heavy crop's path to its original's (default: what the crop stage noted
    in each photo's ``extra``); a crop is never the keeper while its original is in the group.
    ``shown`` are the same photos with the figures the review card shows (default ``photos``):
    the rules may use finer figures, but a reason quotes only what the card shows.

    Provenance comes first: a member made from another member (it carries that member's JPEG
    quantiser) is never the keeper while its source is in the group. Quality rules then rank
    only what no other member was made from.
    """
    n = len(photos)
    if n == 0:
        raise ValueError("empty group")
    card = list(shown) if shown is not None else list(photos)
    order = sorted(range(n), key=lambda k: photos[k].path)

    # RAWs and the JPEGs of RAW+JPEG pairs (camera originals): never an identical copy of another.
    pair_raw = originals.raw_jpeg_pairs(photos)
    camera_original = {k for k in range(n) if originals.is_raw(photos[k])} | set(pair_raw)
    # 2. identical files: one representative each.
    rep_of: dict[str, int] = {}
    for k in sorted(order, key=lambda k: (not photos[k].protected, k not in camera_original, _tie_key(photos[k]))):
        rep_of.setdefault(photos[k].content_hash, k)
    reps = sorted(set(rep_of.values()), key=lambda k: photos[k].path)  # path order: input order never matters
    # 2b. heavy crops (issue 4, core/crops.py): cut from another member, never the keeper.
    cut = crop_reasons(photos, crops)
    reps = [k for k in reps if k not in cut]
    # reason[k] = (text, the member it names or None); the names are checked against the keeper below.
    reason: dict[int, tuple[str, int | None]] = {k: (why, None) for k, why in cut.items()}
    named: dict[int, int] = {}
    crop_of = crops if crops is not None else {}
    for k in cut:
        src = crop_of.get(photos[k].path) or photos[k].extra.get("crop_of")
        for o in range(n):
            if photos[o].path == src:
                named[k] = o

    # 2c. provenance: a member made from another (it carries that member's JPEG quantiser).
    derived: dict[int, tuple[str, int]] = {}
    if comparison is not None and comparison.lineage:
        same = set(comparison.identical)
        for li in comparison.lineage:
            c, par = li.child, li.parent
            if c in reps and c not in camera_original and rep_of[photos[par].content_hash] in reps:
                derived[c] = (_derived_reason(photos[c], photos[par], (c, par) in same, li.kind), par)
        if len(derived) >= len(reps):  # a cycle cannot be: keep the evidence out rather than drop all
            derived = {}
    reason.update({k: (why, par) for k, (why, par) in derived.items()})
    sources = [k for k in reps if k not in derived]
    # Members another member was made from: the history proves them earlier than their copies.
    # (Not a conversion with the very same pixels: any file can be converted, copy or original.)
    converted = set(comparison.identical) if comparison is not None else set()
    ancestors = {par for c, (_, par) in derived.items() if (c, par) not in converted}

    # 3. resolution.
    top = max(photos[k].pixels for k in sources)
    biggest = min((k for k in sources if photos[k].pixels == top), key=lambda k: _tie_key(photos[k]))
    contenders = [k for k in sources if photos[k].pixels >= params.resolution_ratio * top]
    for k in sources:
        if k not in contenders:
            reason[k] = (f"lower resolution {photos[k].dims} vs {photos[biggest].dims} of {_name(photos[biggest])}",
                         biggest)

    # 4. degraded copies among the contenders.
    left = list(contenders)

    def drop(why: dict[int, tuple[str, int | None]], evidence: bool = False) -> None:
        nonlocal left
        # A member others were provably made from is earlier than any copy the quality rules
        # compare it with: those rules only choose among members the history does not order.
        # (Evidence that a member is not the original counts whatever was made from it.)
        why = {k: v for k, v in why.items()
               if evidence or k not in ancestors or (v[1] is not None and v[1] in ancestors)}
        if why and len(why) < len(left):  # never drop every contender
            reason.update(why)
            left = [k for k in left if k not in why]

    def q(k: int) -> int | None:
        return photos[k].jpeg_quality

    hq = [k for k in left if (q(k) or 100) >= params.heavy_jpeg_quality]
    drop({k: (f"heavily compressed copy (JPEG quality {q(k)}) of {_name(photos[hq[0]])}", hq[0])
          for k in left if hq and (q(k) or 100) < params.heavy_jpeg_quality})
    # Sharpness relative to contrast²: an exposure or contrast change scales both alike, so only
    # blur and noise move it.
    sharp = {k: photos[k].quality.sharpness / max(1.0, photos[k].quality.contrast ** 2) for k in contenders}

    def framed(k: int, o: int) -> bool:
        """Whether two members frame the picture alike (one aspect ratio, to rounding): the
        pixel rules compare them point by point at one size, which a light crop, stretched to
        its source's frame, no longer lines up with (its noise then reads as detail)."""
        a, b = photos[k], photos[o]
        return abs(a.width * b.height - b.width * a.height) <= 0.005 * max(a.width * b.height, b.width * a.height)

    def clipped_where(k: int, o: int) -> str | None:
        """"white" or "black" when ``k`` is clipped there and ``o``, a copy of the same shot and
        no blurrier (a blur spreads the edges of a white area into it), still shows detail."""
        if comparison is None or o == k or sharp[o] * params.blur_sharpness_ratio < sharp[k] or not framed(k, o):
            return None
        if _two_captures(photos[k], photos[o]):  # an exposure bracket: each frame is an original
            return None
        # One shot: near hashes, or (an exposure change moves the hashes) tones matched, nearly
        # the same pixels.
        if (pair_distances([photos[k], photos[o]])[0] > params.shot_distance
                and (comparison.shape is None or comparison.shape[k, o] > params.same_shot_shape)):
            return None
        got = comparison.clipped(k, o)
        return got[1] if got is not None and comparison.clipped(o, k) is None else None

    # A copy clipped to white (brightened) or black (darkened) where another copy of the shot
    # still shows detail is not the original: that other copy was not made from it.
    clipped: dict[int, tuple[str, int | None]] = {}
    for k in left:
        for o in contenders:
            where = clipped_where(k, o)
            if where is not None:
                clipped[k] = (f"{'brightened' if where == 'white' else 'darkened'} copy: clipped to {where} "
                              f"where {_name(photos[o])} still shows detail", o)
                break
    drop(clipped, evidence=True)
    # The median over every same-size copy: a heavily compressed copy still shows the exposure.
    med = float(np.median([photos[k].quality.brightness for k in contenders]))
    limit = max(params.exposure_outlier_min, params.exposure_outlier * med)
    normal = [k for k in left if abs(photos[k].quality.brightness - med) <= limit]
    if normal:
        ref = min(normal, key=lambda k: abs(photos[k].quality.brightness - med))
        drop({
            k: (("darker" if photos[k].quality.brightness < med else "brighter")
                + f" copy of {_name(photos[ref])} (brightness {fig(card[k].quality.brightness)}"
                + f" vs {fig(card[ref].quality.brightness)})", ref)
            for k in left if abs(photos[k].quality.brightness - med) > limit
            and clipped_where(ref, k) is None  # k was not made from ref: ref lost what k shows
            # a camera's file is not a darker copy of an edit with neither its data nor its name
            and not (_camera_file(photos[k]) and not _camera_file(photos[ref]))
        })
    if comparison is not None:

        def textured(a: int, b: int) -> float:
            return 1.0 if comparison is None else comparison.textured(a, b)
        # A sharper copy that holds no detail the softer one lacks was sharpened from it: a blur
        # loses detail for good, a sharpening filter can be undone (the data processing inequality).
        def detail_ratio(k: int, o: int) -> float | None:
            """What sharper ``k`` holds that softer ``o`` cannot predict, over the reverse, when
            ``o`` is a filter away from ``k`` (a frame of a burst, moved, is not: what is left of
            it is as large as their difference). None: not a filter pair, or not measured."""
            if comparison is None or pair_distances([photos[k], photos[o]])[0] > params.shot_distance:
                return None
            held, lost = comparison.unexplained(k, o), comparison.unexplained(o, k)
            if held is None or lost is None or lost > params.sharpened_max_residual:
                return None
            # A filter's difference is fine detail (whitish); a moved frame's is a band of edges.
            # With a tone change the difference is mostly tone, and the fit must be closer still.
            fit = lost / max(float(comparison.diff[k, o]), 1e-6)
            if fit > params.sharpened_fit or (comparison.white[k, o] < params.sharpened_white
                                              and fit > params.sharpened_tone_fit):
                return None
            return held / max(lost, 0.05)

        def undone_sharpening(soft: int, sharper: int) -> bool:
            """Whether ``soft`` is ``sharp`` with a sharpening undone: the same share of the
            sharper's amplitude kept at every higher frequency (1 / (1 + amount), a flat floor).
            A blur takes the highest frequencies to almost nothing; a denoiser keeps nearly all
            of the picture, less and less of the highest frequencies where the grain was."""
            g = comparison.gains(soft, sharper) if comparison is not None else None
            if g is None:
                return False
            upper = g[len(g) // 2:]
            lo, hi = float(upper.min()), float(upper.max())
            return lo >= params.sharpened_floor[0] and hi <= params.sharpened_floor[1] and hi <= 1.4 * lo

        sharpened: dict[int, tuple[str, int | None]] = {}
        for k in left:
            for o in left:
                if (o != k and framed(k, o) and comparison.white[k, o] < params.white_ratio
                        and sharp[k] > params.blur_sharpness_ratio * sharp[o]):
                    ratio = detail_ratio(k, o)
                    if ratio is not None and ratio < params.sharpened_ratio and undone_sharpening(o, k):
                        sharpened[k] = (f"sharpened copy of {_name(photos[o])} (sharpness "
                                        f"{fig(card[k].quality.sharpness)} vs {fig(card[o].quality.sharpness)}): "
                                        f"it holds no detail {_name(photos[o])} lacks", o)
                        break
        drop(sharpened)
        blurred: dict[int, tuple[str, int | None]] = {}
        for k in left:
            for o in left:
                if (o != k and framed(k, o) and comparison.white[k, o] < params.white_ratio
                        and sharp[o] > params.blur_sharpness_ratio * sharp[k]
                        and comparison.broadly_sharper(o, k) >= params.blur_broadly
                        # Within a sharpening filter's reach, the camera's file is the source of
                        # a copy with neither its data nor its name, not a blurred copy of it.
                        and not (sharp[o] < params.sharpening_reach * sharp[k]
                                 and _camera_file(photos[k]) and _anonymous(photos[o]))):
                    blurred[k] = (f"blurrier copy of {_name(photos[o])} (sharpness "
                                  f"{fig(card[k].quality.sharpness)} vs {fig(card[o].quality.sharpness)})", o)
                    break
        drop(blurred)
        noisy: dict[int, tuple[str, int | None]] = {}
        for k in left:
            for o in left:
                # Saved at a higher quality or not: white noise that makes a copy "sharper" and
                # noisier than another was added to it (a finer quantiser keeps detail, not grain).
                if o == k:
                    continue
                if (framed(k, o) and comparison.white[k, o] >= params.white_ratio
                        and sharp[k] > params.noise_sharpness_ratio * sharp[o]
                        and photos[k].quality.noise > params.noise_ratio * photos[o].quality.noise
                        and textured(k, o) <= params.even_noise):
                    noisy[k] = (f"noisier copy of {_name(photos[o])}: noise added after capture "
                                f"(noise {fig(card[k].quality.noise)} vs {fig(card[o].quality.noise)})", o)
                    break
        drop(noisy)

    # 5. rank what is left.
    hd = pair_distances([photos[k] for k in left])
    distinct_shots = bool(hd) and float(np.median(hd)) > params.shot_distance
    # Two captures (the frames of a burst), however alike, are each an original: the camera files'
    # quality chooses the capture, and the copy rules below choose within it.
    capture = _captures(photos, left)
    shot_score = {} if capture is None else {
        c: max(round(score(photos[k].quality, params.weights), 3) for k in left
               if capture[k] == c and _capture_file(photos[k]))
        for c in set(capture.values())}
    # The medoid over every same-size copy, the ones already dropped too: they are branches of
    # the same tree, and the source sits nearest its copies (one change from each).
    dist = None if comparison is None else (comparison.shape if comparison.shape is not None else comparison.diff)
    totals = {k: (float(dist[k, contenders].sum()) if dist is not None else 0.0) for k in left}
    worst = max(totals.values()) or 1.0

    def rank(k: int) -> tuple[float, ...]:
        p = photos[k]
        protected_first = 0.0 if p.protected else 1.0
        quality_score = round(score(p.quality, params.weights), 3)
        if distinct_shots:
            # Shots far apart in hashes: by quality, but the camera's file first. A heavy edit
            # (a caption, local contrast, a vignette) moves a copy as far as another shot, and
            # a copy with neither the camera's data nor its name was not taken by the camera.
            return (protected_first, 0.0 if _camera_file(p) else 1.0, -quality_score)
        return (
            protected_first,
            -shot_score[capture[k]] if capture else 0.0,
            0.0 if k in ancestors else 1.0,
            # messengers and web exports strip EXIF; an editor's export keeps it, with its mark
            0.0 if (p.camera or p.taken_at) and not p.edited_by else 1.0,
            0.0 if p.lossless else 1.0,
            float(name_evidence(p.path)),  # a camera's name in DCIM, a camera's name, another
            round(totals[k] / worst, 2),
            -float(q(k) or 0),
            -float(p.size_bytes),
            -quality_score,
        )

    ranked = sorted(left, key=lambda k: (rank(k), _tie_key(photos[k])))
    best = ranked[0]
    raws = [k for k in reps if originals.is_raw(photos[k])]
    if raws and not distinct_shots:  # provenance: the RAW is what the others were developed from
        best = min(raws, key=lambda k: (not photos[k].protected, -photos[k].pixels, -photos[k].size_bytes,
                                        _tie_key(photos[k])))
        ranked = [best]
    keeper = photos[best]
    uncertain = _uncertain(photos, ranked, rank, distinct_shots, bool(derived))
    verdicts: dict[int, Verdict] = {}

    def scores(k: int) -> str:
        """The quality scores of ``k`` and the keeper, as the cards show them."""
        return (f"quality score {on_card(card[k].quality, params.weights)['score']:.2f} vs "
                f"{on_card(card[best].quality, params.weights)['score']:.2f}")

    for k in range(n):
        p = photos[k]
        if k == best:
            verdicts[k] = Verdict(p.path, True, "the RAW original" if originals.is_raw(p) else "best copy")
        elif p.protected:
            verdicts[k] = Verdict(p.path, True, "in a protected folder")
        elif rep_of[p.content_hash] != k:
            verdicts[k] = Verdict(p.path, False, f"identical copy of {_name(photos[rep_of[p.content_hash]])}")
            named[k] = rep_of[p.content_hash]
        elif originals.is_raw(p):
            verdicts[k] = Verdict(p.path, True, "a RAW original (RAW files are kept)")
        elif k in pair_raw:
            raw = _name(photos[pair_raw[k]])
            if params.raw_jpeg_pairs == "keep-raw":
                verdicts[k] = Verdict(p.path, False, f"the {p.format} of the RAW+JPEG pair with {raw} "
                                                     "(raw_jpeg_pairs = keep-raw)")
            else:
                verdicts[k] = Verdict(p.path, True, f"RAW+JPEG pair with {raw}: one shot, two files")
        elif originals.is_raw(keeper) and k not in reason and not distinct_shots:
            verdicts[k] = Verdict(p.path, False, f"{p.format} copy of the RAW original {_name(keeper)}")
        elif k in reason:
            text, source = reason[k]
            verdicts[k] = Verdict(p.path, False, text)
            if source is not None:
                named[k] = source
        elif distinct_shots and _camera_file(keeper) and not _camera_file(p):
            verdicts[k] = Verdict(p.path, False, f"edited copy or another shot of {_name(keeper)}, the camera's "
                                                 f"file (its camera data and name; {scores(k)})")
        elif distinct_shots or (capture and capture[k] != capture[best]):
            verdicts[k] = Verdict(p.path, False, f"weaker shot than {_name(keeper)} ({scores(k)})")
        elif keeper.lossless and not p.lossless:
            verdicts[k] = Verdict(p.path, False, f"lossy copy of lossless {_name(keeper)}")
        elif (qb := q(best)) and (qk := q(k)) and qk < qb:
            # Nothing shows which was made from which: say only what is known.
            verdicts[k] = Verdict(p.path, False, f"lower JPEG quality than {_name(keeper)} (JPEG quality {qk} vs {qb})")
        else:
            verdicts[k] = Verdict(p.path, False, f"re-encoded copy of {_name(keeper)}")
    # Every reason names a photo that stays: a copy of a copy also names the keeper.
    kept = {k for k, v in verdicts.items() if v.keep}
    for k, o in named.items():
        v = verdicts[k]
        if not v.keep and o not in kept and o != k:
            verdicts[k] = Verdict(v.path, False, f"{v.reason}; kept: {_name(keeper)}")
    return GroupDecision(
        members=tuple(photos[k].path for k in order),
        verdicts=tuple(verdicts[k] for k in order),
        uncertain=uncertain,
        by_quality=distinct_shots or capture is not None,
    )


def _uncertain(
    photos: Sequence[PhotoInfo], ranked: Sequence[int], rank: Callable[[int], tuple[float, ...]],
    distinct_shots: bool, history: bool,
) -> bool:
    """Whether the keeper rests on weak evidence, so a person should look first.

    Certain: one contender left (the others are copies by provenance or clear degradation),
    or the runner-up loses on format (lossless) or camera-grade compression. Uncertain: distinct
    shots of nearly the same quality, copies told apart only by the pixel medoid, size or name,
    and a keeper without camera data while a dropped-to-second copy has it.
    """
    if len(ranked) < 2:
        return False
    a, b = rank(ranked[0]), rank(ranked[1])
    if distinct_shots:  # by quality, after the camera's file: look when the camera's file decided
        return a[1] != b[1] or abs(a[2] - b[2]) < 0.02
    if a[1] != b[1]:  # two captures: by the camera files' quality
        return abs(a[1] - b[1]) < 0.02
    if a[:5] != b[:5]:  # protected, capture, made-from by history, camera data, lossless
        return not (photos[ranked[0]].camera or photos[ranked[0]].taken_at) and bool(
            photos[ranked[1]].camera or photos[ranked[1]].taken_at)
    return not history
