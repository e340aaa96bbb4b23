"""A photo's companion files: what belongs to it and must go (and come back) with it.

* **Live Photo video**: ``IMG_1.HEIC`` + ``IMG_1.MOV`` (iPhone; also ``.MP4``). Android motion
  photos embed the video in the JPEG itself and need nothing here.
* **XMP sidecars**: ``IMG_1.JPG.xmp`` (darktable, digiKam, DupliGone), ``IMG_1.xmp``
  (Lightroom, Capture One) and ``IMG_1.JPG.dupligone.xmp`` (ours, beside another tool's).
* **iOS edit records**: ``IMG_1.AAE``.
* **Google Takeout metadata**: ``IMG_1.JPG.json`` and ``IMG_1.JPG.supplemental-metadata.json``
  (Takeout cuts long names, so any ``IMG_1.JPG.s….json`` prefix of the latter counts).

Companions are never photos of their own (their extensions are not photo extensions, so the
walker and the watcher never queue them). Names match without regard to case, in the photo's
own folder only; a symlink is never a companion (it would lead out of the library).

A companion named after the *stem* (``IMG_1.xmp``, ``IMG_1.AAE``, ``IMG_1.MOV``) belongs to
every photo of that stem in the folder (``IMG_1.CR2`` and ``IMG_1.JPG`` share ``IMG_1.xmp``):
it goes with the last of them only, so that no photo loses its companion and no companion is
left without its photo.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from dupligoned.adapters.decode import is_photo_name

VIDEO_EXTENSIONS = (".mov", ".mp4")
SIDECAR_EXTENSIONS = (".xmp", ".aae", ".json")
COMPANION_EXTENSIONS = frozenset(VIDEO_EXTENSIONS + SIDECAR_EXTENSIONS)
_TAKEOUT_SUFFIX = ".supplemental-metadata.json"


def is_companion_name(name: str) -> bool:
    """Could a file of this name be some photo's companion (never a photo itself)?"""
    return os.path.splitext(name)[1].lower() in COMPANION_EXTENSIONS


@dataclass(frozen=True)
class Companions:
    """A photo's companions, by kind of attachment. Paths are absolute."""

    own: tuple[str, ...]  # named after the photo's full name: only this photo's
    shared: tuple[str, ...]  # named after its stem: shared with the other photos of that stem

    @property
    def all(self) -> tuple[str, ...]:
        return self.own + self.shared


def _regular_files(folder: str) -> dict[str, str]:
    """lower-case name -> real name of the regular files (not links) in ``folder``."""
    out: dict[str, str] = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    if stat.S_ISREG(e.stat(follow_symlinks=False).st_mode):
                        out[e.name.lower()] = e.name
                except OSError:
                    continue
    except OSError:
        pass
    return out


def _match(photo_name: str, names: dict[str, str]) -> tuple[list[str], list[str]]:
    low = photo_name.lower()
    stem = os.path.splitext(low)[0]
    own = [n for n in (low + ".xmp", low + ".dupligone.xmp", low + ".json", low + _TAKEOUT_SUFFIX) if n in names]
    # Takeout cuts file names at 51 characters: "IMG_1.JPG.supplemental-metad.json".
    own += sorted(n for n in names if n.startswith(low + ".s") and n.endswith(".json")
                  and _TAKEOUT_SUFFIX.startswith(n[len(low):-len(".json")]) and n not in own)
    shared = [n for n in (stem + ".xmp", stem + ".aae") + tuple(stem + v for v in VIDEO_EXTENSIONS)
              if n in names and n != low]
    return [names[n] for n in own], [names[n] for n in shared]


class FolderListing:
    """Companions of many photos, listing each folder once (a scan's clusters, a confirm)."""

    def __init__(self) -> None:
        self._folders: dict[str, dict[str, str]] = {}

    def names(self, folder: str) -> dict[str, str]:
        if folder not in self._folders:
            self._folders[folder] = _regular_files(folder)
        return self._folders[folder]

    def companions_of(self, photo_path: str) -> Companions:
        folder, name = os.path.split(photo_path)
        own, shared = _match(name, self.names(folder))
        return Companions(tuple(os.path.join(folder, n) for n in own),
                          tuple(os.path.join(folder, n) for n in shared))


def companions_of(photo_path: str) -> Companions:
    """The companion files of ``photo_path`` on disk now."""
    return FolderListing().companions_of(photo_path)


def companions_for_batch(leaving: list[str]) -> dict[str, tuple[str, ...]]:
    """For photos about to leave together: each one's companions that leave with it.

    A stem-named companion goes only if no photo of its stem stays in the folder, and then
    with one of those leaving (the greatest path: restoring that one brings it back).
    """
    listing = FolderListing()
    going = set(leaving)
    out: dict[str, tuple[str, ...]] = {}
    taken: set[str] = set()
    for path in sorted(leaving, reverse=True):
        folder, name = os.path.split(path)
        comp = listing.companions_of(path)
        moved = [c for c in comp.own if c not in taken]
        stem = os.path.splitext(name)[0].lower()
        siblings = [os.path.join(folder, real) for low, real in listing.names(folder).items()
                    if os.path.splitext(low)[0] == stem and is_photo_name(real)]
        if all(s in going for s in siblings):
            moved += [c for c in comp.shared if c not in taken]
        taken.update(moved)
        out[path] = tuple(moved)
    return out
