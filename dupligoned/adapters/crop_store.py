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
* ``seg-NNNNNN.fence``: its fence posts (``Segment.fence``), per table every ``FENCE``-th sorted
  key (uint32): 3.6 MB at 1M photos that would otherwise be made by reading every page of the
  keys (3.6 GB) at the first search after a start. Made again on first use when missing.

``store_id`` is also written in the index's ``meta`` (``crop_store_id``): an index restored
from elsewhere, or a store copied from another machine, does not match and is rebuilt.
Memory: a segment's pages are released (``MADV_DONTNEED``) once a query is done with them, so
the daemon's resident memory holds one segment's touched pages at a time, not the store.
Segments are mapped ``MADV_RANDOM``: a few photos' search reads scattered 4-KB pages, and the
kernel's read-ahead made each such fault read 128 KB (0.86 ms against 0.065 ms a page from
disk here): one photo's search took 5.5 s at 1M photos on a machine whose memory cannot hold
the store. A dense search (a batch of photos) has the whole segment read ahead (``access``).

Segments are merged by size tiers, as log-structured stores do: ``FANOUT`` segments of one
tier make one of the next (32,000 photos, then 128,000; no larger: ``MAX_MERGED_PHOTOS``), so
1M photos sit in about 11 segments, not 38. Every search looks in every segment: on a machine
whose memory cannot hold the store, each look is a read from disk. A daemon merges a step at a
time while nothing waits (``merge_step``); the merge streams (``core.crop_index.merged_table``),
its memory bounded whatever the segments' size, into a ``.tmp`` file a crash leaves as a stray.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import time
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dupligoned.adapters.index import Index
from dupligoned.core.crop_index import FENCE, MERGE_KEYS, Segment, make_segment, merged_table
from dupligoned.core.crops import DESC_BYTES, CropParams, descriptors_of_blobs

log = logging.getLogger("dupligone.crop_store")

VERSION = 1
MANIFEST = "manifest.json"
META_KEY = "crop_store_id"
SEGMENT_PHOTOS = 32_000  # a rebuilt segment: ~3M descriptors, 190 MB on disk, ~0.5 GB to sort
MERGE_COUNT = 8  # segments smaller than SEGMENT_PHOTOS are merged once there are this many
FANOUT = 4  # larger segments: this many of one size tier are merged into one of the next ...
# ... up to this size: a dense search (a batch of new photos) touches most pages of a
# segment before they are let go, ~60 bytes a descriptor: a 512,000-photo segment left 3.2 GB
# resident at 1M photos, a 128,000-photo one (12M descriptors) about 0.7 GB.
MAX_MERGED_PHOTOS = 4 * SEGMENT_PHOTOS
MERGE_STEP_S = 0.25  # a daemon's merge step stops after about this long (``merge_step``)
WRITE_ROWS = 1 << 20  # descriptors copied per write of a streamed merge (~20 MB)
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


@dataclass
class _MergeJob:
    """A streamed merge under way: ``parts`` into ``name`` (written as ``name.tmp``)."""

    parts: list[_Mapped]
    name: str
    work: Generator[None, None, None]


def tier(photos: int, base: int = SEGMENT_PHOTOS, fanout: int = FANOUT) -> int:
    """A segment's size tier: 0 below ``base`` photos, then 1 + log base ``fanout`` of its
    multiple of ``base`` (1: up to 4×, 2: up to 16×, ...)."""
    return 0 if photos < base else 1 + int(math.log(photos / base, fanout) + 1e-9)


def _close(m: _Mapped) -> None:
    if m.mm is not None:
        try:
            m.mm.close()
        except BufferError:
            pass  # an array still points into it: the mapping goes with it


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
    _write_fences(path, [seg.fence(t) for t in range(len(seg.keys))])
    os.replace(tmp, path)


def _fence_path(path: Path) -> Path:
    return path.with_suffix(".fence")


def _write_fences(path: Path, fences: Sequence[npt.NDArray[np.uint32]]) -> None:
    """The fence posts of the segment file ``path``, beside it (written aside, fsynced, renamed)."""
    tmp = path.with_suffix(".fence.tmp")
    with open(tmp, "wb") as fh:
        for f in fences:
            fh.write(np.ascontiguousarray(f, "<u4").tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, _fence_path(path))


