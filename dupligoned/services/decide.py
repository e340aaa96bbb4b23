"""Deciding each group's keeper: a closer look at the members, then the core's keeper rules.

Faces and the pixel comparison of same-size copies only matter inside groups, so they are
measured here, for grouped photos only, on one more decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
import numpy.typing as npt

from dupligoned.adapters.decode import LumaPlane, decode_luma
from dupligoned.adapters.faces import count_faces
from dupligoned.core import keeper, provenance
from dupligoned.core.model import GroupDecision, PhotoInfo
from dupligoned.core.quality import measure
from dupligoned.errors import PhotoError

COMPARE_PX = 1024  # largest long edge at which same-size copies are compared pixel by pixel
FACES_PX = 384  # long edge for face detection: faces that matter to a keeper choice are large


def _resize(img: npt.NDArray[np.uint8], w: int, h: int) -> npt.NDArray[np.uint8]:
    if img.shape == (h, w):
        return img
    return np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def look_closer(
    photos: Sequence[PhotoInfo], params: keeper.KeeperParams = keeper.KeeperParams()
) -> tuple[list[PhotoInfo], keeper.Comparison, list[LumaPlane | None]]:
    """The same-size copies re-measured at one common size near full resolution (blur, noise
    and compression show there, not at the working size), their comparison, and the planes
    decoded (faces are counted on them only if the keeper ranks by quality: ``_with_faces``).

    Only members of about the largest size are decoded again: a smaller copy loses on
    resolution whatever its figures. The common size is the smallest of theirs (capped). A
    member that is not decoded, or can no longer be, compares as far from all.
    """
    ref = max(photos, key=lambda p: p.pixels)
    peers = {k for k, p in enumerate(photos) if p.pixels >= params.resolution_ratio * ref.pixels}
    long_edge = min(COMPARE_PX, min(max(photos[k].width, photos[k].height) for k in peers))
    scale = long_edge / max(ref.width, ref.height)
    w, h = max(8, round(ref.width * scale)), max(8, round(ref.height * scale))
    images: list[npt.NDArray[np.uint8] | None] = []
    planes: list[LumaPlane | None] = []
    out: list[PhotoInfo] = []
    for k, p in enumerate(photos):
        if k not in peers or len(peers) < 2:
            images.append(None)
            planes.append(None)
            out.append(p)
            continue
        try:
            plane = decode_luma(p.path)
        except PhotoError:
            images.append(None)
            planes.append(None)
            out.append(p)
            continue
        img = _resize(plane.oriented(), w, h)
        # Figures at the common size, so that copies of one size compare like for like.
        out.append(replace(p, quality=replace(measure(img), faces=p.quality.faces)))
        images.append(img)
        planes.append(plane)
    return out, _with_history(keeper.compare(images), planes, photos), planes


def _with_faces(closer: list[PhotoInfo], planes: Sequence[LumaPlane | None]) -> tuple[list[PhotoInfo], dict[str, int]]:
    """The members with their faces counted, and the counts by path. Faces only
    enter the keeper's choice where the quality score ranks the members (distinct shots, the
    frames of a burst): between copies of one shot they cannot differ, so only such groups pay
    for the detector."""
    out = []
    counted: dict[str, int] = {}
    for p, plane in zip(closer, planes, strict=True):
        if plane is None:
            out.append(p)
            continue
        full = plane.oriented()
        f = min(1.0, FACES_PX / max(full.shape))
        counted[p.path] = count_faces(_resize(full, round(full.shape[1] * f), round(full.shape[0] * f)))
        out.append(replace(p, quality=replace(p.quality, faces=counted[p.path])))
    return out, counted


def _with_history(
    comparison: keeper.Comparison, planes: Sequence[LumaPlane | None], photos: Sequence[PhotoInfo],
) -> keeper.Comparison:
    """The comparison with what the members' compression history says: which member carries
    another's JPEG quantiser (made from it), and which lossless member has exactly a lossy
    member's pixels (converted from it)."""
    shapes = [None if pl is None else (pl.raw.shape, pl.orientation) for pl in planes]
    # A lossless member with exactly a lossy member's pixels was converted from it.
    identical: list[tuple[int, int]] = []
    lineage: dict[int, provenance.Lineage] = {}
    for c, pc in enumerate(planes):
        if pc is None or not photos[c].lossless:
            continue
        for par, pp in enumerate(planes):
            if (pp is not None and not photos[par].lossless and shapes[par] == shapes[c]
                    and provenance.same_pixels(pc.raw, pp.raw)):
                identical.append((c, par))
                lineage[c] = provenance.Lineage(c, par, 1.0)
                break
    if any(pl is not None and pl.jpeg_table for pl in planes):
        # Only members stored at the same size share a block grid.
        coefs = [None if pl is None or sum(1 for s in shapes if s == shapes[k]) < 2
                 else provenance.block_dct(pl.raw) for k, pl in enumerate(planes)]
        for li in provenance.quantiser_lineage(coefs, [None if pl is None else pl.jpeg_table for pl in planes]):
            lineage.setdefault(li.child, li)
    if not lineage:
        return comparison
    return replace(comparison, lineage=tuple(lineage[k] for k in sorted(lineage)), identical=tuple(identical))




