"""Real photo libraries (issue 13): camera RAWs and RAW+JPEG pairs, Live Photos, sidecars of each
kind, Google Takeout JSON and JPEG XL — made by the tests (``tests/library_files.py``: DNGs
written by pidng from drawn photos and read back through libraw), run through the decoder, the
one-shot scan, the daemon with its JSON API, and a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dupligoned.adapters import companions
from dupligoned.adapters.decode import decode_photo
from dupligoned.adapters.metadata import read_metadata
from dupligoned.adapters.raw import open_raw
from dupligoned.core import hashing, originals
from dupligoned.core.keeper import KeeperParams, decide
from dupligoned.core.model import PhotoInfo
from dupligoned.core.quality import Quality
from dupligoned.errors import CorruptImage, NotAnImage, PhotoError
from tests.daemon_support import Daemon, free_port, wait_for
from tests.library_files import (
    EXPECTED_DELETE,
    PHOTO_ROLES,
    build_library,
    save_dng,
    save_jpeg,
    save_jxl,
    save_mov,
    save_xmp,
    scene,
)
from tests.web_support import PASSWORD, REPO, Api, sha256, write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _hash(path: Path) -> tuple[int, int]:
    d = decode_photo(str(path))
    return hashing.phash(d.grey32), hashing.dhash(d.grey9x8)


def _dist(a: tuple[int, int], b: tuple[int, int]) -> float:
    return hashing.distance(a[0], a[1], b[0], b[1])


# ---------------------------------------------------------------- decoding

def test_dng_is_read_through_libraw_from_its_preview_or_developed(tmp_path: Path) -> None:
    rgb = scene(1200, 800, 7)
    jpg = save_jpeg(tmp_path / "IMG_1.JPG", rgb, taken="2024:05:01 10:00:00")
    with_preview = save_dng(tmp_path / "IMG_1.DNG", rgb, taken="2024:05:01 10:00:00", preview_px=1200)
    bare = save_dng(tmp_path / "IMG_2.DNG", rgb, taken="2024:05:01 10:00:00")
    small_preview = save_dng(tmp_path / "IMG_3.DNG", rgb, preview_px=256)

    pics = {p.name: open_raw(str(p), p.read_bytes(), need_px=512, max_pixels=10**9)
            for p in (with_preview, bare, small_preview)}
    assert pics["IMG_1.DNG"].source == "preview"
    assert pics["IMG_2.DNG"].source == "demosaic"
    assert pics["IMG_3.DNG"].source == "demosaic"  # a 256-pixel preview is too small for 512
    for pic in pics.values():
        assert (pic.width, pic.height) == (1200, 800)
    # libraw really developed the mosaic: the picture is the one drawn, not grey or garbage.
    developed = pics["IMG_2.DNG"].image.convert("L").resize((300, 200))
    drawn = Image.fromarray(rgb).convert("L").resize((300, 200))
    diff = np.abs(np.asarray(developed, np.float32) - np.asarray(drawn, np.float32))
    assert float(diff.mean()) < 20, float(diff.mean())
    assert float(np.corrcoef(np.asarray(developed).ravel(), np.asarray(drawn).ravel())[0, 1]) > 0.95

    dec = decode_photo(str(bare))
    assert (dec.format, dec.lossless, dec.width, dec.height) == ("DNG", True, 1200, 800)
    assert dec.camera == "Canon EOS 5D Mark IV" and dec.taken_at == "2024:05:01 10:00:00"  # EXIF from the RAW
    h_jpg = _hash(jpg)
    for p in (with_preview, bare):
        assert _dist(_hash(p), h_jpg) <= 2.0  # a RAW and its camera JPEG are one picture


def test_broken_raws_and_jxl_are_errors_with_a_reason(tmp_path: Path) -> None:
    good = save_dng(tmp_path / "good.DNG", scene(600, 400, 1))
    cut = tmp_path / "cut.dng"
    cut.write_bytes(good.read_bytes()[:3000])
    fake = tmp_path / "notes.NEF"
    fake.write_text("shopping list\n")
    jxl = save_jxl(tmp_path / "a.jxl", scene(300, 200, 2))
    bad_jxl = tmp_path / "bad.jxl"
    bad_jxl.write_bytes(jxl.read_bytes()[:200])
    with pytest.raises(PhotoError) as e1:
        decode_photo(str(cut))
    assert "RAW" in e1.value.reason
    with pytest.raises(NotAnImage):
        decode_photo(str(fake))
    with pytest.raises(CorruptImage):
        decode_photo(str(bad_jxl))
    assert good.read_bytes()[:3000] == cut.read_bytes()  # nothing was written


def test_jpeg_xl_is_decoded_with_its_exif_orientation(tmp_path: Path) -> None:
    rgb = scene(800, 600, 3)
    upright = save_jxl(tmp_path / "a.jxl", rgb, taken="2024:05:01 10:00:00")
    turned_rgb = np.rot90(rgb, 1).copy()  # stored on its side (a quarter anticlockwise)
    turned = save_jxl(tmp_path / "b.jxl", turned_rgb, orientation=6)
    a, b = decode_photo(str(upright)), decode_photo(str(turned))
    assert (a.format, a.width, a.height, a.taken_at) == ("JXL", 800, 600, "2024:05:01 10:00:00")
    # Orientation 6 turns the stored 600×800 picture a quarter clockwise: 800×600 again, the same photo.
    assert (b.width, b.height) == (800, 600)
    assert hashing.distance(hashing.phash(a.grey32), hashing.dhash(a.grey9x8),
                            hashing.phash(b.grey32), hashing.dhash(b.grey9x8)) <= 2.0


# ---------------------------------------------------------------- pairs and the keeper (core)

def _info(path: str, fmt: str, *, taken: str | None = "2024:05:01 10:00:00", w: int = 1200,
          size: int = 2_000_000, q: int | None = None, ph: int = 0x0F0F, content: str | None = None) -> PhotoInfo:
    return PhotoInfo(path=path, size_bytes=size, width=w, height=w * 2 // 3, format=fmt, lossless=fmt == "DNG",
                     jpeg_quality=q, content_hash=content or path, phash=ph, dhash=ph,
                     quality=Quality(100.0, 120.0, 50.0, 1.0, 0), taken_at=taken, camera="Canon")


def test_raw_jpeg_pairs_need_folder_stem_and_capture_time() -> None:
    photos = [_info("/l/a/IMG_1.CR2", "CR2"), _info("/l/a/IMG_1.JPG", "JPEG", q=95),
              _info("/l/b/IMG_1.JPG", "JPEG", q=95),  # another folder: a copy, not the pair
              _info("/l/a/IMG_2.NEF", "NEF"), _info("/l/a/img_2.jpg", "JPEG", taken="2023:01:01 00:00:00"),
              _info("/l/a/IMG_3.ARW", "ARW"), _info("/l/a/IMG_3.HEIC", "HEIF", taken=None)]
    assert originals.raw_jpeg_pairs(photos) == {1: 0, 6: 5}  # another capture time: not a pair


def test_the_raw_is_the_keeper_and_pairs_are_kept_unless_keep_raw() -> None:
    group = [_info("/l/a/IMG_1.DNG", "DNG", size=20_000_000),
             # The camera's JPEG is larger than the RAW here; it still was developed from it.
             _info("/l/a/IMG_1.JPG", "JPEG", q=98, w=1300, size=30_000_000),
             _info("/l/Exports/IMG_1 copy.jpg", "JPEG", q=70, size=300_000)]
    d = decide(group)
    v = {x.path: x for x in d.verdicts}
    assert v["/l/a/IMG_1.DNG"].keep and v["/l/a/IMG_1.DNG"].reason == "the RAW original"
    assert v["/l/a/IMG_1.JPG"].keep and "RAW+JPEG pair" in v["/l/a/IMG_1.JPG"].reason
    assert not v["/l/Exports/IMG_1 copy.jpg"].keep
    d2 = decide(group, params=KeeperParams(raw_jpeg_pairs="keep-raw"))
    v2 = {x.path: x for x in d2.verdicts}
    assert v2["/l/a/IMG_1.DNG"].keep
    assert not v2["/l/a/IMG_1.JPG"].keep and "keep-raw" in v2["/l/a/IMG_1.JPG"].reason
    # An identical copy of the pair's JPEG in a shorter path is the copy, never the pair member.
    twin = [_info("/l/a/b/IMG_9.DNG", "DNG"), _info("/l/a/b/IMG_9.JPG", "JPEG", q=95, content="x"),
            _info("/l/IMG_9.JPG", "JPEG", q=95, content="x")]
    v3 = {x.path: x for x in decide(twin).verdicts}
    assert v3["/l/a/b/IMG_9.JPG"].keep and not v3["/l/IMG_9.JPG"].keep
    with pytest.raises(ValueError):
        KeeperParams(raw_jpeg_pairs="keep-jpeg")


# ---------------------------------------------------------------- companions (adapter)

def test_companions_of_each_kind_and_never_orphaned(tmp_path: Path) -> None:
    d = tmp_path
    for name in ("IMG_1.HEIC", "IMG_1.MOV", "IMG_1.aae", "IMG_2.JPG", "IMG_2.JPG.xmp", "IMG_2.JPG.json",
                 "IMG_2.JPG.supplemental-metad.json", "IMG_2.JPG.dupligone.xmp", "IMG_3.CR2", "IMG_3.JPG",
                 "IMG_3.xmp", "IMG_4.jpg"):
        (d / name).write_bytes(b"x")
    os.symlink("/etc/hostname", d / "IMG_4.jpg.xmp")  # a link is never a companion
    c1 = companions.companions_of(str(d / "IMG_1.HEIC"))
    assert sorted(os.path.basename(p) for p in c1.all) == ["IMG_1.MOV", "IMG_1.aae"]
    c2 = companions.companions_of(str(d / "IMG_2.JPG"))
    assert sorted(os.path.basename(p) for p in c2.own) == ["IMG_2.JPG.dupligone.xmp", "IMG_2.JPG.json",
                                                            "IMG_2.JPG.supplemental-metad.json", "IMG_2.JPG.xmp"]
    assert companions.companions_of(str(d / "IMG_4.jpg")).all == ()
    # IMG_3.xmp belongs to the RAW and the JPEG: it stays while either stays.
    batch = companions.companions_for_batch([str(d / "IMG_3.JPG")])
    assert batch[str(d / "IMG_3.JPG")] == ()
    both = companions.companions_for_batch([str(d / "IMG_3.JPG"), str(d / "IMG_3.CR2")])
    assert sorted(both.values()) == [(), (str(d / "IMG_3.xmp"),)]
    assert not companions.is_companion_name("IMG_1.HEIC") and companions.is_companion_name("IMG_1.MOV")


# ---------------------------------------------------------------- the one-shot scan

def _scan(*args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "scan", *args, "--json", "--reasons", "-q"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def test_scan_of_a_real_library_and_the_keep_raw_rule(tmp_path: Path) -> None:
    f = build_library(tmp_path / "lib")
    before = {p: sha256(p) for p in (tmp_path / "lib").rglob("*") if p.is_file()}
    out = _scan(str(tmp_path / "lib"), "--workers", "2")
    assert out["errors"] == [] and out["photos"] == len(PHOTO_ROLES)  # companions are not photos
    role = {str(p): k for k, p in f.items()}
    deleted = {role[p] for c in out["clusters"] for p in c["delete"]}
    assert deleted == set(EXPECTED_DELETE)
    assert not any(role[p] in ("raw1", "raw2", "jpg1", "jpg2") for c in out["clusters"] for p in c["delete"])
    by_member = {role[m]: c for c in out["clusters"] for m in c["members"]}
    assert {role[m] for m in by_member["raw1"]["members"]} == {"raw1", "jpg1", "msg1"}
    assert {role[m] for m in by_member["raw2"]["members"]} == {"raw2", "jpg2"}
    assert by_member["raw1"]["reasons"][str(f["raw1"])] == "the RAW original"
    assert "RAW+JPEG pair" in by_member["raw1"]["reasons"][str(f["jpg1"])]
    # Every member's companions, beside its reasons.
    comps = {role[m]: sorted(role[x] for x in v) for c in out["clusters"] for m, v in c["companions"].items()}
    assert comps == {"raw1": [], "jpg1": [], "msg1": [], "raw2": ["xmp2"], "jpg2": ["xmp2"],
                     "heic3": ["aae3", "mov3"], "take3": ["json3", "supp3"], "jxl4": [], "small4": ["xmp4"],
                     "heic5": ["mov5"], "dup5": ["dupmov5"]}
    assert {p: sha256(p) for p in (tmp_path / "lib").rglob("*") if p.is_file()} == before  # changes nothing

    # The person's rule frees the pairs' JPEGs; the RAWs stay.
    from dupligoned.services.scan import scan

    res = scan([str(tmp_path / "lib")], workers=1, keeper_params=KeeperParams(raw_jpeg_pairs="keep-raw"))
    deleted = {p for g in res.groups for p in g.delete}
    assert str(f["jpg1"]) in deleted and str(f["jpg2"]) in deleted
    assert str(f["raw1"]) not in deleted and str(f["raw2"]) not in deleted


# ---------------------------------------------------------------- the daemon, its API and the browser

@pytest.fixture()
def served_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Path, int, dict[str, Path]]]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    port = free_port()
    cfg = write_config(tmp_path, port)
    f = build_library(tmp_path / "lib")
    with Daemon(cfg) as d:
        wait_for(lambda: f"review page on http://127.0.0.1:{port}/" in d.log(), 30, "the review page")
        yield d, cfg, port, f


def _session(api: Api) -> dict[str, Any]:
    """The library's first-scan session once it is clustered with its five groups."""
    def ready() -> dict[str, Any] | None:
        for s in api.get("/api/sessions").json():
            if s["state"] == "clustered" and s["groups"] >= 5:
                res: dict[str, Any] = api.get(f"/api/sessions/{s['token']}/result").json()
                return res
        return None
    out: dict[str, Any] = wait_for(ready, 180, "the library to be analysed and grouped", every=1.0)
    return out


