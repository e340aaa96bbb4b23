"""The daemon's library hashes between sessions (``cluster.LibraryCache``): read once, then kept
up to date from the index's change log, whoever changes the photos (here a second connection, as
the CLI or the web page would) — always equal to reading the whole library again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from dupligoned.adapters.index import open_index, to_signed64
from dupligoned.services.cluster import Library, LibraryCache


def _insert(conn: sqlite3.Connection, ids: range, status: str, rng: np.random.Generator) -> None:
    conn.executemany(
        "INSERT INTO photos(id, path, size_bytes, mtime_ns, status, first_seen_at, phash, dhash) "
        "VALUES (?, ?, 1, 1, ?, 0, ?, ?)",
        [(i, f"/lib/{i}.jpg", status, to_signed64(int(rng.integers(0, 2**63)) * 2 + 1),
          to_signed64(int(rng.integers(0, 2**63)))) for i in ids])


def _same(a: Library, b: Library) -> bool:
    return a.ids.tolist() == b.ids.tolist() and np.array_equal(a.codes, b.codes)


def test_the_cached_library_follows_every_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = open_index(tmp_path / "index.db")
    with index.tx() as conn:
        _insert(conn, range(1, 2001), "ok", rng)
        _insert(conn, range(2001, 2101), "queued", rng)
    cache = LibraryCache()
    first = cache.get(index)
    assert len(first.ids) == 2000 and _same(first, Library.load(index))
    assert index.scalar("SELECT COUNT(*) FROM photo_changes") == 0  # read: the log is emptied

    other = sqlite3.connect(tmp_path / "index.db", isolation_level=None)  # another process's changes
    other.execute("BEGIN")
    other.execute("UPDATE photos SET status = 'gone' WHERE id IN (5, 700, 1999)")
    other.execute("UPDATE photos SET phash = phash + 2 WHERE id IN (10, 11)")  # analysed again: new content
    other.execute("UPDATE photos SET status = 'ok' WHERE id BETWEEN 2001 AND 2050")  # analysed
    other.execute("UPDATE photos SET path = path || '.moved' WHERE id = 12")  # moved: same hashes
    other.execute("DELETE FROM photos WHERE id = 13")
    _insert(other, range(3000, 3005), "ok", rng)
    other.execute("COMMIT")
    second = cache.get(index)
    want = Library.load(index)
    assert _same(second, want)
    assert len(second.ids) == 2000 - 3 + 50 - 1 + 5
    assert not np.array_equal(second.codes[second.ids == 10], first.codes[first.ids == 10])

    other.execute("UPDATE photos SET status = 'ok' WHERE id = 5")  # back
    assert _same(cache.get(index), Library.load(index))
    assert cache.get(index) is cache.get(index)  # nothing changed: nothing read
    # Many changes at once (a rescan of a moved library): read again whole, the same answer.
    other.execute("UPDATE photos SET phash = phash + 4 WHERE id <= 1500")
    assert _same(cache.get(index), Library.load(index))
    other.close()
    index.close()
