"""Camera originals: RAW files, and the RAW+JPEG pairs cameras write.

A RAW (``.dng .cr2 .cr3 .nef .arw .orf .rw2 .raf .pef .srw``) holds what the sensor recorded;
every JPEG or HEIC of that shot was developed from it (by the camera, or later by a person).
That is provenance: the RAW is the original of the group that holds it.

A camera set to RAW+JPEG writes ``IMG_1.CR2`` and ``IMG_1.JPG`` for one shot: same folder, same
stem, same capture time. The two are one photo in two forms, not a duplicate to clean up:
``KeeperParams.raw_jpeg_pairs`` says whether the JPEG is kept beside its RAW (``keep-both``,
the default) or may go (``keep-raw``). A copy of the pair's JPEG elsewhere is a normal copy.

Pure: paths are strings, no file is opened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dupligoned.core.neighbours import Pairs

# Format names the decoder stores for RAWs: the extension, upper case.
RAW_FORMATS = frozenset({"DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF", "PEF", "SRW"})
# What a camera or phone writes beside its RAW.
DEVELOPED_FORMATS = frozenset({"JPEG", "MPO", "HEIF", "JXL"})
PAIR_POLICIES = ("keep-both", "keep-raw")


class Shot(Protocol):
    """What pairing needs of a photo (``PhotoInfo`` has it; so has a row of the review page)."""

    @property
    def path(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def taken_at(self) -> str | None: ...


def is_raw(p: Shot) -> bool:
    return p.format.upper() in RAW_FORMATS


def _folder_stem(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    return folder, name.rsplit(".", 1)[0].lower() if "." in name else name.lower()


def same_capture(a: str | None, b: str | None) -> bool:
    """Capture times match, or one is unknown (a stripped EXIF must not break a pair apart:
    keeping both is the safe side)."""
    return a is None or b is None or a[:19] == b[:19]


def capture_seconds(taken_at: str | None) -> float | None:
    """Seconds of an EXIF date ("YYYY:MM:DD HH:MM:SS"), None when absent or unreadable."""
    if not taken_at:
        return None
    try:
        when = dt.datetime.strptime(taken_at.strip("\x00 ")[:19].replace("-", ":", 2), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC).timestamp()


def raw_jpeg_pairs(photos: Sequence[Shot]) -> dict[int, int]:
    """The RAW+JPEG pairs among ``photos``: index of the developed file -> index of its RAW."""
    raws: dict[tuple[str, str], list[int]] = {}
    for k, p in enumerate(photos):
        if is_raw(p):
            raws.setdefault(_folder_stem(p.path), []).append(k)
    out: dict[int, int] = {}
    for k, p in enumerate(photos):
        if p.format.upper() not in DEVELOPED_FORMATS:
            continue
        for r in raws.get(_folder_stem(p.path), ()):
            if same_capture(p.taken_at, photos[r].taken_at):
                out[k] = r
                break
    return out


def pair_links(photos: Sequence[Shot]) -> list[tuple[int, int]]:
    """Pairs to join the grouping, as sorted (lo, hi) indices: a pair is one shot, whatever
    the hash distance between the camera's JPEG and the developed RAW."""
    return sorted({(min(a, b), max(a, b)) for a, b in raw_jpeg_pairs(photos).items()})


def join_links(verified: Pairs | None, links: Sequence[tuple[int, int]]) -> Pairs | None:
    """``verified`` pairs (from the crop stage, or None) with ``links`` added (distance 0)."""
    if not links:
        return verified
    i = np.array([a for a, _ in links], np.int64)
    j = np.array([b for _, b in links], np.int64)
    d = np.zeros(len(links), np.float32)
    if verified is None or not len(verified):
        return Pairs(i, j, d)
    return Pairs(np.concatenate([verified.i, i]), np.concatenate([verified.j, j]), np.concatenate([verified.dist, d]))
