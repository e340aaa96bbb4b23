"""The crop candidate index on disk, beside the index: ``<state_dir>/crop_index/``.

The crop stage needs, for a session's new photos, the library photos sharing descriptors with
them. Reading every stored feature from SQLite for every session (2 GB at 1M photos) is what
this replaces: the descriptors of every searched photo are kept here in sorted segments
(``core.crop_index.Segment``), memory-mapped, so that a session reads only the bucket ranges
of its own descriptors. Nothing here is the truth: the index (``photo_features``) is, and the
store is rebuilt from it when it is missing, belongs to another index, or lacks photos the
index says were searched. Stale entries (a photo analysed again, a photo gone) only cost a
candidate that verification, which reads the index, turns down.

Files:

* ``manifest.json``: ``{"version", "store_id", "params", "photos", "descriptors", "next_seq",
  "segments": [{"file", "photos", "descriptors"}], "building": null | {"after_id", "done",
  "total", "started_at"}}``, replaced atomically (written aside, fsynced, renamed).
* ``seg-NNNNNN.bin``: one segment, raw little-endian arrays one after another: words (M×16),
  owners (M×4, int32), per table its sorted keys (M×4, uint32), per table the order (M×4, int32).

``store_id`` is also written in the index's ``meta`` (``crop_store_id``): an index restored
from elsewhere, or a store copied from another machine, does not match and is rebuilt.
Memory: a segment's pages are released (``MADV_DONTNEED``) once a query is done with them, so
the daemon's resident memory holds one segment's touched pages at a time, not the store.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dupligoned.adapters.index import Index
from dupligoned.core.crop_index import Segment, make_segment
from dupligoned.core.crops import DESC_BYTES, CropParams, descriptors_of_blobs

log = logging.getLogger("dupligone.crop_store")

VERSION = 1
MANIFEST = "manifest.json"
META_KEY = "crop_store_id"
SEGMENT_PHOTOS = 32_000  # a rebuilt segment: ~3M descriptors, 190 MB on disk, ~0.5 GB to sort
MERGE_BELOW = 32_000  # segments smaller than this are merged ...
MERGE_COUNT = 8  # ... once there are this many of them
REBUILD_BLOCK = 4_000  # photos read from the index per rebuild step


def store_path(index_path: str | Path) -> Path:
    """Where the store of the index at ``index_path`` lives."""
    return Path(index_path).parent / "crop_index"


@dataclass
class _Mapped:
    file: str
    photos: int
    descriptors: int
    mm: mmap.mmap | None
    seg: Segment


def _params_key(params: CropParams) -> list[int]:
    return [params.hash_bits, params.hash_tables]


def _write_segment(path: Path, seg: Segment) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(np.ascontiguousarray(seg.words, "<u8").tobytes())
        fh.write(np.ascontiguousarray(seg.own, "<i4").tobytes())
        for k in seg.keys:
            fh.write(np.ascontiguousarray(k, "<u4").tobytes())
        for o in seg.order:
            fh.write(np.ascontiguousarray(o, "<i4").tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _map_segment(path: Path, m: int, tables: int) -> tuple[mmap.mmap | None, Segment]:
    if m == 0:
        e32 = np.empty(0, np.int32)
        return None, Segment(np.empty((0, 2), np.uint64), e32, tuple(np.empty(0, np.uint32) for _ in range(tables)),
                             tuple(e32 for _ in range(tables)))
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    want = m * (DESC_BYTES + 4 + 8 * tables)
    if len(mm) != want:
        mm.close()
        raise ValueError(f"{path.name}: {len(mm)} bytes, expected {want}")
    at = 0

    def take(dtype: str, n: int) -> npt.NDArray[Any]:
        nonlocal at
        a = np.frombuffer(mm, dtype=dtype, count=n, offset=at)
        at += a.nbytes
        return a

    words = take("<u8", 2 * m).reshape(m, 2)
    own = take("<i4", m)
    keys = tuple(take("<u4", m) for _ in range(tables))
    order = tuple(take("<i4", m) for _ in range(tables))
    return mm, Segment(words, own, keys, order)


class CropStore:
    """The store in ``folder`` for the index ``index``. ``ready`` is False while it is rebuilt
    (``rebuild_step``); ``segments`` are then incomplete and must not be searched."""

    def __init__(self, folder: str | Path, index: Index, params: CropParams = CropParams()) -> None:
        self.folder = Path(folder)
        self.index = index
        self.params = params
        self.defer_merges = False  # a daemon merges small segments when idle (``merge_small``)
        self._mapped: list[_Mapped] = []
        self.manifest: dict[str, Any] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        reason = self._load()
        if reason:
            log.info("crop index: rebuilding from the index (%s)", reason)
            self._start_rebuild()

    # ------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        return self.manifest.get("building") is None

    @property
    def photos(self) -> int:
        return int(self.manifest.get("photos", 0))

    @property
    def segments(self) -> list[Segment]:
        return [m.seg for m in self._mapped]

    def progress(self) -> dict[str, Any] | None:
        """``{"done", "total", "started_at"}`` while the store is rebuilt, else None."""
        b = self.manifest.get("building")
        return None if b is None else {"done": int(b["done"]), "total": int(b["total"]), "started_at": b["started_at"]}

    def _load(self) -> str | None:
        """Map the store's segments; returns why it must be rebuilt, or None."""
        try:
            man = json.loads((self.folder / MANIFEST).read_text())
        except FileNotFoundError:
            return "no crop index yet"
        except (OSError, ValueError) as exc:
            return f"unreadable manifest: {exc}"
        if man.get("version") != VERSION or man.get("params") != _params_key(self.params):
            return "made by another version or with other parameters"
        if man.get("store_id") != self.index.get_meta(META_KEY):
            return "made for another index"
        self.manifest = man
        try:
            for s in man["segments"]:
                mm, seg = _map_segment(self.folder / s["file"], int(s["descriptors"]), self.params.hash_tables)
                self._mapped.append(_Mapped(s["file"], int(s["photos"]), int(s["descriptors"]), mm, seg))
        except (OSError, ValueError, KeyError) as exc:
            self._unmap()
            self.manifest = {}
            return f"a damaged segment: {exc}"
        self._remove_strays()
        if self.ready:
            searched = self.index.crop_searched_count()
            if searched > self.photos:
                self._unmap()
                self.manifest = {}
                return f"it holds {self.photos} photos, the index says {searched} were searched"
        return None

    def _save(self) -> None:
        tmp = self.folder / (MANIFEST + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(self.manifest, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / MANIFEST)

    def _remove_strays(self) -> None:
        keep = {m.file for m in self._mapped} | {MANIFEST}
        for p in self.folder.iterdir():
            if p.name not in keep and (p.name.startswith("seg-") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    def _unmap(self) -> None:
        old, self._mapped = self._mapped, []
        for m in old:
            if m.mm is not None:
                try:
                    m.mm.close()
                except BufferError:
                    pass  # an array still points into it: the mapping goes with it

    def close(self) -> None:
        self._unmap()

    def release(self, s: int) -> None:
        """Let the resident pages of segment ``s`` go (the page cache keeps them)."""
        if 0 <= s < len(self._mapped):
            mm = self._mapped[s].mm
            if mm is not None:
                mm.madvise(mmap.MADV_DONTNEED)

    # ------------------------------------------------------------ writes

    def _new_file(self) -> str:
        seq = int(self.manifest.get("next_seq", 1))
        self.manifest["next_seq"] = seq + 1
        return f"seg-{seq:06d}.bin"

    def _add_segment(self, desc: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64], photos: int) -> None:
        seg = make_segment(desc, owners, self.params)
        name = self._new_file()
        if len(seg):
            _write_segment(self.folder / name, seg)
        mm, mapped = _map_segment(self.folder / name, len(seg), self.params.hash_tables)
        self._mapped.append(_Mapped(name, photos, len(seg), mm, mapped))
        self._sync_manifest()

    def _sync_manifest(self) -> None:
        self.manifest["segments"] = [{"file": m.file, "photos": m.photos, "descriptors": m.descriptors}
                                     for m in self._mapped]
        self.manifest["photos"] = sum(m.photos for m in self._mapped)
        self.manifest["descriptors"] = sum(m.descriptors for m in self._mapped)
        self._save()

    def append(self, desc: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64], photos: int) -> None:
        """Add ``photos`` searched photos: (M, 16) descriptors and the photo id owning each.

        Written and fsynced before the index marks them searched, so a crash in between costs
        at most a duplicate (harmless: votes count each photo once). Small segments are merged.
        """
        self._add_segment(desc, owners, photos)
        small = [k for k, m in enumerate(self._mapped) if m.photos < MERGE_BELOW]
        # A daemon defers merging to its idle moments (``merge_small``), not inside a session's
        # search — unless small segments pile up.
        if len(small) >= (4 * MERGE_COUNT if self.defer_merges else MERGE_COUNT):
            self._merge(small)

    def merge_small(self) -> bool:
        """Merge the small segments when there are enough of them. Returns whether it did."""
        small = [k for k, m in enumerate(self._mapped) if m.photos < MERGE_BELOW]
        if len(small) < MERGE_COUNT:
            return False
        self._merge(small)
        return True

    def _merge(self, which: Sequence[int]) -> None:
        t0 = time.perf_counter()
        parts = [self._mapped[k] for k in which]
        desc = np.concatenate([np.ascontiguousarray(p.seg.words).astype(">u8").view(np.uint8).reshape(-1, DESC_BYTES)
                               for p in parts])
        own = np.concatenate([np.asarray(p.seg.own, np.int64) for p in parts])
        photos = sum(p.photos for p in parts)
        seg = make_segment(desc, own, self.params)
        name = self._new_file()
        if len(seg):
            _write_segment(self.folder / name, seg)
        mm, mapped = _map_segment(self.folder / name, len(seg), self.params.hash_tables)
        first = min(which)
        keep = [m for k, m in enumerate(self._mapped) if k not in set(which)]
        keep.insert(first, _Mapped(name, photos, len(seg), mm, mapped))
        gone = list(parts)
        self._mapped = keep
        self._sync_manifest()
        for p in gone:
            if p.mm is not None:
                try:
                    p.mm.close()
                except BufferError:
                    pass
            (self.folder / p.file).unlink(missing_ok=True)
        log.info("crop index: merged %d segments (%d photos) in %.1f s", len(parts), photos, time.perf_counter() - t0)

    # ------------------------------------------------------------ rebuild

    def start_rebuild(self) -> None:
        """Rebuild the store from the index (``rebuild_step``), e.g. to drop the descriptors of
        photos whose features were made again: until then it holds both, old and new."""
        log.info("crop index: rebuilding from the index (asked)")
        self._start_rebuild()

    def _start_rebuild(self) -> None:
        self._unmap()
        store_id = uuid.uuid4().hex
        with self.index.tx() as conn:
            self.index.set_meta(conn, META_KEY, store_id)
        self.manifest = {"version": VERSION, "store_id": store_id, "params": _params_key(self.params),
                         "photos": 0, "descriptors": 0, "next_seq": 1, "segments": [],
                         "building": {"after_id": -1, "done": 0, "total": self.index.crop_searched_count(),
                                      "started_at": time.time()}}
        self._save()
        self._remove_strays()
        self._pending: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
        self._pending_photos, self._read_after = 0, -1

    def rebuild_step(self, block: int = REBUILD_BLOCK) -> bool:
        """Read one block of searched photos' features from the index into the store; a full
        segment is sorted and written. Returns True once the store is complete (``ready``)."""
        b = self.manifest.get("building")
        if b is None:
            return True
        if not hasattr(self, "_pending"):
            self._pending, self._pending_photos, self._read_after = [], 0, int(b["after_id"])
        rows = self.index.crop_searched_blobs_after(self._read_after, block)
        if rows:
            ids = np.array([r[0] for r in rows], np.int64)
            desc, owner = descriptors_of_blobs([r[1] for r in rows])
            self._pending.append((desc, ids[owner]))
            self._pending_photos += len(rows)
            self._read_after = int(ids[-1])
        if self._pending and (self._pending_photos >= SEGMENT_PHOTOS or not rows):
            desc = np.concatenate([d for d, _ in self._pending])
            own = np.concatenate([o for _, o in self._pending])
            n = self._pending_photos
            self._pending, self._pending_photos = [], 0
            b["done"] = int(b["done"]) + n
            b["after_id"] = self._read_after  # a restart reads on from here
            self._add_segment(desc, own, n)  # saves the manifest
        if rows:
            return False
        self.manifest["building"] = None
        self._sync_manifest()
        log.info("crop index: rebuilt, %d photos, %d descriptors", self.photos, int(self.manifest["descriptors"]))
        return True

    def rebuild_all(self) -> None:
        while not self.rebuild_step():
            pass