def test_daemon_moves_and_restores_companions_with_their_photo(served_library: Any, tmp_path: Path) -> None:
    d, cfg, port, f = served_library
    lib = tmp_path / "lib"
    before = {str(p): sha256(p) for p in lib.rglob("*") if p.is_file()}
    api = Api(f"http://127.0.0.1:{port}")
    assert api.login().status_code == 200
    res = _session(api)
    token = res["session"]["token"]
    role = {str(p): k for k, p in f.items()}
    verdict = {role[p["path"]]: p["verdict"] for g in res["groups"] for p in g["photos"]}
    assert {k for k, v in verdict.items() if v == "delete"} == set(EXPECTED_DELETE)
    # The pair is one shot with two files on the page's data too.
    pair = next(g for g in res["groups"] if any(role[p["path"]] == "raw1" for p in g["photos"]))
    assert [[role[p["path"]] for p in s] for s in pair["shots"]] == [["raw1", "jpg1"], ["msg1"]]

    assert api.post(f"/api/sessions/{token}/accept-all").status_code == 200
    dry = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}).json()
    listed = {role[m["path"]]: sorted(role[c] for c in m["companions"]) for m in dry["moves"]}
    assert listed == {k: sorted(v) for k, v in EXPECTED_DELETE.items()}  # the dry run lists them
    assert {str(p): sha256(p) for p in lib.rglob("*") if p.is_file()} == before  # and moves nothing

    done = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}).json()
    assert done["failed"] is None
    gone = {k for k in EXPECTED_DELETE} | {c for v in EXPECTED_DELETE.values() for c in v}
    for k in gone:
        assert not f[k].exists(), k
    for k in set(f) - gone:
        assert sha256(f[k]) == before[str(f[k])], k  # nothing else touched, no companion orphaned
    # In the trash, beside their photo, byte-identical.
    entries = api.get("/api/trash").json()
    assert len(entries) == len(EXPECTED_DELETE)
    for e in entries:
        k = role[e["original_path"]]
        folder = Path(e["trash_path"]).parent
        assert sorted(e["companions"]) == sorted(f[c].name for c in EXPECTED_DELETE[k])
        for c in EXPECTED_DELETE[k]:
            assert sha256(folder / f[c].name) == before[str(f[c])]
    # What only the deleted copy's darktable sidecar held is now in the keeper's XMP sidecar.
    kept = read_metadata(str(f["jxl4"]))
    assert {"family", "grandma"} <= set(kept.keywords) and kept.rating == 5
    # Restore: every photo and every companion back, byte for byte.
    for e in entries:
        r = api.post(f"/api/trash/{e['id']}/restore")
        assert r.status_code == 200, r.text
    after = {str(p): sha256(p) for p in lib.rglob("*") if p.is_file() and ".dupligone-trash" not in p.parts}
    for path, digest in before.items():
        assert after.get(path) == digest, path
    api.close()


