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
    use = np.flatnonzero(t >= MIN_STEP)
    use = use[use != 0]  # DC: level shifts and rounding move it as a whole
    if use.size == 0:
        return None
    c = coef[:, use]
    steps = t[use][None, :]
    live = np.abs(c) > 0.6 * steps
    if int(live.sum()) < 200:
        return None
    phase = np.cos(2 * np.pi * c / steps)
    return float(phase[live].mean())


@dataclass(frozen=True)
class Lineage:
    """One member made from another: ``child`` from ``parent`` (indexes into the group)."""

    child: int
    parent: int
    score: float  # the child's lattice score on the parent's table


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
    steps = t[use][None, :]
    c, p = child[:, use], parent[:, use]
    live = np.abs(c) > 0.6 * steps
    if not live.any():
        return 0.0
    return float((np.round(c / steps) == np.round(p / steps))[live].mean())


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
        s = lattice_score(coef, t, own)
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