def _carried_pairs(planes: Sequence[LumaPlane | None], known: dict[int, int]) -> list[tuple[int, int]]:
    """(parent, child) pairs the carried-error test can read: a JPEG parent, a child stored at the
    same size and orientation and finer (or not a JPEG), not already known to be a copy (``known``:
    child → parent), nor known to be the parent's own source."""

    def descends(x: int, y: int) -> bool:
        for _ in range(len(known)):  # a chain of parents, never round a cycle for ever
            if x == y or x not in known:
                break
            x = known[x]
        return x == y

    shapes = [None if pl is None else (pl.raw.shape, pl.orientation) for pl in planes]
    return [(par, c) for par, pp in enumerate(planes) if pp is not None and pp.jpeg_table
            for c, pc in enumerate(planes)
            if c != par and c not in known and not descends(par, c) and pc is not None
            and shapes[c] == shapes[par] and provenance.finer(pc.jpeg_table, pp.jpeg_table)]


def _carried(planes: Sequence[LumaPlane | None], pairs: Sequence[tuple[int, int]]) -> list[provenance.Lineage]:
    """Edited copies that carry a JPEG member's quantisation error (``provenance.carried_error``):
    each child once, from the parent it carries most clearly; a pair that reads both ways says
    nothing. A glance first (tones only, a smaller square): most pairs stop there."""
    found: dict[tuple[int, int], float] = {}
    for par, c in pairs:
        pp, pc = planes[par], planes[c]
        assert pp is not None and pc is not None and pp.jpeg_table is not None
        glance = provenance.carried_error(pp.raw, pp.jpeg_table, pc.raw, provenance.DESCENT_GLANCE, taps=0)
        if glance is not None and glance >= 2 * provenance.DESCENT:
            continue
        stat = provenance.carried_error(pp.raw, pp.jpeg_table, pc.raw)
        if stat is not None and stat < provenance.DESCENT:
            found[(c, par)] = 1.0 - stat
    best: dict[int, provenance.Lineage] = {}
    for (c, par), score in found.items():
        if (par, c) not in found and (c not in best or score > best[c].score):
            best[c] = provenance.Lineage(c, par, score, "carried")
    return list(best.values())


def decide_group(photos: Sequence[PhotoInfo], params: keeper.KeeperParams = keeper.KeeperParams()) -> GroupDecision:
    if len({p.content_hash for p in photos}) == 1:
        return keeper.decide(photos, None, params)
    closer, comparison, planes = look_closer(photos, params)
    decision = keeper.decide(closer, comparison, params, shown=photos)
    faces: dict[str, int] = {}
    if decision.by_quality:
        closer, faces = _with_faces(closer, planes)
        decision = keeper.decide(closer, comparison, params, shown=photos)
    # The carried-error test (the costliest evidence) only where it can change the keeper: a pair
    # it could read whose source is not the keeper already (its copies made from the keeper only
    # make the keeper's case stronger).
    keeper_at = next(k for k, p in enumerate(photos) if p.path in decision.keep)
    pairs = _carried_pairs(planes, {li.child: li.parent for li in comparison.lineage})
    if any(par != keeper_at for par, _ in pairs):
        carried = _carried(planes, pairs)
        if carried:
            lineage = {li.child: li for li in comparison.lineage}
            for li in carried:
                lineage.setdefault(li.child, li)
            comparison = replace(comparison, lineage=tuple(lineage[k] for k in sorted(lineage)))
            decision = keeper.decide(closer, comparison, params, shown=photos)
    return replace(decision, faces=tuple(sorted(faces.items()))) if faces else decision
