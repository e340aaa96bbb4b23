"""Which copy of a group was made from which: compression history read from the pixels.

A JPEG stores each 8×8 block's DCT coefficients as whole multiples of its quantisation table.
Decoded pixels keep that lattice (up to the ±1 rounding of the decoder), and so does any file
made from them without changing them: a PNG or lossless WebP conversion, a JPEG re-saved at a
finer quality (the double quantisation of Popescu & Farid, 2004), a high-quality HEIC or WebP
re-encode. A photo that was never a JPEG with that table shows no such lattice. So "X carries
A's quantiser" means X was made from A (or from a file with A's history), never the reverse:
the original's own coefficients cannot lie on a coarser lattice that only its copy was saved at.

Everything here works on arrays (the luma plane, the table as 64 numbers in row order); reading
files is the adapters' job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dupligoned.core.quality import int_laplacian

Table = tuple[int, ...]  # 64 luminance quantiser steps, natural (row-major) order

# The IJG standard luminance table (quality 50); other qualities scale it.
_STD = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40,
                 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35,
                 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100,
                 103, 99], dtype=np.float64)

MIN_STEP = 8  # smaller steps drown in the rounding of a colour round trip (JPEG → RGB → luma)
LATTICE = 0.35  # a lattice score above this: the coefficients sit on the table's multiples (unrelated: ~0)
AGREE = 0.8  # and this share of them quantise to the very values the source holds
OFF_LATTICE = 0.15  # below this a photo is off a table's lattice
GHOST = 0.9  # share of an off-lattice photo's coefficients that quantise to a JPEG's own values


def _dct_matrix() -> npt.NDArray[np.float64]:
    k = np.arange(8)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16.0) * 0.5
    m[0, :] = math.sqrt(1 / 8)
    return np.asarray(m, dtype=np.float64)


_D = _dct_matrix()


def ijg_table(quality: int) -> Table:
    """The luminance table libjpeg (and Pillow, and most cameras' encoders) writes at ``quality``."""
    q = min(100, max(1, quality))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return tuple(int(v) for v in np.clip(np.floor((_STD * scale + 50) / 100), 1, 255))


def block_dct(luma: npt.NDArray[np.generic], max_blocks: int = 2500) -> npt.NDArray[np.float64]:
    """DCT coefficients of the 8×8 blocks on the grid from the top-left corner, as (n, 64).

    At most ``max_blocks`` blocks, taken from the middle of the photo (where the subject is,
    and no edge padding of a size that is not a multiple of 8).
    """
    h, w = (luma.shape[0] // 8) * 8, (luma.shape[1] // 8) * 8
    side = int(math.sqrt(max_blocks))
    bh, bw = min(h // 8, side), min(w // 8, side)
    y0, x0 = ((h // 8 - bh) // 2) * 8, ((w // 8 - bw) // 2) * 8
    g = luma[y0:y0 + bh * 8, x0:x0 + bw * 8].astype(np.float64) - 128.0
    blocks = g.reshape(bh, 8, bw, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    coef = np.matmul(np.matmul(_D, blocks), _D.T)
    return np.asarray(coef.reshape(-1, 64), dtype=np.float64)


def lattice_score(coef: npt.NDArray[np.float64], table: Sequence[int],
                  own: Sequence[int] | None = None) -> float | None:
    """How closely the coefficients sit on the multiples of ``table``: ~1 on it, ~0 off it.

    Only coefficients whose step is large enough to tell from rounding, and that are not near
    zero (zero is a multiple of every step), count. None when too few do to say anything.
    """
    t = np.asarray(table, dtype=np.float64)
    usable = t >= MIN_STEP
    if own is not None:
        # A JPEG's own quantiser puts it near the multiples of any step up to about twice its
        # own (a re-save from q82 at q88 sits a third of a step off, a q88 original half a step):
        # only the steps at least twice its own tell where it came from.
        usable &= t >= 2 * np.asarray(own, dtype=np.float64)
    use = np.flatnonzero(usable)
    use = use[use != 0]  # DC: level shifts and rounding move it as a whole
    if use.size == 0:
        return None
    c = coef[:, use]
    steps = np.broadcast_to(t[use][None, :], c.shape)
    live = np.abs(c) > 0.6 * steps
    if int(live.sum()) < 200:
        return None
    return float(np.cos(2 * np.pi * c[live] / steps[live]).mean())


@dataclass(frozen=True)
class Lineage:
    """One member made from another: ``child`` from ``parent`` (indexes into the group)."""

    child: int
    parent: int
    score: float  # the child's lattice score on the parent's table (or 1 - carried error)
    # "quantiser": the child's coefficients sit on the parent's lattice (a conversion or re-save);
    # "carried": an edited child carries the parent's quantisation error (``carried_error``).
    kind: str = "quantiser"


def quantiser_lineage(
    coefs: Sequence[npt.NDArray[np.float64] | None],
    tables: Sequence[Table | None],
) -> list[Lineage]:
    """Which members were made from which, read from JPEG quantisers.

    ``coefs[k]`` is member k's block DCT (None: not comparable, e.g. another stored size) and
    ``tables[k]`` its luminance table when it is a JPEG. For a JPEG member A and another member X:

    - X's coefficients sit on A's lattice and quantise to A's values: X was made from A (a PNG
      conversion, a re-save at a finer quality, a re-encode). A JPEG X is only tested on the
      steps of A that are at least twice its own, which its own quantiser cannot have made.
    - X is off A's lattice, yet quantising X with A's table gives A's values: A was made from X
      by saving it as a JPEG (Farid's "JPEG ghost" at A's own table): a camera HEIC or a
      finer JPEG, and A its messenger or export copy.

    A pair that reads both ways says nothing.
    """
    found: dict[tuple[int, int], float] = {}
    for x, cx in enumerate(coefs):
        for a, ta in enumerate(tables):
            ca = coefs[a]
            if a == x or ta is None or cx is None or ca is None or cx.shape != ca.shape:
                continue
            tx = tables[x]
            if tx is not None and tuple(tx) == tuple(ta):
                continue
            s = lattice_score(cx, ta, tx)
            if s is None:
                continue
            g = agreement(cx, ca, ta)
            if s >= LATTICE and g >= AGREE:
                found[(x, a)] = s  # x made from a
            elif s < OFF_LATTICE and g >= GHOST:
                found[(a, x)] = g  # a made from x
    out: dict[int, Lineage] = {}
    for (child, parent), score in sorted(found.items()):
        if (parent, child) in found:
            continue
        if child not in out or score > out[child].score:
            out[child] = Lineage(child, parent, score)
    return [out[k] for k in sorted(out)]


def agreement(child: npt.NDArray[np.float64], parent: npt.NDArray[np.float64], table: Sequence[int]) -> float:
    """Share of the child's clearly non-zero coefficients that, quantised with the parent's
    table, give the parent's own values: a copy of the parent, not merely a file saved with the
    same table (every camera at one quality uses one table)."""
    t = np.asarray(table, dtype=np.float64)
    use = np.flatnonzero(t >= MIN_STEP)
    use = use[use != 0]
    if use.size == 0 or child.shape != parent.shape:
        return 0.0
    c, p = child[:, use], parent[:, use]
    steps = np.broadcast_to(t[use][None, :], c.shape)
    live = np.abs(c) > 0.6 * steps
    if not live.any():
        return 0.0
    c, p, steps = c[live], p[live], steps[live]
    return float((np.round(c / steps) == np.round(p / steps)).mean())


def _coarser(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether table ``a`` is clearly coarser than ``b`` where the steps are large enough to see."""
    ta, tb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    use = ta >= MIN_STEP
    return bool(use.sum() >= 8 and np.median(ta[use] / np.maximum(tb[use], 1)) >= 1.3)


def first_quality(coef: npt.NDArray[np.float64], own: Sequence[int] | None) -> int | None:
    """The libjpeg quality a photo was first saved at, when its pixels carry a coarser lattice
    than its own table (a JPEG re-saved), else None."""
    best: tuple[float, int] | None = None
    for q in range(40, 96):
        t = ijg_table(q)
        if own is not None and not _coarser(t, own):
            continue
        s = lattice_score(coef, t)  # its own lattice is finer (``_coarser``): a first save shows between
        if s is not None and s >= LATTICE and (best is None or s > best[0] + 0.02):
            best = (s, q)
    return best[1] if best else None


def same_pixels(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> bool:
    """Whether two luma planes are the same pixels, up to the rounding of converting colour to
    luma (a JPEG's own Y plane against the luma of its decoded RGB: ±1, a little more where
    saturated colours clip)."""
    if a.shape != b.shape or a.size == 0:
        return False
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return bool(float(d.mean()) < 0.6 and float((d > 2).mean()) < 0.005)


# --- a copy carries its source's quantisation error ------------------------------------------------
#
# A JPEG's decoded coefficients differ from the picture its camera saw by a quantisation error
# as large as its steps (uniform over ±step/2 for every non-zero coefficient: 12·mean((e/step)²)
# is 1). That error is in the JPEG's pixels and in nothing made before it. A copy made from the
# JPEG after an edit that can be undone (a tone curve, exposure, contrast, a colour filter, a
# mild linear filter) and saved finer (a higher JPEG quality, PNG, lossless WebP, a fine HEIC)
# still carries it: undo the edit on the copy and the JPEG's own error comes back, far below a
# step. Nothing can predict the error of a photo from one made before it, so the test reads one
# way only. An edit that cannot be undone (noise, blur, denoising) leaves no trace here.

DESCENT = 0.6  # 12·mean((error/step)²) below this: the copy carries the JPEG's quantisation error
DESCENT_SIDE = 256  # the centre square (pixels, a multiple of 8) the test reads
DESCENT_GLANCE = 128  # a glance first (a smaller square, tones only): most pairs fail there, cheaply
DESCENT_MIN_STEP = 4  # finer steps drown in the copy's own rounding
_TAPS = 2  # the linear filter is (2·_TAPS+1)² pixels


def tone_curve(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.generic],
                mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """The tone curve (256 levels) that best maps ``src`` onto ``dst``: the mean of ``dst`` at
    each level of ``src``, levels not seen interpolated."""
    s = src[mask].astype(np.int64)
    cnt = np.bincount(s, minlength=256)
    tot = np.bincount(s, weights=dst[mask].astype(np.float64), minlength=256)
    seen = cnt > 0
    xs = np.arange(256, dtype=np.float64)
    if int(seen.sum()) < 2:
        return xs
    return np.asarray(np.interp(xs, xs[seen], tot[seen] / cnt[seen]), dtype=np.float64)


def unclipped(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """The pixels where neither image is near black or white (where a tone edit can be read)."""
    return np.asarray((a > 2) & (a < 253) & (b > 2) & (b < 253), dtype=np.bool_)


def predict(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
            taps: int = _TAPS) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``dst`` as well as a tone curve, then a small linear filter, then a tone curve again make
    it from ``src`` (least squares), and the pixels the fit used (neither side near clipping)."""
    mask = unclipped(src, dst)
    s1 = tone_curve(src, dst, mask)[src]
    if taps == 0:
        return s1, mask
    r = taps
    h, w = s1.shape
    padded = np.pad(s1, r, mode="edge")
    shifts = [padded[r + dy:r + dy + h, r + dx:r + dx + w] for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    idx = np.flatnonzero(mask.ravel())
    if idx.size < 1000:
        return s1, mask
    idx = idx[:: max(1, idx.size // 20000)]
    ys, xs = np.divmod(idx, w)
    base = ys * padded.shape[1] + xs  # the pixel's top-left tap in the padded image
    flat = padded.ravel()
    x = np.stack([flat[base + dy * padded.shape[1] + dx] for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
                 + [np.ones(idx.size)], axis=1)
    # Normal equations (26 unknowns): far cheaper than an SVD, and a touch of ridge keeps a flat
    # picture's singular system solvable.
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += 1e-6 * float(np.trace(gram)) / gram.shape[0]
    coef = np.linalg.solve(gram, x.T @ dst.ravel()[idx].astype(np.float64))
    p = np.full(s1.shape, coef[-1])
    for c, sh in zip(coef[:-1], shifts, strict=True):
        p += c * sh
    levels = np.clip(np.round(p), 0, 255).astype(np.uint8)
    return np.asarray(np.interp(p, np.arange(256.0), tone_curve(levels, dst, mask)), dtype=np.float64), mask


def carried_error(parent: npt.NDArray[np.uint8], table: Sequence[int], child: npt.NDArray[np.uint8],
                  side: int = DESCENT_SIDE, taps: int = _TAPS) -> float | None:
    """12·mean((e/step)²) of the parent JPEG's non-zero coefficients, e the parent's value less the
    best prediction of it from ``child`` (same stored size): about 1 when the child does not carry
    the parent's quantisation error, far below when it does (the child was made from the parent).
    None when too few coefficients can tell."""
    if parent.shape != child.shape:
        return None
    h, w = (parent.shape[0] // 8) * 8, (parent.shape[1] // 8) * 8
    bh, bw = min(h, side), min(w, side)
    y0, x0 = ((h - bh) // 16) * 8, ((w - bw) // 16) * 8
    a = parent[y0:y0 + bh, x0:x0 + bw]
    p, mask = predict(child[y0:y0 + bh, x0:x0 + bw], a, taps)
    whole = mask.reshape(bh // 8, 8, bw // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64).all(axis=1)
    t = np.asarray(table, dtype=np.float64)
    use = np.flatnonzero(t >= DESCENT_MIN_STEP)
    ca = block_dct(a, max_blocks=1 << 30)[whole][:, use]
    cp = block_dct(p, max_blocks=1 << 30)[whole][:, use]
    steps = t[use][None, :]
    live = np.abs(ca) >= 0.5 * steps
    if int(live.sum()) < 500:
        return None
    e = np.clip((ca - cp) / steps, -1.0, 1.0)[live]
    return float(12.0 * np.mean(e * e))


def finer(child: Sequence[int] | None, parent: Sequence[int]) -> bool:
    """Whether a child stored with table ``child`` (None: not a JPEG) could carry the parent's
    error: its own steps clearly finer where the parent's are large enough to read."""
    if child is None:
        return True
    return _coarser(parent, child)


def unexplained(target: npt.NDArray[np.uint8], source: npt.NDArray[np.uint8], side: int = DESCENT_SIDE) -> float:
    """RMS grey levels of ``target`` that ``predict`` cannot make from ``source`` (same size, the
    centre square): what ``target`` holds that ``source`` does not. A copy holds nothing its
    source lacks but its own compression and added noise (the data processing inequality); a
    blurred or denoised copy has lost detail its source still holds."""
    h, w = target.shape
    bh, bw = min(h, side), min(w, side)
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    t = target[y0:y0 + bh, x0:x0 + bw]
    p, mask = predict(source[y0:y0 + bh, x0:x0 + bw], t)
    if not mask.any():
        return 0.0
    return float(np.sqrt(np.mean((t.astype(np.float64) - p)[mask] ** 2)))


def band_gains(soft: npt.NDArray[np.uint8], sharp: npt.NDArray[np.uint8], side: int = DESCENT_SIDE,
               bands: int = 8) -> npt.NDArray[np.float64]:
    """How much of ``sharp``'s amplitude ``soft`` keeps in each of ``bands`` rings of spatial
    frequency (low to high; centre square, same size): sqrt of the ratio of their power spectra.
    A sharpening filter, undone, keeps a floor at every frequency (1 / (1 + amount)); a blur
    takes the highest frequencies (a box blur some in between) down to almost nothing."""
    h, w = soft.shape
    bh, bw = min(h, side), min(w, side)
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    win = np.outer(np.hanning(bh), np.hanning(bw))

    def power(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        g = img[y0:y0 + bh, x0:x0 + bw].astype(np.float64)
        return np.asarray(np.abs(np.fft.rfft2((g - g.mean()) * win)) ** 2, dtype=np.float64)

    fy = np.fft.fftfreq(bh)[:, None]
    fx = np.fft.rfftfreq(bw)[None, :]
    ring = np.minimum((np.sqrt(fy * fy + fx * fx) / 0.5 * bands).astype(np.int64), bands)
    ps, pk = power(soft), power(sharp)
    out = np.zeros(bands)
    for b in range(bands):
        sel = ring == b
        out[b] = math.sqrt(float(ps[sel].sum()) / max(float(pk[sel].sum()), 1e-9))
    return out


# --- a copy clipped what its source still shows ---------------------------------------------------
#
# Brightening (an exposure gain, more contrast) pushes a photo's highlights to white and takes
# the detail there with it; darkening crushes its shadows to black. What is pushed to the limit
# is lost for good, so the copy is flat where its source still shows clouds, a white dress, a
# dark coat. The reverse never happens: a photo cannot show detail its source lost. Where a
# photo had flat white already, a darkened copy is flat too (a lower ceiling): nothing is read.

CLIP_TILE = 8  # pixels of the tiles whose mean grey levels are compared
CLIP_MIN_TILES = 16  # tiles at the limit (and mostly surrounded by such tiles) needed to read anything
CLIP_NEIGHBOURS = 5  # of a tile's 8 neighbours at the limit too: off an area's edges
CLIP_DETAIL = 3.5  # spread (std) of the source's tile means less their neighbours' there: detail
CLIP_FLAT = 0.25  # the clipped copy's own spread there, at most this share of the source's
CLIP_OFF = 15.0  # grey levels the source's median tile there stays off the limit, at least


def _tile_means(x: npt.NDArray[np.uint8], h: int, w: int) -> npt.NDArray[np.float64]:
    t = CLIP_TILE
    return np.asarray(x[:h, :w].reshape(h // t, t, w // t, t).mean(axis=(1, 3), dtype=np.float64), dtype=np.float64)


def _around(g: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """The sum of each inner cell's 8 neighbours (border cells: 0)."""
    f = g.astype(np.float64)
    out = np.zeros(f.shape, dtype=np.float64)
    out[1:-1, 1:-1] = (f[:-2, :-2] + f[:-2, 1:-1] + f[:-2, 2:] + f[1:-1, :-2] + f[1:-1, 2:]
                       + f[2:, :-2] + f[2:, 1:-1] + f[2:, 2:])
    return out


def clipped_detail(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8]) -> tuple[float, str] | None:
    """How much detail ``src`` still shows where ``dst`` (same size) is clipped, and where
    ("white" or "black"): over the tiles where ``dst`` is at its limit (on average), the spread
    (std, grey levels) of ``src``'s tile means less the mean of their neighbours there. Texture
    (clouds, cloth, leaves) counts; a smooth ramp (a vignette or a graduated filter laid over a
    white sky) does not. None when too few tiles tell, or ``dst`` shows detail there too."""
    if src.shape != dst.shape:
        return None
    t = CLIP_TILE
    h, w = (src.shape[0] // t) * t, (src.shape[1] // t) * t
    if h < 4 * t or w < 4 * t:
        return None
    dm = _tile_means(dst, h, w)
    sm: npt.NDArray[np.float64] | None = None
    found: tuple[float, str] | None = None
    # At the limit on average: the copy's own compression rings a few levels below white.
    for where, limit in (("white", dm >= 248), ("black", dm <= 7)):
        # Tiles inside a clipped area (most of their neighbours clipped too): a copy shifted or
        # blurred a few pixels (a burst frame) differs mostly at the area's edges.
        count = _around(limit)
        at_limit = limit & (count >= CLIP_NEIGHBOURS)
        if int(at_limit.sum()) < CLIP_MIN_TILES:
            continue
        if sm is None:
            sm = _tile_means(src, h, w)
        # Over most of the area the source is off the limit (a copy made from the clipped photo
        # with a caption, a watermark or a sticker laid over its white sky is white around them).
        if abs(float(np.median(sm[at_limit])) - (255.0 if where == "white" else 0.0)) < CLIP_OFF:
            continue
        # Each tile against its neighbours inside the clipped area (the area's edge is no detail).
        local = _around(np.where(limit, sm, 0.0))[at_limit] / count[at_limit]
        detail = float((sm[at_limit] - local).std())
        own = float(dm[at_limit].std())
        if detail >= CLIP_DETAIL and own <= CLIP_FLAT * detail:
            if found is None or detail > found[0]:
                found = (detail, where)
    return found


SHARP_TILE = 32  # pixels of the tiles whose sharpness is compared


def tile_sharpness(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """The median, over the tiles where both images have detail (the upper half of their
    Laplacian energy, none clipped flat), of ``a``'s Laplacian energy over ``b``'s, each
    relative to its tile's own contrast (variance): how much sharper ``a`` is across the
    picture, not in a few places, and not because an exposure or contrast change scaled it."""
    t = SHARP_TILE
    h, w = ((a.shape[0] - 2) // t) * t, ((a.shape[1] - 2) // t) * t
    if a.shape != b.shape or h < 2 * t or w < 2 * t:
        return 1.0

    def tiles(x: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        g = x.astype(np.int16)
        lap = int_laplacian(g)[:h, :w].astype(np.int32)
        e = (lap * lap).reshape(h // t, t, w // t, t).sum(axis=(1, 3), dtype=np.int64)
        c = g[1:h + 1, 1:w + 1].reshape(h // t, t, w // t, t).astype(np.float64)
        return np.asarray(e, dtype=np.float64), np.asarray(c.var(axis=(1, 3)), dtype=np.float64)

    (ea, va), (eb, vb) = tiles(a), tiles(b)
    both = np.minimum(ea, eb)
    sel = (both >= np.median(both)) & (va >= 4.0) & (vb >= 4.0)
    if int(sel.sum()) < 4:
        return 1.0
    return float(np.median((ea[sel] / va[sel]) / np.maximum(eb[sel] / vb[sel], 1e-6)))
