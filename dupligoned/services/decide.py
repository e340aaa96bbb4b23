"""Deciding each group's keeper: a closer look at the members, then the core's keeper rules.

Faces and the pixel comparison of same-size copies only matter inside groups, so they are
measured here, for grouped photos only, on one more decode at the working size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
import numpy.typing as npt

from dupligoned.adapters.decode import decode_photo
from dupligoned.adapters.faces import count_faces
from dupligoned.core import keeper
from dupligoned.core.model import GroupDecision, PhotoInfo
from dupligoned.errors import PhotoError

COMPARE_PX = 256  # long edge at which same-size copies are compared pixel by pixel


def look_closer(photos: Sequence[PhotoInfo], work_px: int = 512) -> tuple[list[PhotoInfo], npt.NDArray[np.float64] | None]:
    """Faces for each member, and the members' mean grey-level differences at one common size.

    A member that can no longer be decoded (changed since) keeps its figures and gets the
    largest difference, so it never looks like the source.
    """
    ref = max(photos, key=lambda p: p.pixels)
    long_edge = min(COMPARE_PX, max(ref.width, ref.height))
    w = max(8, round(long_edge * ref.width / max(ref.width, ref.height)))
    h = max(8, round(long_edge * ref.height / max(ref.width, ref.height)))
    smalls: list[npt.NDArray[np.float32] | None] = []
    out: list[PhotoInfo] = []
    for p in photos:
        try:
            dec = decode_photo(p.path, work_px=work_px)
        except PhotoError:
            smalls.append(None)
            out.append(p)
            continue
        out.append(replace(p, quality=replace(p.quality, faces=count_faces(dec.work))))
        smalls.append(cv2.resize(dec.work, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32))
    n = len(photos)
    diff = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            sa, sb = smalls[a], smalls[b]
            d = 255.0 if sa is None or sb is None else float(np.abs(sa - sb).mean())
            diff[a, b] = diff[b, a] = d
    return out, diff


def decide_group(photos: Sequence[PhotoInfo], params: keeper.KeeperParams = keeper.KeeperParams()) -> GroupDecision:
    if len({p.content_hash for p in photos}) == 1:
        return keeper.decide(photos, None, params)
    closer, diff = look_closer(photos)
    return keeper.decide(closer, diff, params)
