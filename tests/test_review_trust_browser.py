"""A review a person can trust, in a real browser on the real daemon (issue 11): an upload that
duplicates a library photo leaves the library photo kept; a confirm takes nothing from groups
nobody opened; a restored photo is not offered again; an open session says what it waits for
and shows its preliminary groups; the overview lists uncertain groups first; rules changed on
the page change the next grouping. Photos are drawn by ``tests/synth.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import synth
from tests.daemon_support import Daemon, free_port, wait_for
from tests.web_support import PASSWORD, REPO, Api, sha256, write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium (apt-get install chromium)")

CAMERA = {"make": "Canon", "model": "EOS 80D", "datetime": "2021:06:01 10:00:00"}


def library(lib: Path) -> dict[str, Path]:
    """The library before the daemon starts: a small camera photo (its better copy is uploaded
    later), two identical files in two folders, a photo and its re-save, and two copies that
    differ in no clear way (an uncertain keeper)."""
    f = {
        "small": synth.save(synth.resize(synth.scene(11), 800), lib / "Camera" / "IMG_1001.jpg", camera=CAMERA),
        "ident_a": synth.photo(lib / "Camera" / "IMG_2001.jpg", 12),
        "ident_b": synth.photo(lib / "Backup" / "IMG_2001.jpg", 12),
        "orig": synth.photo(lib / "Phone" / "IMG_3001.jpg", 13, quality=95),
        "resaved": synth.save(synth.scene(13), lib / "Export" / "IMG_3001.jpg", quality=55),
        "twin_a": synth.photo(lib / "Sets" / "S5a.jpg", 14, quality=92),
        "twin_b": synth.save(synth.brightness(synth.scene(14), 1.02), lib / "Sets" / "S5b.jpg", quality=92),
    }
    synth.photo(lib / "Other" / "single.jpg", 15)
    return f


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Path, str, dict[str, Path]]]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    port = free_port()
    cfg = write_config(tmp_path, port, password=None)
    text = cfg.read_text().replace("quiet_s = 30.0", "quiet_s = 15.0")
    cfg.write_text(text)
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config", str(cfg)],
                       input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    files = library(tmp_path / "lib")
    with Daemon(cfg) as d:
        wait_for(lambda: f"review page on http://127.0.0.1:{port}/" in d.log(), 30, "the review page")
        yield d, cfg, f"http://127.0.0.1:{port}", files


def verdicts(api: Api, token: str) -> dict[str, str]:
    res = api.get(f"/api/sessions/{token}/result").json()
    return {p["path"]: p["verdict"] for g in res["groups"] for p in g["photos"]}


def settled(api: Api, token: str) -> bool:
    return api.get(f"/api/sessions/{token}").json()["state"] in ("clustered", "reviewed")


def test_a_review_a_person_can_trust(served: tuple[Daemon, Path, str, dict[str, Path]], tmp_path: Path) -> None:
    d, cfg, base, f = served
    lib = tmp_path / "lib"
    shots = Path(os.environ.get("DUPLIGONE_SHOTS", str(tmp_path / "shots")))
    shots.mkdir(parents=True, exist_ok=True)
    api = Api(base)
    api.login()
    (first,) = [s["token"] for s in api.get("/api/sessions").json() if s["kind"] == "first_scan"]
    wait_for(lambda: settled(api, first), 60, "the first scan's groups")
    on_disk = {str(p): sha256(p) for p in lib.rglob("*.jpg")}

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                      "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(base + "/login")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url(base + "/")

        # --- The overview of the first scan: every group, the uncertain one first and flagged.
        page.goto(f"{base}/s/{first}")
        cards = page.locator("[data-group-card]")
        assert cards.count() == 3
        flags = [cards.nth(i).locator("[data-uncertain]").count() for i in range(3)]
        assert flags == [1, 0, 0], flags  # uncertain first
        assert cards.nth(0).locator("[data-uncertain]").get_attribute("title")
        page.select_option("select[name=order]", "position")
        page.click("[data-filters] button")
        positions = [int(cards.nth(i).get_attribute("data-position") or 0) for i in range(3)]
        assert positions == sorted(positions)
        page.select_option("select[name=reason]", "identical copy")
        page.click("[data-filters] button")
        assert cards.count() == 1
        page.screenshot(path=str(shots / "trust-overview-1280.png"), full_page=True)

        # --- Confirm without reviewing: the groups nobody opened stay; no button has the focus.
        page.goto(f"{base}/s/{first}/confirm")
        page.wait_for_selector("[data-unreviewed]")
        assert page.locator("[data-moves] li").count() == 0
        assert page.locator(".unrev-group").count() == 3
        assert page.evaluate("document.activeElement.tagName") == "BODY"
        assert page.locator("[data-confirm]").is_disabled()
        page.keyboard.press("Enter")
        page.screenshot(path=str(shots / "trust-dry-run-unreviewed-1280.png"), full_page=True)
        r = api.post(f"/api/sessions/{first}/confirm", json={"dry_run": False})
        assert r.status_code == 200 and r.json()["files"] == 0, r.text
        assert {str(p): sha256(p) for p in lib.rglob("*.jpg")} == on_disk  # nothing moved
        # Open the re-save's group: now it, and only it, is confirmed.
        res = api.get(f"/api/sessions/{first}/result").json()
        g_resave = 1 + next(i for i, g in enumerate(res["groups"]) if str(f["resaved"]) in {p["path"] for p in g["photos"]})
        page.goto(f"{base}/s/{first}?g={g_resave}")
        page.click("[data-key-confirm]")
        page.wait_for_selector("[data-moves]")
        assert page.locator("[data-moves] code.path").all_inner_texts() == [str(f["resaved"])]
        page.click("[data-confirm]")
        page.wait_for_selector("[data-summary]")
        assert "Moved 1 file" in page.locator("[data-summary]").inner_text()
        assert not f["resaved"].exists() and f["twin_b"].exists() and f["twin_a"].exists()
        assert f["ident_a"].exists() and f["ident_b"].exists()

        # --- Restore means keep: restored, kept in its group, never offered again.
        page.goto(base + "/trash")
        page.click("[data-restore-all]")
        page.wait_for_selector("text=Restored")
        assert sha256(f["resaved"]) == on_disk[str(f["resaved"])]
        wait_for(lambda: settled(api, first), 60, "the first scan grouped again")
        assert verdicts(api, first).get(str(f["resaved"]), "keep") == "keep"
        assert str(f["resaved"]) not in {m["path"] for m in api.post(
            f"/api/sessions/{first}/confirm", json={"dry_run": True, "include_unreviewed": True}).json()["moves"]}

        # --- A new copy of that photo: an open session says what it waits for, shows its
        # preliminary groups, and the restored photo is still not offered against it.
        newcopy = lib / "New" / "IMG_3001 (2).jpg"
        newcopy.parent.mkdir()
        shutil.copy2(f["orig"], newcopy)
        burst = wait_for(lambda: next((s["token"] for s in api.get("/api/sessions").json() if s["kind"] == "burst"), None),
                         30, "the new photo's session")
        page.goto(f"{base}/s/{burst}")
        wait_text = page.locator("[data-poll-session] [data-field=state-text]").inner_text()
        assert "grouping 15 s after the last new photo" in wait_text, wait_text
        page.wait_for_selector("text=The groups below are preliminary", timeout=14_000)
        assert api.get(f"/api/sessions/{burst}").json()["state"] == "open"
        page.screenshot(path=str(shots / "trust-open-session-1280.png"), full_page=True)
        wait_for(lambda: settled(api, burst), 60, "the new photo's session grouped")
        assert "closed: no new photo for 15 s" in d.log()
        v = verdicts(api, burst)
        assert v[str(newcopy)] == "delete" and v[str(f["orig"])] == "keep"
        assert v.get(str(f["resaved"]), "keep") == "keep"  # restored: never offered again

        # --- An upload that duplicates a library photo leaves the library photo kept, even
        # when the upload is larger (it is flagged uncertain and says so).
        page.goto(base + "/upload")
        assert "DupliGone uploads" in page.locator("[data-upload-dir]").inner_text()
        better = synth.photo(tmp_path / "IMG_1001.png", 11)
        page.set_input_files("#files", [str(better)])
        page.click("[data-upload-submit]")
        page.wait_for_url(lambda u: "/s/" in u, timeout=30_000)
        up = page.url.rstrip("/").rsplit("/", 1)[1]
        assert (lib / "DupliGone uploads" / up / "IMG_1001.png").is_file()
        assert not (tmp_path / "state" / "inbox").exists()  # never the hidden state folder
        wait_for(lambda: settled(api, up), 60, "the upload grouped")
        page.goto(f"{base}/s/{up}")
        page.wait_for_selector("[data-group-card] [data-uncertain]")
        page.goto(f"{base}/s/{up}?g=1")
        keeper = page.locator(".photo.is-keep")
        assert keeper.count() == 1 and "IMG_1001.jpg" in keeper.inner_text()
        gone = page.locator(".photo.is-delete")
        assert "IMG_1001.png" in gone.inner_text() and "already in your library" in gone.inner_text()
        page.screenshot(path=str(shots / "trust-upload-group-1280.png"), full_page=True)

        # --- Rules from the page change the next grouping: keep photos from Camera.
        def keeper_of_identical() -> str:
            res = api.get(f"/api/sessions/{first}/result").json()
            g = next(g for g in res["groups"] if str(f["ident_a"]) in {p["path"] for p in g["photos"]})
            (k,) = [p["path"] for p in g["photos"] if p["verdict"] == "keep"]
            return str(k)

        assert keeper_of_identical() == str(f["ident_b"])  # Backup/ wins the tie by default
        page.goto(base + "/rules")
        page.fill("#keep_from", str(lib / "Camera"))
        page.click("[data-save-rules]")
        page.wait_for_selector("[data-saved]")
        wait_for(lambda: settled(api, first) and keeper_of_identical() == str(f["ident_a"]), 60,
                 "the first scan grouped again with the rule")
        res = api.get(f"/api/sessions/{first}/result").json()
        why = {p["path"]: p["reason"] for g in res["groups"] for p in g["photos"]}
        assert "your rule: keep photos from Camera" in why[str(f["ident_b"])]

        # The uncertain group, opened from the overview, says why it is uncertain.
        page.goto(f"{base}/s/{first}")
        assert page.locator("[data-group-card]").first.locator("[data-uncertain]").count() == 1
        page.locator("[data-group-card]").first.locator("a.card-link").click()
        page.wait_for_selector("[data-uncertain-note]")
        note = page.locator("[data-uncertain-note]").inner_text()
        # The first scan now also holds the upload's group (the library photo is one of its own).
        assert "differ in no clear way" in note or "the upload looks better" in note, note
        browser.close()
    api.close()
