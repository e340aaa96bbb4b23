"""Choosing the photo a person would keep in a group, and saying why the others can go.

The order of questions, each with its reason:

1. Protected photos are never recommended for deletion.
2. Byte-identical files are one photo: keep the one whose name does not look like a copy.
3. Resolution: a copy with clearly fewer pixels than the largest is a down-scaled or cropped copy.
4. Among copies of (about) the same size, the *source* is the one the others were made from:
   it is the medoid of the pixel differences (every derived copy differs from the source by its
   own change, and from the other copies by two). Copies clearly further from the rest than the
   source are degraded or re-encoded copies.
5. Then lossless over lossy, more bytes per pixel in the same format (less compression), and the
   weighted quality score (sharpness, brightness, contrast, faces).
6. Then a deterministic tie-break: not a copy-looking name, earliest capture date, shortest path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dupligoned.core.model import GroupDecision, PhotoInfo, Verdict
from dupligoned.core.quality import QualityWeights, score

_COPY_NAME = re.compile(r"(\(\d+\)|\bcopy\b|\bkopie\b|\bcopie\b|-\d+$|_\d$)", re.IGNORECASE)


@dataclass(frozen=True)
class KeeperParams:
    resolution_ratio: float = 0.8  # below this share of the largest pixel count: lower resolution
    source_margin: float = 1.25  # a copy this much further from the rest than the source is derived
    source_min_diff: float = 1.0  # grey levels; below this, copies are pixel-identical in practice
    burst_diff: float = 12.0  # mean grey-level difference above which frames are distinct shots
    weights: QualityWeights = QualityWeights()

    def __post_init__(self) -> None:
        if not 0 < self.resolution_ratio <= 1:
            raise ValueError("resolution_ratio must be in (0, 1]")
        if self.source_margin < 1:
            raise ValueError("source_margin must be ≥ 1")


def looks_like_copy(path: str) -> bool:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return bool(_COPY_NAME.search(stem))


def _tie_key(p: PhotoInfo) -> tuple[bool, str, int, str]:
    return (looks_like_copy(p.path), p.taken_at or "9999", len(p.path), p.path)


def _bpp(p: PhotoInfo) -> float:
    return p.size_bytes / max(1, p.pixels)


def _why_worse(loser: PhotoInfo, keeper: PhotoInfo) -> str:
    """A short, specific reason ``loser`` is the weaker copy of ``keeper``."""
    lq, kq = loser.quality, keeper.quality
    name = keeper.path.rsplit("/", 1)[-1]
    if kq.sharpness > 1.5 * lq.sharpness + 1 and lq.noise <= kq.noise * 1.5 + 0.5:
        return f"blurrier copy of {name} (sharpness {lq.sharpness:.0f} vs {kq.sharpness:.0f})"
    if lq.noise > 1.5 * kq.noise + 1:
        return f"noisier copy of {name} (noise {lq.noise:.1f} vs {kq.noise:.1f})"
    if abs(lq.brightness - kq.brightness) > 12:
        word = "darker" if lq.brightness < kq.brightness else "brighter"
        return f"{word} copy of {name} (brightness {lq.brightness:.0f} vs {kq.brightness:.0f})"
    if loser.jpeg_quality and keeper.jpeg_quality and loser.jpeg_quality + 5 < keeper.jpeg_quality:
        return f"more compressed copy of {name} (JPEG quality {loser.jpeg_quality} vs {keeper.jpeg_quality})"
    if keeper.lossless and not loser.lossless:
        return f"lossy copy of lossless {name}"
    return f"re-encoded copy of {name}"


def decide(
    photos: Sequence[PhotoInfo],
    diff: npt.NDArray[np.floating] | None = None,
    params: KeeperParams = KeeperParams(),
) -> GroupDecision:
    """Keep/delete verdicts for one group.

    ``diff`` is an optional square matrix of mean absolute grey-level differences between the
    members (same order as ``photos``), measured at one common size; without it step 4 is skipped.
    """
    n = len(photos)
    if n == 0:
        raise ValueError("empty group")
    order = sorted(range(n), key=lambda k: photos[k].path)
    verdict: dict[int, Verdict] = {}

    # 2. identical files: one representative each.
    rep_of: dict[str, int] = {}
    for k in sorted(order, key=lambda k: _tie_key(photos[k])):
        rep_of.setdefault(photos[k].content_hash, k)
    reps = sorted(set(rep_of.values()))

    # 3. resolution.
    top = max(photos[k].pixels for k in reps)
    biggest = max(reps, key=lambda k: (photos[k].pixels, -order.index(k)))
    contenders = [k for k in reps if photos[k].pixels >= params.resolution_ratio * top]
    lower = {k: f"lower resolution {photos[k].dims} vs {photos[biggest].dims}"
             for k in reps if k not in contenders}

    # 4. the source among same-size copies.
    derived: dict[int, int] = {}  # loser -> the source it was judged against
    distinct_shots = False
    if diff is not None and len(contenders) >= 2:
        sub = diff[np.ix_(contenders, contenders)]
        off = sub[~np.eye(len(contenders), dtype=bool)]
        distinct_shots = bool(np.median(off) > params.burst_diff)
        if not distinct_shots and len(contenders) >= 3:
            totals = sub.sum(axis=1)
            src = int(np.argmin(totals))
            floor = max(totals[src], params.source_min_diff * (len(contenders) - 1))
            for c, k in enumerate(contenders):
                if c != src and totals[c] > params.source_margin * floor:
                    derived[k] = contenders[src]
    finalists = [k for k in contenders if k not in derived or photos[k].protected]

    # 5 and 6. format, compression, quality score, tie-break.
    def rank(k: int) -> tuple[float, ...]:
        p = photos[k]
        q = score(p.quality, params.weights)
        protected_first = 0.0 if p.protected else 1.0  # of same-size copies, keep the protected
        if distinct_shots:  # bursts: the best shot is the sharper, better-exposed frame
            return (protected_first, -q, 0.0, 0.0)
        same_fmt = [photos[o] for o in finalists if photos[o].format == p.format]
        bpp_rank = -_bpp(p) / max(_bpp(o) for o in same_fmt)
        return (protected_first, 0.0 if p.lossless else 1.0, round(bpp_rank, 2), -q)

    best = min(finalists, key=lambda k: (rank(k), _tie_key(photos[k])))
    keeper = photos[best]
    for k in range(n):
        p = photos[k]
        if k == best:
            verdict[k] = Verdict(p.path, True, "best copy")
        elif p.protected:
            verdict[k] = Verdict(p.path, True, "in a protected folder")
        elif p.content_hash == keeper.content_hash:
            verdict[k] = Verdict(p.path, False, f"identical copy of {keeper.path.rsplit('/', 1)[-1]}")
        elif rep_of[p.content_hash] != k:
            twin = photos[rep_of[p.content_hash]]
            verdict[k] = Verdict(p.path, False, f"identical copy of {twin.path.rsplit('/', 1)[-1]}")
        elif k in lower:
            verdict[k] = Verdict(p.path, False, lower[k])
        elif distinct_shots:
            verdict[k] = Verdict(
                p.path, False,
                f"weaker shot than {keeper.path.rsplit('/', 1)[-1]} "
                f"(score {score(p.quality, params.weights):.2f} vs {score(keeper.quality, params.weights):.2f})",
            )
        else:
            verdict[k] = Verdict(p.path, False, _why_worse(p, keeper))
    # 1. a group whose best copy is not protected but which holds protected photos keeps those
    # (above) and still deletes only unprotected copies: protection never deletes anything.
    return GroupDecision(
        members=tuple(photos[k].path for k in order),
        verdicts=tuple(verdict[k] for k in order),
    )