def test_browser_shows_a_raw_jpeg_pair_as_one_shot(served_library: Any, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian chromium (apt-get install chromium)")
    d, cfg, port, f = served_library
    base = f"http://127.0.0.1:{port}"
    api = Api(base)
    api.login()
    res = _session(api)
    token = res["session"]["token"]
    n = 1 + next(i for i, g in enumerate(res["groups"]) if any(p["path"] == str(f["raw1"]) for p in g["photos"]))
    api.close()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(base + "/login")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url(base + "/")
        page.goto(f"{base}/s/{token}?g={n}")
        shot = page.wait_for_selector("[data-shot]")
        names = [h.inner_text() for h in shot.query_selector_all("article h3")]
        assert [x.split(" ", 1)[1] for x in names] == ["IMG_0001.DNG", "IMG_0001.JPG"]
        assert "One shot, 2 files" in shot.inner_text()
        assert len(shot.query_selector_all("article.is-keep")) == 2  # neither goes by default
        outside = page.query_selector_all(".photos > article, .photos > .copies > article")
        assert [a.query_selector("h3").inner_text().split(" ", 1)[1] for a in outside] == ["IMG_0001 (messenger).jpg"]
        out = Path(os.environ.get("DUPLIGONE_SHOTS", str(tmp_path)))
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "raw-jpeg-pair-1280.png"), full_page=True)
        # The dry run lists the Live Photo video and sidecars that would go with the copies.
        page.goto(f"{base}/s/{token}/confirm")
        page.wait_for_selector("text=Dry run")
        listed = [c.inner_text() for c in page.query_selector_all("[data-companion]")]
        assert any("IMG_0005 (1).MOV" in x for x in listed) and any("IMG_0003.JPG.json" in x for x in listed)
        b.close()


