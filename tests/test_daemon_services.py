"""The daemon's services on a real index file and real photos, with analysis run in-line (the
daemon runs the very same ``analyse_for_index`` in its workers): sessions clustered with their
library neighbours, decisions surviving re-clustering, trash and restore, cleanup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dupligoned.adapters.config import parse_config
from dupligoned.adapters.index import open_index
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.services import cluster, review, sessions, trash
from dupligoned.services.cleanup import run_cleanup
from dupligoned.services.ingest import AnalysisJob, Ingest, analyse_for_index
from dupligoned.services.review import groups_json
from dupligoned.services.status import status
from tests.daemon_support import PHOTOS, copy_photo, groups_of, singletons


class Rig:
    """An index, an ingest whose queue runs each job at once, and the cluster settings."""

    def __init__(self, tmp: Path) -> None:
        self.lib = tmp / "lib"
        self.lib.mkdir()
        self.cfg = parse_config({"state_dir": "state", "libraries": [{"path": "lib"}], "trash": {"retention_days": 1.0}}, tmp)
        self.index = open_index(self.cfg.index_path)
        self.jobs: list[AnalysisJob] = []
        self.ingest = Ingest(self.index, ThumbStore(self.cfg.thumbs_path), self.jobs.append,
                             max_pixels=10**8, work_px=512, thumb_px=160)
        (self.folder,) = self.ingest.register_folders([(str(self.lib), False, "auto")])
        self.settings = cluster.settings_from(self.cfg.cluster, self.cfg.keeper)

    def work(self) -> None:
        while self.jobs:
            self.ingest.apply_result(analyse_for_index(self.jobs.pop(0)))

    def cluster(self) -> list[int]:
        ready = sessions.ready_to_cluster(self.index)
        lib = cluster.Library.load(self.index)
        for sid in ready:
            cluster.cluster_session(self.index, sid, lib, self.settings)
        return ready

    def pid(self, path: Path) -> int:
        return int(self.index.scalar("SELECT id FROM photos WHERE path = ? AND status != 'gone'", (str(path),)))


def test_sessions_neighbours_decisions_trash_and_cleanup(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    g = groups_of("resize", 2)
    old = [copy_photo(r, rig.lib / "old") for r in [g[0][0], g[1][0]] + singletons(3)]
    rig.ingest.scan_folder(rig.folder, stable_s=0)
    sessions.finish_first_scan(rig.index, rig.folder.id, time.time())
    rig.work()
    assert len(rig.cluster()) == 1
    (first,) = sessions.list_sessions(rig.index)
    assert first["kind"] == "first_scan" and first["state"] == "clustered" and first["groups"] == 0

    # New copies arrive later: a burst session, clustered with the old originals.
    new = [copy_photo(r, rig.lib / "new") for r in g[0][1:] + g[1][1:]]
    for p in new:
        assert rig.ingest.file_seen(str(p)) == "new"
        assert rig.ingest.file_seen(str(p)) == "queued"  # never queued twice
    assert len(rig.jobs) == len(new)
    rig.work()
    # A photo still being copied in (a file that changed a second ago) holds the session open,
    # though its last photo came 100 s ago; one written for ever holds it 10 x quiet_s at most.
    t = time.time()
    assert sessions.close_quiet_sessions(rig.index, t + 100, 60, writing_at=t + 99) == []
    assert sessions.next_quiet_close(rig.index, 60, writing_at=t + 99) == pytest.approx(t + 159, abs=5)
    assert sessions.close_quiet_sessions(rig.index, t + 700, 60, writing_at=t + 699)
    # A copy of one of the old photos makes the old session dirty too: the new session, whose
    # photos someone is waiting to see, is grouped first.
    first_id = int(rig.index.scalar("SELECT id FROM sessions WHERE kind = 'first_scan'"))
    burst_id = int(rig.index.scalar("SELECT id FROM sessions WHERE kind = 'burst'"))
    with rig.index.tx() as conn:
        sessions.mark_dirty(conn, [first_id])
    assert sessions.ready_to_cluster(rig.index) == [burst_id, first_id]
    rig.cluster()
    burst = next(s for s in sessions.list_sessions(rig.index) if s["kind"] == "burst")
    res = review.result(rig.index, burst["token"])
    assert len(res["groups"]) == 2
    members = [{p["path"] for p in grp["photos"]} for grp in res["groups"]]
    assert {str(old[0])} | {str(rig.lib / "new" / r) for r in g[0][1:]} in members
    assert {str(old[1])} | {str(rig.lib / "new" / r) for r in g[1][1:]} in members
    for grp in res["groups"]:
        keep = [p for p in grp["photos"] if p["recommended"] == "keep"]
        assert [p["path"] for p in keep] and all(p["reason"] for p in grp["photos"])
        thumbs = [rig.index.scalar("SELECT thumb FROM photos WHERE id = ?", (p["id"],)) for p in grp["photos"]]
        assert all(p["has_thumb"] for p in grp["photos"]) and all((rig.cfg.thumbs_path / t).is_file() for t in thumbs)

    # Decisions survive re-clustering.
    g0 = next(grp for grp in res["groups"] if str(old[0]) in {p["path"] for p in grp["photos"]})
    doomed = [p for p in g0["photos"] if p["recommended"] == "delete"]
    saved = doomed[0]
    review.decide(rig.index, burst["token"], saved["id"], "keep")
    g1 = next(grp for grp in res["groups"] if grp is not g0)
    split = next(p for p in g1["photos"] if p["recommended"] == "delete")
    review.decide(rig.index, burst["token"], split["id"], "split")
    # Before the re-cluster moves it out, a split photo is already safe from a confirm.
    early = review.plan_confirm(rig.index, burst["token"]).to_json()
    assert split["path"] not in {m["path"] for m in early["moves"]}
    assert burst["token"] in {s["token"] for s in sessions.list_sessions(rig.index) if s["state"] == "clustering"}
    rig.cluster()
    res2 = review.result(rig.index, burst["token"])
    verdicts = {p["path"]: (p["decision"], p["verdict"]) for grp in res2["groups"] for p in grp["photos"]}
    assert verdicts[saved["path"]] == ("keep", "keep")
    assert split["path"] not in verdicts  # "not a duplicate" stays out
    out = groups_json(rig.index, burst["token"])
    assert any(saved["path"] in c["keep"] for c in out["clusters"])

    # Confirm takes only groups the person reviewed: the group with a decision, not the one
    # whose only decided photo left it ("not a duplicate") and which nobody opened since.
    dry = review.plan_confirm(rig.index, burst["token"]).to_json()
    res3 = review.result(rig.index, burst["token"])
    g1_now = next(grp for grp in res3["groups"] if saved["id"] not in {p["id"] for p in grp["photos"]})
    assert [u["group_id"] for u in dry["unreviewed"]] == [g1_now["id"]]
    assert not {p["id"] for p in g1_now["photos"]} & {m["photo_id"] for m in dry["moves"]}
    assert review.plan_confirm(rig.index, burst["token"], include=True).to_json()["unreviewed"] == []
    review.mark_opened(rig.index, burst["token"], g1_now)  # the page showed it

    # Dry run moves nothing; confirm moves the deletions to trash; restore brings one back.
    dry = review.plan_confirm(rig.index, burst["token"]).to_json()
    assert dry["unreviewed"] == []
    assert dry["moves"] and all(os.path.exists(m["path"]) for m in dry["moves"])
    planned = {m["path"] for m in dry["moves"]}
    assert saved["path"] not in planned and str(old[0]) not in planned
    digest = {p: Path(p).read_bytes() for p in planned}
    done = review.confirm(rig.index, burst["token"], trash.default_trash_root("", [str(rig.lib)])).to_json()
    assert {m["path"] for m in done["moved"]} == planned
    for m in done["moved"]:
        assert not os.path.exists(m["path"]) and os.path.exists(m["trash_path"])
        assert m["trash_path"].startswith(str(rig.lib / trash.TRASH_FOLDER))
    back = done["moved"][0]
    analyses = rig.index.scalar("SELECT analyses FROM photos WHERE id = ?", (back["photo_id"],))
    assert trash.restore(rig.index, back["trash_id"]) == back["path"]
    assert Path(back["path"]).read_bytes() == digest[back["path"]]
    r = rig.index.one("SELECT status, analyses FROM photos WHERE id = ?", (back["photo_id"],))
    assert (r["status"], r["analyses"]) == ("ok", analyses)  # no re-analysis
    assert rig.ingest.file_seen(back["path"]) == "unchanged"
    assert status(rig.index)["trash"] == len(planned) - 1

    # Cleanup: a dry run changes nothing; then trash past retention is purged, a vanished
    # file's row is marked gone, and its thumbnail goes once no row refers to it.
    vanished = new[-1] if str(new[-1]) not in planned else old[2]
    os.unlink(vanished)
    later = time.time() + 2 * 86_400
    rep = run_cleanup(rig.index, rig.cfg, dry_run=True, now=later)
    assert len(rep.trash_purged) == len(planned) - 1 and rep.photos_vanished == [str(vanished)]
    assert all(os.path.exists(t) for t in rep.trash_purged)
    rep = run_cleanup(rig.index, rig.cfg, dry_run=False, now=later)
    assert rep.trash_purged and not any(os.path.exists(t) for t in rep.trash_purged)
    assert rig.index.scalar("SELECT status FROM photos WHERE path = ? ORDER BY id DESC", (str(vanished),)) == "gone"
    rep = run_cleanup(rig.index, rig.cfg, dry_run=False, now=later + 8 * 86_400)
    assert str(vanished) in rep.photos_forgotten
    assert rig.index.scalar("SELECT COUNT(*) FROM photos WHERE path = ?", (str(vanished),)) == 0
    for t in rep.thumbs_removed:
        assert not (rig.cfg.thumbs_path / t).exists()
    used = {r[0] for r in rig.index.query("SELECT thumb FROM photos")}
    assert all(t in used for t in ThumbStore(rig.cfg.thumbs_path).all())


def test_moves_keep_identity_and_changes_requeue(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    (a,) = [copy_photo(r, rig.lib) for r in singletons(1)]
    rig.ingest.scan_folder(rig.folder, stable_s=0)
    rig.work()
    pid = rig.pid(a)
    # A move the watcher never saw (found by a scan): same inode, size and mtime → same photo.
    sub = rig.lib / "sub"
    sub.mkdir()
    b = sub / "renamed.jpg"
    os.rename(a, b)
    counts = rig.ingest.scan_folder(rig.folder, stable_s=0)
    assert counts.get("moved") == 1 and not rig.jobs
    assert rig.pid(b) == pid
    # A folder rename seen by the watcher.
    rig.ingest.dir_moved(str(sub), str(rig.lib / "sub2"))
    os.rename(sub, rig.lib / "sub2")
    assert rig.pid(rig.lib / "sub2" / "renamed.jpg") == pid
    # Changed content: analysed again, same identity.
    c = rig.lib / "sub2" / "renamed.jpg"
    c.write_bytes((PHOTOS / singletons(2)[1]).read_bytes())
    assert rig.ingest.file_seen(str(c)) == "changed"
    rig.work()
    assert rig.index.one("SELECT id, analyses FROM photos WHERE path = ?", (str(c),))[:] == (pid, 2)
    # A result for a file that changed again meanwhile is not written; the file is redone.
    assert rig.ingest.file_seen(str(c)) == "unchanged"
    with rig.index.tx() as conn:
        conn.execute("UPDATE photos SET status = 'queued' WHERE id = ?", (pid,))
    stale = analyse_for_index(AnalysisJob(pid, str(c), 10**8, 512, 160))
    c.write_bytes((PHOTOS / singletons(3)[2]).read_bytes())
    rig.ingest.file_seen(str(c))
    assert rig.ingest.apply_result(stale) == "requeued"
    rig.work()
    assert rig.index.one("SELECT status, analyses FROM photos WHERE id = ?", (pid,))[:] == ("ok", 3)


def test_faces_the_keeper_counts_between_shots_reach_the_index(tmp_path: Path) -> None:
    """Ingest does not look for faces (NULL: "not counted"); the keeper counts them between
    distinct shots of a group, and those counts are written back. Copies of one shot stay NULL."""
    rig = Rig(tmp_path)
    bursts = groups_of("burst", 4)
    reenc = groups_of("reencode", 1)[0]
    for rel in [r for g in bursts for r in g] + reenc:
        copy_photo(rel, rig.lib)
    rig.ingest.scan_folder(rig.folder, stable_s=0)
    sessions.finish_first_scan(rig.index, rig.folder.id, time.time())
    rig.work()
    assert rig.index.scalar("SELECT COUNT(*) FROM photos WHERE faces IS NOT NULL") == 0
    assert len(rig.cluster()) == 1

    def faces(rel: str) -> object:
        return rig.index.scalar("SELECT faces FROM photos WHERE path = ?", (str(rig.lib / rel),))

    grouped = {int(r[0]) for r in rig.index.conn.execute("SELECT photo_id FROM group_members")}
    burst_grouped = [rel for g in bursts for rel in g if rig.pid(rig.lib / rel) in grouped]
    assert burst_grouped, "no burst group formed"
    # Frames far enough apart to be distinct shots had their faces counted (frames of a burst
    # that are copies of one shot to the keeper are not looked at either).
    counted = [faces(rel) for rel in burst_grouped if faces(rel) is not None]
    assert counted and all(isinstance(n, int) and n >= 0 for n in counted)
    assert all(rig.pid(rig.lib / rel) in grouped for rel in reenc)
    assert all(faces(rel) is None for rel in reenc)  # copies of one shot: never looked at


def test_a_session_token_never_reads_as_a_command_line_option() -> None:
    """People type ``dupligone groups --session TOKEN``; a token starting with "-" (1 in 64 of
    URL-safe tokens) made argparse refuse it. 4,000 draws: all would pass by chance with
    probability (63/64)^4000 ≈ 4e-28."""
    tokens = {sessions.new_token() for _ in range(4000)}
    assert len(tokens) == 4000
    assert not any(t.startswith("-") for t in tokens)
    assert all(len(t) == 24 for t in tokens)


def test_an_editors_export_that_kept_the_cameras_data_is_not_taken_for_the_cameras_file(tmp_path: Path) -> None:
    """A Lightroom export keeps the camera's make, model and file name and is sharpened: to the
    keeper it looked like a second camera file, sharper, and the camera's JPEG at quality 72 was
    dropped as its "blurrier copy". The editor's mark (EXIF Software) is read at analysis, kept
    in the index and read back for the keeper."""
    from PIL import Image, ImageFilter

    from tests import synth

    rig = Rig(tmp_path)
    im = synth.scene(23, (1024, 768))
    camera = {"make": "FUJIFILM", "model": "X-T3", "datetime": "2019:04:12 09:10:11"}
    orig = synth.save(im, rig.lib / "DCIM" / "100MEDIA" / "DSCF1098.JPG", 72, camera=camera)
    ex = synth.exif(camera=camera)
    ex[0x0131], ex[0x0132] = "Adobe Photoshop Lightroom Classic 12.0 (Windows)", "2020:05:17 21:03:44"
    sharpened = Image.open(orig).convert("RGB").filter(ImageFilter.UnsharpMask(1.5, 120, 2))
    export = synth.save(sharpened, rig.lib / "Export" / "DSCF1098.jpg", 95, exif_block=ex)
    rig.ingest.scan_folder(rig.folder, stable_s=0)
    sessions.finish_first_scan(rig.index, rig.folder.id, time.time())
    rig.work()
    assert rig.index.scalar("SELECT edited_by FROM photos WHERE path = ?", (str(export),)).startswith("Adobe Photoshop")
    assert rig.index.scalar("SELECT edited_by FROM photos WHERE path = ?", (str(orig),)) is None
    rig.cluster()
    rec = dict(rig.index.conn.execute(
        "SELECT p.path, m.recommended FROM group_members m JOIN photos p ON p.id = m.photo_id").fetchall())
    assert rec == {str(orig): "keep", str(export): "delete"}, rec
