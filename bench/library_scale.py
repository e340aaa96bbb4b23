#!/usr/bin/env python3
"""The daemon's real path at library scale: N photos in the index, then 1,000 real new photos.

    python bench/library_scale.py --photos N [--new 1000] [--json] [--keep DIR]

**Build** (``build_s``): an index of N photos made with the product's own code — the index's
migrations, ``analyse_for_index`` + ``Ingest.apply_result`` for the real photos, the crop index
rebuilt from the index by ``CropStore`` (as a daemon finding it missing does), eps cached by
``cluster.library_eps``. Of the N photos, 250 are real files (halves of dev photos, scaled to
1024 px, analysed for real; those of dev photos large enough that a half is upscaled at most 2x
first); the rest are rows whose hashes have the structure of a real
library (``bench/cluster_scale.py``: biased bits, about a tenth planted copies at distance
0–14, look-alikes at 15–20) and whose crop features are real ORB descriptors of dev photos with
bits flipped (``bench/crops.py``), with planted copies and crops among them too. Every library
photo is already searched (as in a daemon that has run), sessions of 10,000 reviewed.

**Run**: the real ``dupligoned`` (web page on) on that state; ``ready_s`` is start to the page
answering. Then 1,000 real new photos land in the library at once (moved in): 150 re-encoded
and 100 half-size copies of library photos, 150 crops of library photos (16:9, square, a
quarter off each side; of the re-encoded ones' originals), 600 unrelated (other dev photos'
halves, then procedurally drawn scenes of ``tests/synth.py``). Times (see ``_timings``): ``end_to_end_1000_s``
from the landing to the session's groups written; ``analysis_1000_s`` landing to the last
photo analysed (the worker stage on ``queue.workers`` processes); ``session_1000_s`` the
session's own work: from the later of its closing (after ``quiet_s``) and its last photo
analysed to its groups written (crop search of what is left, hash neighbours, grouping,
keeper, writes); ``cluster_1000_s`` the daemon's crop search and clustering of those photos
as its log reports them (crop batches searched while analysis went on included).
``*_1_s``: the same for one more crop, renamed from a ``.part`` name. ``--keep DIR`` also
copies the built state to ``DIR.built``; ``--keep DIR --reuse`` starts from that copy (no
build: runs of changed daemon code on one state). While it runs the review page (``/``, a session's page,
``/api/status``) is fetched every 0.2 s: ``page_p95_ms``. ``peak_rss_mb``: the daemon
process's VmHWM (its analysis workers apart).

Found: a planted copy or crop counts when it is in one group with its library original (in
whichever session shows the group); ``false_pairs`` counts pairs in groups holding a new photo
whose photos do not come from one original (``false_pair_rate``: their share of those pairs).
``--evaluate DIR`` scores a ``--keep`` folder again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SHARED  # noqa: E402

DEV = SHARED / "datasets" / "dev"
LIB_SESSION = 10_000
REAL_LIB = 250


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- real photos ---------------------------------------------------------------------------


def _scene_of() -> dict[Path, int]:
    """Each dev photo's scene: a singleton alone, a group's members together."""
    truth = json.loads((DEV / "truth.json").read_text())
    photos = DEV / "photos"
    out = {photos / s: k for k, s in enumerate(truth["singletons"])}
    for k, g in enumerate(truth["groups"]):
        out.update({photos / m: len(truth["singletons"]) + k for m in g["members"]})
    return out


def _pool_files(library_sources: list[Path], limit: int = 300) -> list[Path]:
    """Dev photos for the synthetic features' descriptor pool, none of the scenes of the
    library's real photos: in a real library the other photos do not hold copies of this photo's
    descriptors (a pool drawn from the same photos filled their buckets with hundreds of
    near-copies and turned the planted crops' descriptors into stop words)."""
    scene = _scene_of()
    taken = {scene[s] for s in library_sources if s in scene}
    return sorted(p for p, k in scene.items() if k not in taken and p.is_file())[:limit]


def _sources() -> list[Path]:
    truth = json.loads((DEV / "truth.json").read_text())
    photos = DEV / "photos"
    # Not the singletons the truth calls ambiguous (two shots of one place): unrelated photos
    # must be unrelated.
    similar = {p for pair in truth.get("ambiguous", []) for p in pair}
    out = [photos / s for s in truth["singletons"] if s not in similar]
    from PIL import Image

    import dupligoned.adapters.decode  # noqa: F401  (registers the HEIC opener)

    def area(m: str) -> int:
        try:
            w, h = Image.open(photos / m).size
            return w * h
        except OSError:
            return -1

    for g in truth["groups"]:  # the largest member of each group: one photo per scene
        best = max(g["members"], key=area)
        out.append(photos / best)
    return out


DETAILED_PX = 512  # a half at least this long natively is upscaled at most 2x to 1024 px


def _halves(src: Path) -> tuple[list[Any], bool]:
    """Two photos from one: the two non-overlapping halves along the long side, 1024 px; and
    whether they have real detail (natively at least ``DETAILED_PX`` long)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
    w, h = im.size
    parts = [im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))] if w >= h else \
        [im.crop((0, 0, w, h // 2)), im.crop((0, h // 2, w, h))]
    out = []
    for p in parts:
        s = 1024 / max(p.size)
        out.append(p.resize((round(p.width * s), round(p.height * s)), Image.Resampling.LANCZOS))
    return out, max(parts[0].size) >= DETAILED_PX


def _crop(im: Any, kind: int) -> Any:
    w, h = im.size
    if kind == 0:  # 16:9 band
        ch = min(h, int(w * 9 / 16 * 0.7))
        cw = int(ch * 16 / 9)
        x0, y0 = (w - cw) // 3, (h - ch) // 2
        return im.crop((x0, y0, x0 + cw, y0 + ch))
    if kind == 1:  # square
        s = int(min(w, h) * 0.7)
        return im.crop(((w - s) // 2, (h - s) // 4, (w - s) // 2 + s, (h - s) // 4 + s))
    return im.crop((w // 4, h // 4, w - w // 4, h - h // 4))  # a quarter off each side


def make_photos(tmp: Path) -> dict[str, Any]:
    """Library real photos (in lib/real) and the new ones (in staging/), with their origins."""
    srcs = _sources()
    lib_dir, stage = tmp / "lib" / "real", tmp / "staging"
    lib_dir.mkdir(parents=True)
    stage.mkdir()
    detailed: list[Any] = []
    small: list[Any] = []
    src_d: list[Path] = []
    src_s: list[Path] = []
    for s in srcs:
        try:
            pair, rich = _halves(s)
        except OSError:
            continue
        (detailed if rich else small).extend(pair)
        (src_d if rich else src_s).extend([s, s])
    # The library's real photos are those with real detail first: the crops and copies are
    # planted from them. (A half of a 320-px photo upscaled 6x to 1024 px is a blur no camera
    # makes: ORB finds few repeatable corners in it, and its crops said more about the bench
    # than the product.) Unrelated new photos: the other halves, then procedurally drawn
    # scenes (tests/synth.py, seeds of their own) — not mirrored halves: a mirrored half of one
    # shot of a place is the other half of another shot of it, a look-alike, not a stranger.
    from tests import synth

    halves = detailed + small
    rest = halves[REAL_LIB:]
    others = rest + [synth.scene(9000 + k, (1024, 768) if k % 2 else (768, 1024)) for k in range(600 - len(rest))]
    assert len(others) >= 600 and len(detailed) >= 150, (len(detailed), len(small))
    lib: list[Path] = []
    for k, im in enumerate(halves[:REAL_LIB]):
        p = lib_dir / f"L{k:04d}.jpg"
        im.save(p, quality=92)
        lib.append(p)
    origin: dict[str, str] = {}
    kind: dict[str, str] = {}
    new: list[Path] = []

    def put(im: Any, name: str, of: Path | None, what: str, q: int = 90) -> Path:
        p = stage / name
        im.save(p, quality=q)
        new.append(p)
        origin[name] = str(of) if of else name
        kind[name] = what
        return p

    for k in range(150):
        put(halves[k], f"copy_{k:04d}.jpg", lib[k], "copy", 70)
    for k in range(150, 250):
        im = halves[k]
        put(im.resize((im.width // 2, im.height // 2)), f"small_{k:04d}.jpg", lib[k], "copy")
    for k in range(150):
        put(_crop(halves[k], k % 3), f"crop_{k:04d}.jpg", lib[k], "crop", 88)
    for k in range(600):
        put(others[k], f"new_{k:04d}.jpg", None, "new")
    one = tmp / "staging1"
    one.mkdir()
    im = _crop(halves[200], 2)
    im.save(one / "one_crop.jpg", quality=88)
    (tmp / "library_sources.json").write_text(json.dumps([str(p) for p in (src_d + src_s)[:REAL_LIB]]))
    return {"lib": lib, "new": new, "origin": origin, "kind": kind,
            "one": one / "one_crop.jpg", "one_origin": str(lib[200])}


# --- the synthetic library -----------------------------------------------------------------


def _codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) uint64 pHash, dHash with a real library's structure (see cluster_scale.py)."""
    from cluster_scale import make_library

    codes, _, _ = make_library(n, int(rng.integers(1 << 30)))
    p = codes[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    d = codes[:, 8:].copy().view(">u8").ravel().astype(np.uint64)
    return np.stack([p, d], axis=1)


def _flip_bits(desc: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(desc, axis=-1)
    bits ^= (rng.random(bits.shape) < p).astype(np.uint8)
    return np.packbits(bits, axis=-1)


def synthetic_features(n: int, pool: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    """Feature blobs: real descriptors with ~20 of 128 bits flipped; 5% copies of an earlier
    photo (6 bits flipped), 2% crops of one (the descriptors of a region, 8 bits flipped)."""
    from dupligoned.core.crops import CropParams, quantise

    k_max = CropParams().max_keypoints
    thumb = np.zeros((16, 16), np.uint8)
    out: list[bytes] = []
    chunk = 5_000
    for c0 in range(0, n, chunk):
        m = min(chunk, n - c0)
        desc = _flip_bits(pool[rng.integers(0, len(pool), (m, k_max))], 20 / 128, rng)
        pos = rng.uniform(0, [511, 383], (m, k_max, 2))
        kinds = rng.random(m)
        for i in range(m):
            if i > 10 and kinds[i] < 0.05:
                j = int(rng.integers(0, i))
                desc[i] = _flip_bits(desc[j], 6 / 128, rng)
                pos[i] = pos[j]
            elif i > 10 and kinds[i] < 0.07:
                j = int(rng.integers(0, i))
                inside = (pos[j][:, 0] < 300) & (pos[j][:, 1] < 220)
                kk = int(inside.sum())
                desc[i, :kk] = _flip_bits(desc[j][inside], 8 / 128, rng)
                pos[i, :kk] = pos[j][inside] * 1.7
            out.append(quantise(pos[i], desc[i], 512, 384, thumb).to_bytes())
    return out


def _pool_descriptors(files: list[Path]) -> np.ndarray:
    """ORB descriptors of ``files``: the bit statistics of real photos (as bench/crops.py)."""
    from dupligoned.adapters.decode import decode_photo
    from dupligoned.adapters.orb import extract

    out = []
    for p in files:
        try:
            out.append(extract(decode_photo(str(p)).work).desc)
        except Exception:  # noqa: BLE001 - a broken dev file is fine to skip here
            continue
    return np.concatenate(out)


def build(tmp: Path, n: int, photos: dict[str, Any], cfg_path: Path) -> dict[str, Any]:

    from dupligoned.adapters.config import load_config
    from dupligoned.adapters.crop_store import CropStore, store_path
    from dupligoned.adapters.index import open_index, to_signed64
    from dupligoned.adapters.orb import FEATURES_VERSION
    from dupligoned.adapters.thumbs import ThumbStore
    from dupligoned.core.crops import CropParams, LocalFeatures
    from dupligoned.core.hashing import combined_hex
    from dupligoned.services import cluster, sessions
    from dupligoned.services.ingest import AnalysisJob, Ingest, analyse_for_index

    cfg = load_config(cfg_path)
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    idx = open_index(cfg.index_path)
    ing = Ingest(idx, ThumbStore(cfg.thumbs_path), lambda j: None, max_pixels=cfg.analysis.max_pixels,
                 work_px=cfg.analysis.work_px, thumb_px=cfg.analysis.thumb_px, inbox=str(cfg.inbox_path))
    folders = ing.register_folders([(lib.path, lib.protected, lib.mode) for lib in cfg.libraries]
                                   + [(str(cfg.inbox_path), False, "native")])
    lib_folder = next(f for f in folders if f.path == cfg.libraries[0].path)
    n_syn = n - REAL_LIB
    codes = _codes(n_syn, rng)
    pool = _pool_descriptors(_pool_files([Path(p) for p in json.loads((tmp / "library_sources.json").read_text())]))
    now = time.time()
    n_sessions = (n + LIB_SESSION - 1) // LIB_SESSION
    with idx.tx() as conn:
        for s in range(n_sessions):
            conn.execute("INSERT INTO sessions(id, token, kind, folder_id, created_at, last_added_at, closed_at, "
                         "clustered_at, reviewed_at, dirty) VALUES (?, ?, 'first_scan', ?, ?, ?, ?, ?, ?, 0)",
                         (s + 1, sessions.new_token(), lib_folder.id, now, now, now, now, now))
        conn.execute("UPDATE folders SET first_scan_done_at = ?", (now,))
    t_feat = time.perf_counter()
    for c0 in range(0, n_syn, 50_000):
        m = min(50_000, n_syn - c0)
        blobs = synthetic_features(m, pool, rng)
        rows = []
        for k in range(m):
            i = c0 + k
            p, d = int(codes[i, 0]), int(codes[i, 1])
            rows.append((i + 1, lib_folder.id, i // LIB_SESSION + 1, f"{cfg.libraries[0].path}/syn/{i // 1000:04d}/{i:08d}.jpg",
                         3_000_000 + i, i, "ok", now, now, now, f"{i:064x}", to_signed64(p), to_signed64(d),
                         combined_hex(p, d), 4032, 3024, "JPEG", 0, 90, 120.0 + i % 50, 110.0, 50.0, 2.0))
        with idx.tx() as conn:
            conn.executemany(
                "INSERT INTO photos(id, folder_id, session_id, path, size_bytes, mtime_ns, status, first_seen_at, "
                "queued_at, analysed_at, content_hash, phash, dhash, phash_dhash, width, height, format, lossless, "
                "jpeg_quality, sharpness, brightness, contrast, noise) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # Made by today's extraction (``version``): else the daemon would analyse them again.
            conn.executemany("INSERT INTO photo_features(photo_id, data, crops_searched, crop_kth, version) "
                             "VALUES (?, ?, 1, ?, ?)",
                             [(c0 + k + 1, b, CropParams().min_votes, FEATURES_VERSION) for k, b in enumerate(blobs)])
    t_real = time.perf_counter()
    # The real library photos: analysed by the workers' own function, applied by Ingest.
    last_sid = n_sessions
    with idx.tx() as conn:
        for p in photos["lib"]:
            st = p.stat()
            conn.execute("INSERT INTO photos(folder_id, session_id, path, size_bytes, mtime_ns, dev, inode, status, "
                         "first_seen_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                         (lib_folder.id, last_sid, str(p), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, now, now))
    for r in idx.query("SELECT id, path FROM photos WHERE status = 'queued'"):
        payload = analyse_for_index(AnalysisJob(int(r[0]), str(r[1]), cfg.analysis.max_pixels, cfg.analysis.work_px,
                                                cfg.analysis.thumb_px))
        ing.apply_result(payload)
    with idx.tx() as conn:
        # Searched, as the daemon leaves them: without the alternates only a search uses.
        conn.executemany("UPDATE photo_features SET data = ? WHERE photo_id = ?", [
            (LocalFeatures.from_bytes(bytes(r[1])).without_alt().to_bytes(), int(r[0])) for r in
            conn.execute("SELECT photo_id, data FROM photo_features WHERE crops_searched = 0").fetchall()])
        conn.execute("UPDATE photo_features SET crops_searched = 1, crop_kth = ? WHERE crops_searched = 0",
                     (CropParams().min_votes,))
        conn.execute("UPDATE sessions SET dirty = 0, clustered_at = ?, reviewed_at = ?, params_fp = ?",
                     (now, now, cluster.settings_from(cfg.cluster, cfg.keeper).fingerprint()))
    t_store = time.perf_counter()
    store = CropStore(store_path(cfg.index_path), idx)
    store.rebuild_all()
    t_merge = time.perf_counter()
    store.merge_all()  # as a daemon leaves it once idle: merged by size tiers
    segments = len(store.segments)
    store.close()
    t_eps = time.perf_counter()
    settings = cluster.settings_from(cfg.cluster, cfg.keeper)
    cluster.library_eps(idx, cluster.Library.load(idx), settings)
    idx.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    idx.close()
    t1 = time.perf_counter()
    return {"build_s": round(t1 - t0, 1), "build_rows_s": round(t_real - t_feat, 1),
            "build_real_s": round(t_store - t_real, 1), "build_crop_index_s": round(t_merge - t_store, 1),
            "build_merge_s": round(t_eps - t_merge, 1), "crop_index_segments": segments,
            "build_eps_s": round(t1 - t_eps, 1), "index_db_mb": round(Path(cfg.index_path).stat().st_size / 2**20),
            "crop_index_mb": round(sum(f.stat().st_size for f in store_path(cfg.index_path).iterdir()) / 2**20)}


# --- the daemon ----------------------------------------------------------------------------


def write_config(tmp: Path, port: int, workers: int) -> Path:
    lines = [f'state_dir = "{tmp / "state"}"', "[[libraries]]", f'path = "{tmp / "lib"}"', 'mode = "native"',
             "[watch]", "stable_s = 0.3", "rescan_every_min = 0.0", "startup_scan = false",
             "[sessions]", "quiet_s = 0.3",
             "[queue]", f"workers = {workers}",
             "[web]", "enabled = true", 'host = "127.0.0.1"', f"port = {port}"]
    p = tmp / "dupligone.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read()
    except OSError:
        return 0, b""


class Pager(threading.Thread):
    """Fetches the review page's views every 0.2 s, recording each latency."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.urls = [base + "/", base + f"/s/{token}", base + "/api/status"]
        self.ms: list[float] = []
        self.failed = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop_flag.is_set():
            t0 = time.perf_counter()
            code, _ = _get(self.urls[k % len(self.urls)])
            self.ms.append((time.perf_counter() - t0) * 1000)
            self.failed += code != 200
            k += 1
            self.stop_flag.wait(0.2)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _session_of(db: Path, path: str) -> tuple[str, str] | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        r = con.execute("SELECT s.token, CASE WHEN s.clustered_at IS NOT NULL AND s.dirty = 0 THEN 'clustered' ELSE 'open' END "
                        "FROM photos p JOIN sessions s ON s.id = p.session_id WHERE p.path = ?", (path,)).fetchone()
        return None if r is None else (str(r[0]), str(r[1]))
    finally:
        con.close()


def _wait_clustered(db: Path, paths: list[str], timeout: float) -> float:
    """Seconds until every session holding ``paths`` is clustered with all of them analysed."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            q = ",".join("?" * len(paths))
            rows = con.execute(f"SELECT p.status, s.clustered_at, s.dirty, s.closed_at FROM photos p "
                               f"LEFT JOIN sessions s ON s.id = p.session_id WHERE p.path IN ({q})", paths).fetchall()
        finally:
            con.close()
        if len(rows) == len(paths) and all(r[0] != "queued" and r[1] is not None and r[2] == 0 and r[3] is not None
                                           for r in rows):
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise TimeoutError(f"sessions not clustered after {timeout} s")


def _timings(db: Path, paths: list[str], t_land: float, tag: str) -> dict[str, float]:
    """The figures of one session, by the wall clock (the daemon's and ours are the same):

    * ``end_to_end_<tag>_s``: the photos landing to their session's groups written;
    * ``analysis_<tag>_s``: landing to the last of them analysed (the watcher, the stability
      wait and the worker stage: decoding and measuring the new photos);
    * ``session_<tag>_s``: the session's own work, from the later of its closing (after the
      quiet wait) and its last photo analysed, to its groups written — hash neighbours, crop
      candidates and verification, grouping, keeper, writes (what ``Done when`` times);
    * ``quiet_wait_<tag>_s``: the last analysed to the closing, when the session closed later.
    """
    _wait_clustered(db, paths, 1800)
    t_done = time.time()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        q = ",".join("?" * len(paths))
        last_analysed, closed = con.execute(
            f"SELECT MAX(p.analysed_at), MAX(s.closed_at) FROM photos p JOIN sessions s ON s.id = p.session_id "
            f"WHERE p.path IN ({q})", paths).fetchone()
    finally:
        con.close()
    start = max(float(last_analysed), float(closed))
    return {f"end_to_end_{tag}_s": round(t_done - t_land, 2), f"analysis_{tag}_s": round(float(last_analysed) - t_land, 2),
            f"quiet_wait_{tag}_s": round(max(0.0, float(closed) - float(last_analysed)), 2),
            f"session_{tag}_s": round(t_done - start, 2)}


def _land(files: list[Path], dest: Path, part: bool = False) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for f in files:
        if part:  # renamed from a landing name: taken without the stability wait
            tmp = dest / (f.name + ".part")
            shutil.move(str(f), tmp)
            os.rename(tmp, dest / f.name)
        else:
            os.rename(f, dest / f.name)
    return t0


def _origin(path: str, lib_dir: Path) -> tuple[str, str]:
    """(what, the library photo it comes from) of a new photo, from its name (see make_photos)."""
    name = Path(path).name
    what, _, num = name.partition("_")
    if what in ("copy", "small", "crop"):
        return ("crop" if what == "crop" else "copy"), str(lib_dir / f"L{int(num[:4]):04d}.jpg")
    if name == "one_crop.jpg":
        return "crop", str(lib_dir / "L0200.jpg")
    return "other", path


def evaluate(db: Path, new_dir: Path, lib_dir: Path) -> dict[str, Any]:
    """Planted pairs found and false pairs, over every group holding a new photo (whichever
    session shows it: a session's photos may join a group of an older one)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT m.group_id, p.path FROM group_members m JOIN photos p ON p.id = m.photo_id "
                       "WHERE m.group_id IN (SELECT m2.group_id FROM group_members m2 JOIN photos p2 "
                       "ON p2.id = m2.photo_id WHERE p2.path LIKE ?)", (str(new_dir) + "/%",)).fetchall()
    new = [str(r[0]) for r in con.execute("SELECT path FROM photos WHERE path LIKE ?", (str(new_dir) + "/%",))]
    con.close()
    groups: dict[int, list[str]] = {}
    for gid, path in rows:
        groups.setdefault(int(gid), []).append(str(path))
    origin = {p: _origin(p, lib_dir)[1] for p in new}
    together: set[tuple[str, str]] = set()
    grouped_pairs = false_pairs = 0
    for members in groups.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                x, y = members[a], members[b]
                grouped_pairs += 1
                false_pairs += origin.get(x, x) != origin.get(y, y)
                together |= {(x, y), (y, x)}
    res: dict[str, Any] = {}
    for what in ("copy", "crop"):
        planted = [(p, o) for p in new for w, o in [_origin(p, lib_dir)] if w == what]
        res[what] = (len(planted), sum((p, o) in together for p, o in planted))
    return {"copies_planted": res["copy"][0], "copies_found": res["copy"][1],
            "crop_pairs_planted": res["crop"][0], "crop_pairs_found": res["crop"][1],
            "false_pairs": false_pairs, "grouped_pairs": grouped_pairs,
            "false_pair_rate": round(false_pairs / max(1, grouped_pairs), 5)}


def _photo_lists(tmp: Path) -> dict[str, Any]:
    """The photos ``make_photos`` wrote (for a run from a snapshot of the built state)."""
    stage = tmp / "staging"
    order = {"copy": 0, "small": 1, "crop": 2, "new": 3}
    new = sorted(stage.iterdir(), key=lambda q: (order[q.name.partition("_")[0]], q.name))
    return {"lib": sorted((tmp / "lib" / "real").iterdir()), "new": new, "one": tmp / "staging1" / "one_crop.jpg"}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"photos": args.photos}
    built = Path(str(tmp) + ".built")
    if args.reuse:
        # The state as built by an earlier --keep run of the same folder: copied back in place
        # (the index holds absolute paths), so runs of changed daemon code compare like for like.
        if tmp.exists():
            shutil.rmtree(tmp)
        subprocess.run(["cp", "-a", "--reflink=auto", str(built), str(tmp)], check=True)
        port = _free_port()
        cfg = write_config(tmp, port, args.workers)
        photos = _photo_lists(tmp)
        out["photos"] = json.loads((tmp / "built.json").read_text())["photos"]
        prep_s = 0.0
    else:
        port = _free_port()
        cfg = write_config(tmp, port, args.workers)
        (tmp / "lib").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        photos = make_photos(tmp)
        prep_s = time.perf_counter() - t0
        out.update(build(tmp, args.photos, photos, cfg))
        (tmp / "built.json").write_text(json.dumps(out))
        if args.keep:
            if built.exists():
                shutil.rmtree(built)
            subprocess.run(["cp", "-a", "--reflink=auto", str(tmp), str(built)], check=True)
    db = tmp / "state" / "index.db"
    env = dict(os.environ)
    log = open(tmp / "daemon.log", "wb")
    t_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        while _get(base + "/healthz", 1)[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "daemon.log").read_text())
            if time.perf_counter() - t_start > 600:
                raise TimeoutError("daemon not ready")
            time.sleep(0.05)
        out["ready_s"] = round(time.perf_counter() - t_start, 2)
        lib_token = _session_of(db, str(photos["lib"][0]))
        pager = Pager(base, lib_token[0] if lib_token else "x")
        pager.start()
        time.sleep(1.0)
        new_dir = tmp / "lib" / "new"
        n_log = (tmp / "daemon.log").stat().st_size
        if args.cold:
            _drop_page_cache()
        t_land = _land(photos["new"][: args.new], new_dir)
        paths = [str(new_dir / p.name) for p in photos["new"][: args.new]]
        out.update(_timings(db, paths, t_land, "1000"))
        text = (tmp / "daemon.log").read_bytes()[n_log:].decode(errors="replace")
        out["cluster_1000_s"] = _log_seconds(text)
        time.sleep(1.0)
        n_log = (tmp / "daemon.log").stat().st_size
        if args.cold:
            _drop_page_cache()
        t_land = _land([photos["one"]], new_dir, part=True)
        out.update(_timings(db, [str(new_dir / photos["one"].name)], t_land, "1"))
        text = (tmp / "daemon.log").read_bytes()[n_log:].decode(errors="replace")
        out["cluster_1_s"] = _log_seconds(text)
        time.sleep(0.5)
        pager.stop_flag.set()
        pager.join()
        out["page_p95_ms"] = round(float(np.percentile(pager.ms, 95)), 1) if pager.ms else None
        out["page_requests"], out["page_failures"] = len(pager.ms), pager.failed
        out["peak_rss_mb"] = round(_peak_rss_mb(proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    out.update(evaluate(db, new_dir, tmp / "lib" / "real"))
    out["prepare_photos_s"] = round(prep_s, 1)
    return out


def _drop_page_cache() -> None:
    """Empty the kernel's page cache (root, Linux): the session then reads the index and the
    crop index from disk, as on a machine whose memory cannot hold them."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def _log_seconds(text: str) -> float:
    """Crop search plus clustering seconds the daemon logged for this part of the run."""
    import re

    s = sum(float(a) + float(b) for a, b in re.findall(r"crops: .*\(([\d.]+) s \+ ([\d.]+) s\)", text))
    s += sum(float(x) for x in re.findall(r"clustered: \d+ groups \(([\d.]+) s\)", text))
    return round(s, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="build in this folder and leave it, the built state copied to DIR.built "
                    "(default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="with --keep DIR: start again from DIR.built (no build)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each session (root, "
                    "Linux): a machine whose memory cannot hold the index and the crop index")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--evaluate", metavar="DIR", help="only score the groups of a --keep folder again")
    args = ap.parse_args()
    if args.evaluate:
        d = Path(args.evaluate)
        out = evaluate(d / "state" / "index.db", d / "lib" / "new", d / "lib" / "real")
    elif args.keep:
        tmp = Path(args.keep)
        if not args.reuse:
            tmp.mkdir(parents=True, exist_ok=False)
        out = run(args, tmp)
    else:
        with tempfile.TemporaryDirectory(prefix="dg-library-scale-") as t:
            out = run(args, Path(t))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:24} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