def test_companions_are_never_analysed_as_photos(tmp_path: Path) -> None:
    from dupligoned.adapters.walk import walk_photos

    lib = tmp_path / "lib"
    lib.mkdir()
    save_jpeg(lib / "IMG_1.JPG", scene(300, 200, 1))
    save_mov(lib / "IMG_1.MOV")
    save_xmp(lib / "IMG_1.JPG.xmp", keywords=("a",))
    (lib / "IMG_1.JPG.json").write_text("{}")
    (lib / "IMG_1.AAE").write_text("<plist/>")
    assert [os.path.basename(p) for p in walk_photos([str(lib)])] == ["IMG_1.JPG"]


def test_uploads_take_raws_and_jpeg_xl_by_their_bytes(tmp_path: Path) -> None:
    from dupligoned.web import uploads

    dng = save_dng(tmp_path / "IMG_1.DNG", scene(200, 100, 1)).read_bytes()[:16]
    jxl = save_jxl(tmp_path / "a.jxl", scene(200, 100, 2)).read_bytes()[:16]
    assert uploads.check("IMG_1.DNG", dng, 10, 10**6) == "TIFF"
    assert uploads.safe_name("IMG_1.DNG", "TIFF") == "IMG_1.dng"  # its name still says RAW
    assert uploads.check("a.jxl", jxl, 10, 10**6) == "JXL" and uploads.safe_name("a.jxl", "JXL") == "a.jxl"
    assert uploads.check("x.RAF", b"FUJIFILMCCD-RAW 0201", 10, 10**6) == "RAW"
    assert uploads.safe_name("x.RAF", "RAW") == "x.raf"
    with pytest.raises(uploads.UploadRefused):
        uploads.check("IMG_1.MOV", b"\x00\x00\x00\x14ftypqt  ", 10, 10**6)  # a video alone is not a photo


