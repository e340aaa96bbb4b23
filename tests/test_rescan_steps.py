"""A rescan of a large library does not pause the daemon (issue 14): the real daemon rescans
100,000 indexed files in steps of its loop, and meanwhile a photo that lands is analysed and
grouped with its copy before the rescan ends, and the review page answers throughout. Also:
the stepwise scan (a merge of the walk and the index in path order) finds exactly what the
one-call scan does."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dupligoned.adapters.index import open_index, to_signed64
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.services.ingest import FolderScan, Ingest
from tests import corpus
from tests.daemon_support import Daemon, free_port, rows, wait_for, write_config

N_FILES = 100_000


def _index_dummies(tmp: Path, lib: Path, n: int) -> None:
    """``n`` small files under ``lib`` (100 folders), already in the index as analysed photos."""
    index = open_index(tmp / "state" / "index.db")
    ing = Ingest(index, ThumbStore(tmp / "state" / "thumbs"), lambda j: None, max_pixels=10**8, work_px=512, thumb_px=320)
    (folder,) = [f for f in ing.register_folders([(str(lib), False, "native")]) if f.path == str(lib)]
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2**63, (n, 2))
    batch = []
    for i in range(n):
        d = lib / f"{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        p = d / f"IMG_{i:06d}.jpg"
        p.write_bytes(b"x")
        st = p.stat()
        batch.append((folder.id, str(p), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, f"{i:064x}",
                      to_signed64(int(codes[i, 0])), to_signed64(int(codes[i, 1]))))
    with index.tx() as conn:
        conn.executemany(
            "INSERT INTO photos(folder_id, path, size_bytes, mtime_ns, dev, inode, status, first_seen_at, queued_at, "
            "analysed_at, content_hash, phash, dhash, width, height, format, lossless, sharpness, brightness, "
            "contrast, noise) VALUES (?, ?, ?, ?, ?, ?, 'ok', 0, 0, 0, ?, ?, ?, 640, 480, 'JPEG', 0, 1, 1, 1, 1)", batch)
    index.close()


class _Pager(threading.Thread):
    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls, self.results = urls, []
        self.stop = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.urls[k % len(self.urls)], timeout=10) as r:
                    code = r.status
            except OSError:
                code = 0
            self.results.append((code, time.monotonic() - t0))
            k += 1
            self.stop.wait(0.05)


def test_a_large_rescan_goes_in_steps_while_the_daemon_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUPLIGONE_NO_CROPS", "1")  # the dummies have no features to backfill
    lib = tmp_path / "lib"
    (lib / "real").mkdir(parents=True)
    original = corpus.SINGLE
    shutil.copy2(corpus.PHOTOS / original, lib / "real" / "a.jpg")
    port = free_port()
    cfg = write_config(tmp_path, [lib], watch={"stable_s": 0.3, "rescan_every_min": 0.05},
                       sessions={"quiet_s": 0.3, "recluster_every_s": 2.0},
                       web={"enabled": True, "host": "127.0.0.1", "port": port})
    _index_dummies(tmp_path, lib / "many", N_FILES)
    base = f"http://127.0.0.1:{port}"
    with Daemon(cfg) as d:
        wait_for(lambda: rows(cfg, "SELECT 1 FROM photos WHERE path LIKE ? AND status = 'ok'", (str(lib / "real") + "/%",)),
                 120, "the real photo analysed")
        wait_for(lambda: "rescanning" in d.log(), 60, "a rescan to begin", every=0.02)
        pager = _Pager([base + "/api/status", base + "/"])
        pager.start()
        # A copy lands while the rescan walks the 100,000 files.
        part = lib / "real" / "b.jpg.part"
        shutil.copy2(corpus.PHOTOS / original, part)
        os.rename(part, lib / "real" / "b.jpg")
        done = re.escape(f"scanned {lib} in ")
        wait_for(lambda: re.search(done, d.log().split("rescanning", 1)[-1]), 300, "the rescan to end")
        pager.stop.set()
        pager.join()
        log = d.log()
        wait_for(lambda: rows(cfg, "SELECT 1 FROM groups"), 60, "the copy grouped")
    first_rescan = log[log.index("rescanning"):]
    m = re.search(re.escape(f"scanned {lib} in ") + r"([\d.]+) s \((\d+) steps\): files (\d+), unchanged (\d+)", first_rescan)
    assert m is not None, first_rescan[:3000]
    assert int(m[2]) >= 5 and int(m[3]) >= N_FILES + 1 and int(m[4]) >= N_FILES, m[0]
    # The loop went on between the steps: the copy's session was opened and closed (quiet_s
    # after it landed) before the rescan ended.
    during = first_rescan[: m.start()]
    assert re.search(r"session \S+ \(burst\) closed: no new photo", during), during[-3000:]
    members = rows(cfg, "SELECT p.path FROM group_members m JOIN photos p ON p.id = m.photo_id")
    assert {str(m["path"]) for m in members} == {str(lib / "real" / "a.jpg"), str(lib / "real" / "b.jpg")}
    # And the page answered throughout.
    assert pager.results and all(code == 200 for code, _ in pager.results), pager.results
    assert max(s for _, s in pager.results) < 2.0


def test_stepwise_scan_finds_what_the_one_call_scan_finds(tmp_path: Path) -> None:
    """New, changed, unchanged, vanished and nested-library files, names that sort around a
    folder's (``a b.jpg`` < ``a.jpg`` < ``a/``), in tiny steps."""
    lib = tmp_path / "lib"
    names = ["a b.jpg", "a.jpg", "a/x.jpg", "a/y/z.jpg", "a0.jpg", "b.jpg", "c/d.jpg", "nested/n.jpg"]
    for n in names:
        (lib / n).parent.mkdir(parents=True, exist_ok=True)
        (lib / n).write_bytes(b"1")
    results = []
    for stepwise in (False, True):
        index = open_index(tmp_path / f"index{stepwise}.db")
        ing = Ingest(index, ThumbStore(tmp_path / "thumbs"), lambda j: None, max_pixels=10**8, work_px=512, thumb_px=320)
        folders = ing.register_folders([(str(lib), False, "native"), (str(lib / "nested"), False, "native")])
        top = next(f for f in folders if f.path == str(lib))
        first = ing.scan_folder(top, stable_s=0)
        assert first["new"] == 7  # not the nested library's file
        (lib / "a/x.jpg").write_bytes(b"22")  # changed
        os.remove(lib / "a0.jpg")  # vanished
        (lib / "a/new.jpg").write_bytes(b"3")  # new
        if stepwise:
            scan = FolderScan(ing, top, stable_s=0)
            scan.PAGE, scan.CHECK_EVERY = 2, 1  # many pages, a step a file
            while not scan.step(0.0):
                pass
            assert scan.steps > 3
            counts = scan.counts
        else:
            counts = ing.scan_folder(top, stable_s=0)
        live = sorted(str(r[0]) for r in index.conn.execute("SELECT path FROM photos WHERE status != 'gone'"))
        results.append((counts, live))
        index.close()
        (lib / "a/x.jpg").write_bytes(b"1")
        (lib / "a0.jpg").write_bytes(b"1")
        os.remove(lib / "a/new.jpg")
    assert results[0] == results[1]
    counts, live = results[1]
    assert counts["gone"] == 1 and counts["unchanged"] == 5 and counts["files"] == 7
    assert str(lib / "a0.jpg") not in live and str(lib / "a/new.jpg") in live and str(lib / "nested/n.jpg") not in live
