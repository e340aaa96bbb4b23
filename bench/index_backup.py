#!/usr/bin/env python3
"""The index's online backup, restore and rebuild on a large index, and what the daemon's loop
feels while a backup runs.

    python bench/index_backup.py [--photos 200000] [--json]

Builds an index of ``--photos`` analysed photo rows (figures, thumbnails' names, sessions of
1,000, one group and a decision per 10 photos; no image files) in a temporary folder, then times:
``backup`` (SQLite backup API + quick_check of the copy, what the daemon runs in a thread every
``index_backup_every_h``), a write transaction of the main loop while a backup runs (the longest
of 200 one-row updates), ``restore`` of an index cut in half, and ``rebuild`` of one with six pages overwritten (rows kept).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dupligoned.adapters import index as ix  # noqa: E402


def build(path: Path, n: int) -> None:
    idx = ix.open_index(path)
    now = time.time()
    with idx.tx() as c:
        c.execute("INSERT INTO folders(path, added_at) VALUES ('/photos', ?)", (now,))
        for s in range(n // 1000 + 1):
            c.execute("INSERT INTO sessions(id, token, kind, folder_id, created_at, last_added_at, closed_at, clustered_at, dirty) "
                      "VALUES (?, ?, 'burst', 1, ?, ?, ?, ?, 0)", (s + 1, f"tok{s:08d}", now, now, now, now))
        rows = []
        for i in range(1, n + 1):
            h = f"{i:032x}"
            rows.append((i, 1, i // 1000 + 1, f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg", 3_000_000 + i, i * 1000, 2049, i,
                         "ok", now, now, h, i, -i, f"{i:016x}{i:016x}", 4032, 3024, "JPEG", 0, 92, 123.4, 110.0, 52.0,
                         1.2, f"{h[:2]}/{h}.jpg"))
        c.executemany(
            "INSERT INTO photos(id, folder_id, session_id, path, size_bytes, mtime_ns, dev, inode, status, first_seen_at, "
            "analysed_at, content_hash, phash, dhash, phash_dhash, width, height, format, lossless, jpeg_quality, "
            "sharpness, brightness, contrast, noise, thumb) VALUES (" + ",".join("?" * 25) + ")", rows)
        for g in range(1, n // 10 + 1):
            sid = (g * 10) // 1000 + 1
            c.execute("INSERT INTO groups(id, session_id, position, created_at) VALUES (?, ?, ?, ?)", (g, sid, g, now))
            c.execute("INSERT INTO group_members(group_id, photo_id, position, recommended, reason) VALUES (?, ?, 0, 'keep', 'best')",
                      (g, g * 10 - 1))
            c.execute("INSERT INTO group_members(group_id, photo_id, position, recommended, reason) VALUES (?, ?, 1, 'delete', 'copy')",
                      (g, g * 10))
            c.execute("INSERT INTO decisions(session_id, photo_id, action, decided_at) VALUES (?, ?, 'keep', ?)", (sid, g * 10, now))
    idx.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, float] = {"photos": args.photos}
    with tempfile.TemporaryDirectory(prefix="dg-backup-") as tmp:
        path = Path(tmp) / "index.db"
        t0 = time.perf_counter()
        build(path, args.photos)
        out["build_s"] = time.perf_counter() - t0
        out["index_mb"] = path.stat().st_size / 2**20

        t0 = time.perf_counter()
        ix.backup(path)
        out["backup_s"] = time.perf_counter() - t0

        # The loop's writes while a backup runs in another thread (the daemon's case).
        idx = ix.open_index(path)
        worst = 0.0
        th = threading.Thread(target=ix.backup, args=(path, Path(tmp) / "second.db"))
        th.start()
        k = 0
        while th.is_alive() or k < 200:
            t1 = time.perf_counter()
            with idx.tx() as c:
                c.execute("UPDATE photos SET worker = ? WHERE id = ?", (f"h:{k}", 1 + k % args.photos))
            worst = max(worst, time.perf_counter() - t1)
            k += 1
            if not th.is_alive() and k >= 200:
                break
        th.join()
        idx.close()
        out["loop_write_worst_ms_during_backup"] = worst * 1000
        out["loop_writes_during_backup"] = k

        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        for extra in ("-wal", "-shm"):
            Path(str(path) + extra).unlink(missing_ok=True)
        t0 = time.perf_counter()
        ix.restore(path)
        out["restore_s"] = time.perf_counter() - t0

        # Rebuild from the damaged file itself (no backup to fall back on): six pages overwritten.
        ix.backup_path_of(path).unlink()
        for extra in ("-wal", "-shm"):
            Path(str(path) + extra).unlink(missing_ok=True)
        data = bytearray(path.read_bytes())
        pages = len(data) // 4096
        for pg in (pages // 3, pages // 2, 2 * pages // 3):
            data[pg * 4096:(pg + 2) * 4096] = random.Random(pg).randbytes(8192)
        path.write_bytes(bytes(data))
        t0 = time.perf_counter()
        _aside, kept = ix.rebuild(path)
        out["rebuild_s"] = time.perf_counter() - t0
        out["rebuild_kept_photos"] = kept.get("photos", 0)
        out["rebuild_kept_decisions"] = kept.get("decisions", 0)
    if args.json:
        print(json.dumps(out))
    else:
        for k2, v in out.items():
            print(f"{k2:>36}: {v:,.2f}" if isinstance(v, float) else f"{k2:>36}: {v:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
