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


def test_kept_counts_equal_counting_the_photos(tmp_path: Path) -> None:
    """``status`` and the page read photos per (session, status) from counts the index's
    triggers keep: they equal counting the photos after any change, by any connection."""
    rng = np.random.default_rng(4)
    index = open_index(tmp_path / "index.db")
    with index.tx() as conn:
        _insert(conn, range(1, 301), "ok", rng)
        _insert(conn, range(301, 351), "queued", rng)
        conn.execute("INSERT INTO sessions(id, token, kind, created_at, last_added_at, dirty) VALUES (1, 't1', 'burst', 0, 0, 1)")
        conn.execute("INSERT INTO sessions(id, token, kind, created_at, last_added_at, dirty) VALUES (2, 't2', 'burst', 0, 0, 1)")
        conn.execute("UPDATE photos SET session_id = 1 WHERE id <= 200")
        conn.execute("UPDATE photos SET session_id = 2 WHERE id > 250")

    def counted() -> tuple[dict[str, int], dict[int, dict[str, int]]]:
        st = {str(r[0]): int(r[1]) for r in index.conn.execute("SELECT status, COUNT(*) FROM photos GROUP BY status")}
        per: dict[int, dict[str, int]] = {}
        for r in index.conn.execute("SELECT session_id, status, COUNT(*) FROM photos WHERE session_id IS NOT NULL "
                                    "GROUP BY session_id, status"):
            per.setdefault(int(r[0]), {})[str(r[1])] = int(r[2])
        return st, per

    def kept() -> tuple[dict[str, int], dict[int, dict[str, int]]]:
        return index.status_counts(), index.session_counts([1, 2])

    assert kept() == counted()
    other = sqlite3.connect(tmp_path / "index.db", isolation_level=None)
    other.execute("UPDATE photos SET status = 'ok' WHERE id BETWEEN 301 AND 320")
    other.execute("UPDATE photos SET status = 'error' WHERE id = 321")
    other.execute("UPDATE photos SET status = 'gone' WHERE id IN (1, 2, 260)")
    other.execute("UPDATE photos SET session_id = 2 WHERE id BETWEEN 10 AND 19")  # joined another session
    other.execute("UPDATE photos SET session_id = NULL WHERE id = 20")
    other.execute("DELETE FROM photos WHERE id IN (3, 330)")
    _insert(other, range(400, 410), "queued", rng)
    other.close()
    assert kept() == counted()
    from dupligoned.services import sessions

    by_token = {s["token"]: s for s in sessions.list_sessions(index)}
    assert by_token["t1"]["photos"] == 200 - 2 - 1 - 10 - 1 and by_token["t1"]["gone"] == 2
    assert by_token["t2"]["queued"] == 50 - 20 - 1 - 1 and by_token["t2"]["errors"] == 1 and by_token["t2"]["state"] == "open"
    index.close()