def test_daemon_groups_a_pair_whose_two_developments_differ(tmp_path: Path) -> None:
    """A camera JPEG can look unlike libraw's development of its RAW (a film simulation, a
    strong picture style), and arrive in another session (the RAW first, the JPEG copied in
    later): the pair is still one shot in one group, found through the index."""
    import time

    from dupligoned.adapters.config import load_config
    from dupligoned.adapters.index import open_index
    from dupligoned.services import cluster, review, sessions
    from tests.web_support import build_index

    cfg = write_config(tmp_path, free_port())
    lib = tmp_path / "lib" / "DCIM"
    lib.mkdir(parents=True)
    raw = save_dng(lib / "IMG_7.DNG", scene(720, 480, 21), taken="2024:05:02 09:00:00")
    save_jpeg(lib / "IMG_8.JPG", scene(720, 480, 23), taken="2024:05:02 09:00:00")  # another shot
    build_index(cfg)  # the first scan: the RAW alone
    styled = save_jpeg(lib / "IMG_7.JPG", scene(720, 480, 22), taken="2024:05:02 09:00:00")
    assert _dist(_hash(raw), _hash(styled)) > 10  # no hash neighbour of its RAW
    build_index(cfg)  # the JPEG joins a new session
    c = load_config(cfg)
    idx = open_index(c.index_path)
    try:
        sessions.close_quiet_sessions(idx, time.time() + 3600, 0)
        settings = cluster.settings_from(c.cluster, c.keeper)
        later = [s["token"] for s in sessions.list_sessions(idx) if s["kind"] != "first_scan"]
        assert len(later) == 1
        for sid in sessions.ready_to_cluster(idx):
            cluster.cluster_session(idx, sid, cluster.Library.load(idx), settings)
        out = review.groups_json(idx, later[0])
    finally:
        idx.close()
    assert [sorted(os.path.basename(m) for m in c["members"]) for c in out["clusters"]] == [["IMG_7.DNG", "IMG_7.JPG"]]
    assert out["clusters"][0]["delete"] == []


