"""The real daemon on a temporary library: ingest, sessions, groups, errors, moves, deletions,
restarts and a kill -9. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests import corpus
from tests.daemon_support import (
    PHOTOS,
    Daemon,
    alive,
    copy_photo,
    groups,
    groups_of,
    pids_with,
    rows,
    settled,
    singletons,
    status,
    wait_for,
    write_config,
)


def _cluster_with(out: dict, path: Path) -> set[str] | None:
    for c in out["clusters"]:
        if str(path) in c["members"]:
            return set(c["members"])
    return None


def test_ingest_sessions_errors_moves_and_restart(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    old = tmp_path / "lib" / "old"
    old.mkdir(parents=True)
    exact = groups_of("exact", 1)[0]
    resize = groups_of("resize", 1)[0]
    reenc = groups_of("reencode", 1)[0]
    # Already there at start: one member of the exact group, and unrelated photos.
    first = copy_photo(exact[0], old)
    for rel in singletons(3):
        copy_photo(rel, old)
    cfg = write_config(tmp_path, [lib])
    with Daemon(cfg) as d:
        st = wait_for(lambda: settled(cfg), 60, "the first scan to be clustered")
        assert [s["kind"] for s in st["sessions"]] == ["first_scan"]
        assert st["photos"] == 4 and st["errors"] == 0

        new = lib / "new"
        new.mkdir()
        copies = [copy_photo(rel, new) for rel in exact[1:] + resize + reenc]
        # One photo copied slowly, in chunks: it must never be read half-written.
        big = PHOTOS / resize[0]
        data = big.read_bytes()
        slow = new / "slow.jpg"
        with open(slow, "wb") as fh:
            for k in range(4):
                fh.write(data[k * len(data) // 4:(k + 1) * len(data) // 4])
                fh.flush()
                time.sleep(0.3)
        # Broken files: each recorded with its reason, the rest goes on.
        (new / "empty.jpg").write_bytes(b"")
        (new / "notes.jpg").write_text("this is not a photo\n" * 20)
        jpg = next(p for p in copies if p.suffix.lower() in (".jpg", ".jpeg"))
        (new / "truncated.jpg").write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 3])
        # Junk that must be ignored entirely.
        (new / "@eaDir").mkdir()
        copy_photo(resize[0], new / "@eaDir", "thumb.jpg")
        copy_photo(resize[0], new, ".hidden.jpg")
        copy_photo(resize[0], new, "download.jpg.part")

        st = wait_for(lambda: (s := settled(cfg)) and s["photos"] + s["errors"] == 4 + len(copies) + 4 and s,
                      60, "the burst to be analysed and clustered")
        assert st["errors"] == 3, st["recent_errors"]
        reasons = {Path(e["path"]).name: e["reason"] for e in st["recent_errors"]}
        assert "empty" in reasons["empty.jpg"]
        assert "not an image" in reasons["notes.jpg"]
        assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
        burst = [s for s in st["sessions"] if s["kind"] == "burst"]
        assert len(burst) == 1 and burst[0]["photos"] == len(copies) + 4 and burst[0]["state"] == "clustered"
        assert all(len(s["token"]) >= 22 for s in st["sessions"])
        assert not rows(cfg, "SELECT * FROM photos WHERE path LIKE '%eaDir%' OR path LIKE '%.part' OR path LIKE '%/.hidden%'")

        out = groups(cfg, burst[0]["token"])
        # The copy of an old photo is grouped with the old one (neighbours anywhere in the library).
        g_exact = _cluster_with(out, first)
        assert g_exact is not None and {str(new / r) for r in exact[1:]} <= g_exact
        g_resize = _cluster_with(out, new / resize[0])
        assert g_resize is not None and str(slow) in g_resize
        assert {str(new / r) for r in resize} <= g_resize
        for c in out["clusters"]:
            assert sorted(c["keep"] + c["delete"]) == sorted(c["members"]) and c["keep"]
            assert all(os.path.isabs(p) for p in c["members"])
        slow_row = rows(cfg, "SELECT analyses, status FROM photos WHERE path = ?", (str(slow),))[0]
        assert (slow_row["status"], slow_row["analyses"]) == ("ok", 1)
        # Thumbnails were made at ingest.
        thumbs = rows(cfg, "SELECT thumb FROM photos WHERE status = 'ok'")
        assert all(r["thumb"] and (tmp_path / "state" / "thumbs" / r["thumb"]).is_file() for r in thumbs)

        # A rename keeps the photo's identity and figures: no re-analysis.
        before = {r["path"]: (r["id"], r["analyses"], r["analysed_at"]) for r in rows(cfg, "SELECT * FROM photos")}
        renamed = new / "renamed-slow.jpg"
        os.rename(slow, renamed)
        # A deletion marks the photo gone and takes it out of the groups.
        victim = new / resize[1]
        victim.unlink()

        def moved_and_gone() -> bool:
            r = rows(cfg, "SELECT id, analyses, analysed_at FROM photos WHERE path = ? AND status = 'ok'", (str(renamed),))
            g = rows(cfg, "SELECT status FROM photos WHERE path = ?", (str(victim),))
            return bool(r) and g[0]["status"] == "gone"
        wait_for(moved_and_gone, 20, "the rename and the deletion to be recorded")
        r = rows(cfg, "SELECT id, analyses, analysed_at FROM photos WHERE path = ?", (str(renamed),))[0]
        assert (r["id"], r["analyses"], r["analysed_at"]) == before[str(slow)]
        out = wait_for(lambda: settled(cfg) and (o := groups(cfg)) and _cluster_with(o, renamed) and
                       str(victim) not in (_cluster_with(o, renamed) or set()) and o, 30, "re-clustering")
        assert str(victim) not in {p for c in out["clusters"] for p in c["members"]}
        assert d.stop(signal.SIGINT) == 0
    assert "stopped" in d.log()

    # A restart re-analyses nothing that has not changed.
    before = {r["id"]: (r["analyses"], r["analysed_at"], r["status"]) for r in rows(cfg, "SELECT * FROM photos")}
    with Daemon(cfg) as d2:
        assert f"scanned {lib}" in d2.log()  # the start-up scan is done before "running:"
        time.sleep(1.5)
        st = status(cfg)
        assert st["queued"] == 0
        after = {r["id"]: (r["analyses"], r["analysed_at"], r["status"]) for r in rows(cfg, "SELECT * FROM photos")}
        assert after == before
        # A file changed in place is analysed again, under the same identity.
        target = new / reenc[0]
        pid = rows(cfg, "SELECT id FROM photos WHERE path = ?", (str(target),))[0]["id"]
        target.write_bytes((PHOTOS / singletons(4)[3]).read_bytes())
        wait_for(lambda: rows(cfg, "SELECT analyses FROM photos WHERE id = ?", (pid,))[0]["analyses"] == 2, 20,
                 "the changed file to be analysed again")
        assert d2.stop(signal.SIGTERM) == 0


def test_kill9_during_ingest_loses_nothing(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib], sessions={"quiet_s": 0.5})
    files = [p for p in corpus.files() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    burst = files[:240]
    d = Daemon(cfg).start()
    try:
        for k, src in enumerate(burst):
            dest = lib / f"b{k // 50}" / f"{k:04d}{src.suffix}"
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(src.read_bytes())
        wait_for(lambda: rows(cfg, "SELECT COUNT(*) AS n FROM photos WHERE status != 'queued'")[0]["n"] >= 20, 60,
                 "some photos to be analysed")
        worker_pids = pids_with(str(cfg))
        d.kill9()
        done_at_kill = rows(cfg, "SELECT COUNT(*) AS n FROM photos WHERE status != 'queued'")[0]["n"]
        # The workers die with the daemon: no orphan keeps working on.
        wait_for(lambda: not [p for p in worker_pids if alive(p)], 10, "the workers to exit")
    finally:
        if d.proc is not None:
            d.kill9()
    assert done_at_kill < len(burst), "ingest finished before the kill; the test proves nothing"
    with Daemon(cfg) as d2:
        st = wait_for(lambda: (s := settled(cfg)) and s["photos"] + s["errors"] == len(burst) and s, 120,
                      "every photo to be analysed after the restart")
        r = rows(cfg, "SELECT path, analyses, status FROM photos")
        assert len(r) == len(burst)
        assert {x["analyses"] for x in r} == {1}, [dict(x) for x in r if x["analyses"] != 1][:5]
        assert len({x["path"] for x in r}) == len(burst)
        assert st["errors"] == 0
        assert d2.stop(signal.SIGINT) == 0


def test_a_file_renamed_from_a_landing_name_is_taken_at_once(tmp_path: Path) -> None:
    """A finished download or rsync transfer (renamed from ``x.part`` / ``.x.Ab12``) needs no
    stability wait; a plainly copied file still waits ``watch.stable_s``."""
    lib = tmp_path / "lib"
    lib.mkdir()
    start, one, two, three = singletons(4)
    copy_photo(start, lib, "start.jpg")
    cfg = write_config(tmp_path, [lib], watch={"stable_s": 30.0})
    with Daemon(cfg):
        wait_for(lambda: settled(cfg), 60, "the first scan")
        part = copy_photo(one, lib, "holiday.jpg.part")
        os.rename(part, lib / "holiday.jpg")
        hidden = copy_photo(two, lib, ".beach.jpg.Xy12Ab")  # rsync's temporary name
        os.rename(hidden, lib / "beach.jpg")
        copy_photo(three, lib, "plain.jpg")
        t0 = time.time()
        wait_for(lambda: len(rows(cfg, "SELECT 1 FROM photos WHERE status = 'ok'")) == 3, 20,
                 "the two renamed photos to be analysed")
        assert time.time() - t0 < 20  # well inside stable_s = 30
        done = {Path(r["path"]).name for r in rows(cfg, "SELECT path FROM photos WHERE status = 'ok'")}
        assert done == {"start.jpg", "holiday.jpg", "beach.jpg"}
        assert not rows(cfg, "SELECT 1 FROM photos WHERE path LIKE '%plain.jpg'")  # still settling