def _read_fences(path: Path, m: int, tables: int) -> dict[int, npt.NDArray[np.uint32]]:
    """The fence posts beside segment file ``path`` ({} when missing or not of its size)."""
    n = -(-m // FENCE)
    try:
        a = np.fromfile(_fence_path(path), dtype="<u4")
    except OSError:
        return {}
    if a.shape[0] != n * tables:
        return {}
    return {t: a[t * n : (t + 1) * n].astype(np.uint32) for t in range(tables)}


def _map_segment(path: Path, m: int, tables: int) -> tuple[mmap.mmap | None, Segment]:
    if m == 0:
        e32 = np.empty(0, np.int32)
        return None, Segment(np.empty((0, 2), np.uint64), e32, tuple(np.empty(0, np.uint32) for _ in range(tables)),
                             tuple(e32 for _ in range(tables)))
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    mm.madvise(mmap.MADV_RANDOM)
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
    return mm, Segment(words, own, keys, order, _read_fences(path, m, tables))


class CropStore:
    """The store in ``folder`` for the index ``index``. ``ready`` is False while it is rebuilt
    (``rebuild_step``); ``segments`` are then incomplete and must not be searched."""

    def __init__(self, folder: str | Path, index: Index, params: CropParams = CropParams()) -> None:
        self.folder = Path(folder)
        self.index = index
        self.params = params
        self.defer_merges = False  # a daemon merges small segments when idle (``merge_step``)
        self.base_photos, self.fanout = SEGMENT_PHOTOS, FANOUT  # the size tiers (``tier``) ...
        self.max_merged = MAX_MERGED_PHOTOS  # ... merged no larger than this, ...
        self.merge_keys = MERGE_KEYS  # ... sorting this many keys of a table at a time
        self._mapped: list[_Mapped] = []
        self._job: _MergeJob | None = None
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
        keep = {m.file for m in self._mapped} | {_fence_path(Path(m.file)).name for m in self._mapped} | {MANIFEST}
        for p in self.folder.iterdir():
            if p.name not in keep and (p.name.startswith("seg-") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    def _unmap(self) -> None:
        self._cancel_merge()
        old, self._mapped = self._mapped, []
        for m in old:
            _close(m)

    def close(self) -> None:
        self._unmap()

    def release(self, s: int) -> None:
        """Let the resident pages of segment ``s`` go (the page cache keeps them)."""
        if 0 <= s < len(self._mapped):
            mm = self._mapped[s].mm
            if mm is not None:
                mm.madvise(mmap.MADV_DONTNEED)

    def access(self, s: int, dense: bool) -> None:
        """Segment ``s`` is about to be searched: ``dense``, read nearly whole (have the kernel
        read it ahead in large pieces), or not (read only the pages touched, 4 KB each)."""
        if 0 <= s < len(self._mapped):
            m = self._mapped[s]
            mm = m.mm
            if mm is not None and not m.seg.fenced:
                # Written before fence posts were kept: made once, the keys read in order (at
                # 1M photos 3.6 GB; a page at a time, as a search reads, took a minute), kept.
                mm.madvise(mmap.MADV_SEQUENTIAL)
                fences = [m.seg.fence(t) for t in range(len(m.seg.keys))]
                self.release(s)
                try:
                    _write_fences(self.folder / m.file, fences)
                except OSError as exc:  # a full disk: kept in memory, written at a later start
                    log.warning("crop index: fence posts of %s not written: %s", m.file, exc)
            if mm is not None:
                if dense:
                    mm.madvise(mmap.MADV_NORMAL)
                    mm.madvise(mmap.MADV_WILLNEED)
                else:
                    mm.madvise(mmap.MADV_RANDOM)

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
        busy = {id(m) for m in self._job.parts} if self._job else set()
        small = [k for k, m in enumerate(self._mapped) if m.photos < self.base_photos and id(m) not in busy]
        # A daemon defers merging to its idle moments (``merge_step``), not inside a session's
        # search — unless small segments pile up.
        if len(small) >= (4 * MERGE_COUNT if self.defer_merges else MERGE_COUNT):
            self._merge(small)

    def _merge_candidates(self) -> list[int]:
        """The segments to merge next: every small one once there are ``MERGE_COUNT``; else the
        ``fanout`` smallest of the lowest tier holding that many, if together they are no
        larger than ``max_merged``."""
        small = [k for k, m in enumerate(self._mapped) if m.photos < self.base_photos]
        if len(small) >= MERGE_COUNT:
            return small
        by_tier: dict[int, list[int]] = {}
        for k, m in enumerate(self._mapped):
            if m.photos >= self.base_photos:
                by_tier.setdefault(tier(m.photos, self.base_photos, self.fanout), []).append(k)
        for t in sorted(by_tier):
            ks = sorted(by_tier[t], key=lambda k: self._mapped[k].photos)[: self.fanout]
            if len(ks) == self.fanout and sum(self._mapped[k].photos for k in ks) <= self.max_merged \
                    and sum(self._mapped[k].descriptors for k in ks) < 2**31:
                return sorted(ks)
        return []

    def merge_step(self, budget_s: float = MERGE_STEP_S) -> bool:
        """Go on with merging for about ``budget_s`` seconds (a merge is started when segments
        are due, ``_merge_candidates``). Returns whether there was anything to do. Searches in
        between use the segments as they were until a merge is done."""
        if not self.ready:
            return False
        if self._job is None:
            which = self._merge_candidates()
            if not which:
                return False
            parts = [self._mapped[k] for k in which]
            name = self._new_file()
            self._job = _MergeJob(parts, name, self._merge_work(parts, self.folder / (name + ".tmp")))
        job = self._job
        t0 = time.perf_counter()
        for _ in job.work:
            if time.perf_counter() - t0 >= budget_s:
                return True
        self._job = None
        self._replace(job.parts, job.name, self.folder / (job.name + ".tmp"))
        return True

    def merge_all(self) -> None:
        """Merge until no tier is due (a rebuilt store's 32,000-photo segments, at once)."""
        while self.merge_step(budget_s=3600.0):
            pass

    def _merge_work(self, parts: list[_Mapped], tmp: Path) -> Generator[None, None, None]:
        """Write the merge of ``parts`` into ``tmp`` in the segment file's layout, a bounded
        piece at a time (a ``yield`` after each): descriptors and owners copied, then per table
        its keys and order from ``merged_table``."""
        segs = [p.seg for p in parts]
        m = sum(len(s) for s in segs)
        tables = self.params.hash_tables
        fences: list[list[npt.NDArray[np.uint32]]] = [[] for _ in range(tables)]
        t0 = time.perf_counter()
        self._in_order(parts)
        with open(tmp, "wb") as fh:
            fh.truncate(m * (DESC_BYTES + 4 + 8 * tables))
            for p in parts:
                for a in range(0, len(p.seg), WRITE_ROWS):
                    fh.write(np.ascontiguousarray(p.seg.words[a : a + WRITE_ROWS], "<u8").tobytes())
                    yield
                    self._in_order(parts)
            for p in parts:
                for a in range(0, len(p.seg), WRITE_ROWS):
                    fh.write(np.ascontiguousarray(p.seg.own[a : a + WRITE_ROWS], "<i4").tobytes())
            self._let_go(parts)
            yield
            self._in_order(parts)
            keys_at = m * (DESC_BYTES + 4)
            for t in range(tables):
                done = 0  # keys of this table written: the next piece's first place in it
                for keys, order in merged_table(segs, t, self.params.hash_bits, self.merge_keys):
                    os.pwrite(fh.fileno(), keys.astype("<u4").tobytes(), keys_at + 4 * (m * t + done))
                    os.pwrite(fh.fileno(), order.astype("<i4").tobytes(), keys_at + 4 * (m * (tables + t) + done))
                    fences[t].append(keys[-done % FENCE :: FENCE])
                    done += keys.shape[0]
                    self._let_go(parts)
                    yield
                    self._in_order(parts)
            fh.flush()
            os.fsync(fh.fileno())
        _write_fences(tmp.with_suffix(""), [np.concatenate(f) if f else np.empty(0, np.uint32) for f in fences])
        log.info("crop index: merged %d segments (%d photos) in %.1f s of work", len(parts),
                 sum(p.photos for p in parts), time.perf_counter() - t0)

    @staticmethod
    def _in_order(parts: Sequence[_Mapped]) -> None:
        """A merge reads its parts in order: large pieces, not a search's 4-KB pages (again
        after each step: a search in between advised them its own way)."""
        for p in parts:
            if p.mm is not None:
                p.mm.madvise(mmap.MADV_SEQUENTIAL)

    @staticmethod
    def _let_go(parts: Sequence[_Mapped]) -> None:
        for p in parts:
            if p.mm is not None:
                p.mm.madvise(mmap.MADV_DONTNEED)

    def _cancel_merge(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.work.close()  # closes the file
            (self.folder / (job.name + ".tmp")).unlink(missing_ok=True)
            _fence_path(self.folder / job.name).unlink(missing_ok=True)
            for p in job.parts:
                if p.mm is not None:
                    p.mm.madvise(mmap.MADV_RANDOM)

    def _replace(self, parts: Sequence[_Mapped], name: str, written: Path) -> None:
        """Put the segment file ``written`` (``parts`` merged) in their place: renamed, mapped,
        in the manifest; then the parts' files go."""
        m = sum(p.descriptors for p in parts)
        if m:
            os.replace(written, self.folder / name)
        else:
            written.unlink(missing_ok=True)
        mm, mapped = _map_segment(self.folder / name, m, self.params.hash_tables)
        gone = {id(p) for p in parts}
        first = min(k for k, x in enumerate(self._mapped) if id(x) in gone)
        keep = [x for x in self._mapped if id(x) not in gone]
        keep.insert(first, _Mapped(name, sum(p.photos for p in parts), m, mm, mapped))
        self._mapped = keep
        self._sync_manifest()
        for p in parts:
            _close(p)
            (self.folder / p.file).unlink(missing_ok=True)
            _fence_path(self.folder / p.file).unlink(missing_ok=True)

    def _merge(self, which: Sequence[int]) -> None:
        """Merge segments ``which`` at once (a pile of small ones, while a session appends)."""
        parts = [self._mapped[k] for k in which]
        name = self._new_file()
        tmp = self.folder / (name + ".tmp")
        for _ in self._merge_work(parts, tmp):
            pass
        self._replace(parts, name, tmp)

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