def test_trash_purge_and_crash_recovery_take_companions_along(tmp_path: Path) -> None:
    import time

    from dupligoned.adapters.config import load_config
    from dupligoned.adapters.index import open_index
    from dupligoned.services import trash
    from tests.library_files import save_heic
    from tests.web_support import build_index

    cfg = write_config(tmp_path, free_port())
    lib = tmp_path / "lib"
    photo = save_heic(lib / "IMG_1.HEIC", scene(480, 360, 1))
    mov = save_mov(lib / "IMG_1.MOV")
    xmp = save_xmp(lib / "IMG_1.HEIC.xmp", keywords=("x",))
    digests = {p: sha256(p) for p in (photo, mov, xmp)}
    build_index(cfg)
    c = load_config(cfg)
    idx = open_index(c.index_path)
    try:
        pid = int(idx.scalar("SELECT id FROM photos WHERE path = ?", (str(photo),)))
        root_for = trash.default_trash_root("", [str(lib)])
        (m,) = trash.move_to_trash(idx, [pid], root_for)
        assert sorted(m.companions) == sorted([str(mov), str(xmp)])
        assert not any(p.exists() for p in digests)
        recorded = trash.companions_of_entries(idx, [int(m.trash_id or 0)])[int(m.trash_id or 0)]
        assert {r["original_path"]: r["sha256"] for r in recorded} == {str(mov): digests[mov], str(xmp): digests[xmp]}
        # A crash after the photo moved but before its companions did: recovery sends them after it.
        trash.restore(idx, int(m.trash_id or 0))
        (m2,) = trash.move_to_trash(idx, [pid], root_for)
        folder = Path(str(m2.trash_path)).parent
        for comp in m2.companions:  # put them back as if the crash came first
            os.rename(folder / os.path.basename(comp), comp)
        with idx.tx() as conn:
            conn.execute("UPDATE trash SET state = 'moving' WHERE id = ?", (m2.trash_id,))
        assert trash.recover(idx) == 1
        assert not mov.exists() and not xmp.exists() and (folder / "IMG_1.MOV").exists()
        # Purged together: nothing of the photo is left in the trash.
        trash.purge(idx, 0, now=time.time() + 10)
        assert not folder.exists()
    finally:
        idx.close()
