"""The review page in a real browser (Debian chromium driven by Playwright) on the real daemon:
log in, upload, wait for the groups, step with mouse and keys, toggle, "not a duplicate"
surviving a re-cluster, dry run (nothing moves), confirm (files in trash), restore (same bytes),
and screenshots at phone and desktop widths (kept in $DUPLIGONE_SHOTS or tmp_path)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import Daemon, free_port, wait_for
from tests.web_support import IDENTICAL, PASSWORD, PHOTOS, REPO, RESIZED, SINGLE, copy, sha256, write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium (apt-get install chromium)")


def rows(cfg: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(str(cfg.parent / "state" / "index.db"), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def files_under(*folders: Path) -> dict[str, str]:
    return {str(p): sha256(p) for f in folders for p in f.rglob("*") if p.is_file() and ".dupligone-trash" not in p.parts}


@pytest.fixture()
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Path, int]]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the daemon runs this checkout
    port = free_port()
    cfg = write_config(tmp_path, port, password=None)
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config", str(cfg)],
                       input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    copy(RESIZED[0], tmp_path / "lib")  # the original; its two smaller copies are uploaded
    copy(SINGLE, tmp_path / "lib")
    with Daemon(cfg) as d:
        wait_for(lambda: f"review page on http://127.0.0.1:{port}/" in d.log(), 30, "the review page")
        yield d, cfg, port


@pytest.fixture()
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("DUPLIGONE_SHOTS", str(tmp_path / "shots")))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_review_in_a_browser(daemon: tuple[Daemon, Path, int], browser: Any, tmp_path: Path) -> None:
    d, cfg, port = daemon
    base = f"http://127.0.0.1:{port}"
    lib = tmp_path / "lib"
    inbox = lib / "DupliGone uploads"  # uploads go into the library, never the state folder
    shots = shots_dir(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)

    # Log in (the home page sends us to the login form first).
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("#password", "not it")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong password."
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")

    # Upload: four photos (two small copies of a library photo, two identical files) and one
    # file that is not a photo, which is refused with a message.
    page.click("text=Upload photos")
    not_photo = tmp_path / "notes.jpg"
    not_photo.write_text("not a photo")
    picks = [str(PHOTOS / r) for r in RESIZED[1:] + IDENTICAL] + [str(not_photo)]
    page.set_input_files("#files", picks)
    page.click("[data-upload-submit]")
    page.wait_for_selector(".uploads li.failed")
    assert "not a photo" in page.locator(".uploads li.failed").inner_text()
    page.wait_for_url(re.compile(r"/s/[A-Za-z0-9_-]+$"), timeout=30_000)
    token = page.url.rsplit("/", 1)[1]
    assert sorted(n.lower() for n in os.listdir(inbox / token)) == sorted(Path(p).name.lower() for p in picks[:-1])

    # The page follows the analysis and shows the overview once clustered; a card opens the stepper.
    page.wait_for_selector("[data-group-card]", timeout=60_000)
    assert page.locator("[data-group-card]").count() == 2
    page.goto(f"{base}/s/{token}?g=1")
    page.wait_for_selector("text=Group 1 of 2")
    page.screenshot(path=str(shots / "session-1280.png"), full_page=True)
    keeper = page.locator(".photo.is-keep").first
    assert "IMG_4450.JPG" in keeper.inner_text() and "Kept" in keeper.inner_text()
    assert keeper.locator("img").get_attribute("alt").startswith("Photo 1: IMG_4450.JPG")
    keeper.locator("details.raw summary").click()  # the raw figures, one click away
    for fact in ("Size", "Dimensions", "Date", "Camera", "Sharpness", "Brightness", "Contrast", "Faces", "Score", "Path"):
        assert fact in keeper.inner_text()

    # Step with the mouse, then with the keyboard.
    page.click("[data-key-next]")
    page.wait_for_selector("text=Group 2 of 2")
    assert page.locator(".photo").count() == 2
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector("text=Group 1 of 2")

    # Toggle by keyboard: pick photo 2, keep it; then back to delete with the mouse.
    second = page.locator(".photo").nth(1)
    pid = int(second.get_attribute("data-photo"))
    page.keyboard.press("2")
    page.keyboard.press("k")
    page.wait_for_selector(f"#p{pid}.is-keep")
    assert rows(cfg, "SELECT action FROM decisions WHERE photo_id = ?", (pid,))[0][0] == "keep"
    page.click(f"#p{pid} button[data-act=delete]")
    page.wait_for_selector(f"#p{pid}.is-delete")
    assert page.locator(f"#p{pid} button[data-act=delete]").get_attribute("aria-pressed") == "true"
    # The only kept photo cannot be deleted: a clear message instead.
    page.keyboard.press("1")
    page.keyboard.press("d")
    page.wait_for_selector("[role=alert]")
    assert "keeps at least one photo" in page.locator("[role=alert]").inner_text()

    # Help with "?", closed with Escape.
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="visible")  # waits for the page's key handler
    page.keyboard.press("Escape")
    page.wait_for_selector("#help", state="hidden")

    # Compare side by side with zoom to 100%.
    page.goto(f"{base}/s/{token}?g=1")
    page.keyboard.press("v")
    page.wait_for_selector("[data-zoom]")
    page.click("[data-zoom]")
    img = page.locator(".pane img").first
    page.wait_for_function("document.querySelector('.pane img').complete")
    assert img.evaluate("i => i.naturalWidth") == img.evaluate("i => i.getBoundingClientRect().width")
    page.screenshot(path=str(shots / "compare-1280.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("text=Group 1 of 2")

    # "Not a duplicate" on the third photo of group 1: out of the group, also after re-clustering.
    third = page.locator(".photo").nth(2)
    split_id = int(third.get_attribute("data-photo"))
    split_path = rows(cfg, "SELECT path FROM photos WHERE id = ?", (split_id,))[0][0]
    before = rows(cfg, "SELECT clustered_at FROM sessions WHERE token = ?", (token,))[0][0]
    third.locator("button[data-act=split]").click()
    page.wait_for_selector("#split-title")
    wait_for(lambda: (rows(cfg, "SELECT clustered_at, dirty FROM sessions WHERE token = ?", (token,))[0][0] or 0) > before
             and not rows(cfg, "SELECT dirty FROM sessions WHERE token = ?", (token,))[0][0], 30, "the re-clustering")
    assert not rows(cfg, "SELECT 1 FROM group_members WHERE photo_id = ?", (split_id,))
    page.goto(f"{base}/s/{token}?g=1")
    assert page.locator(f"#p{split_id}").count() == 0
    assert split_path in page.locator(".split").inner_text()

    # Accept all, which leads to the dry run: it lists the moves and moves nothing.
    on_disk = files_under(lib, inbox)
    page.click("[data-accept-all]")
    page.wait_for_selector("text=Dry run")
    listed = page.locator("[data-moves] code.path").all_inner_texts()
    assert len(listed) == 2 and split_path not in listed
    assert files_under(lib, inbox) == on_disk
    page.screenshot(path=str(shots / "dry-run-1280.png"), full_page=True)

    # Confirm: the files go to the trash, out of the library, and the summary says so.
    page.click("[data-confirm]")
    page.wait_for_selector("[data-summary]")
    assert "Moved 2 files" in page.locator("[data-summary]").inner_text()
    for p in listed:
        assert not os.path.exists(p)
    trashed = {r["original_path"]: r["trash_path"] for r in rows(cfg, "SELECT * FROM trash WHERE state = 'trashed'")}
    assert set(trashed) == set(listed)
    for p in listed:
        assert sha256(trashed[p]) == on_disk[p]

    # Restore one from the trash page: back at its path, byte-identical.
    page.click("text=Open the trash")
    page.wait_for_selector(".trash-list")
    victim = listed[0]
    page.click(f"button[aria-label='Restore {Path(victim).name}']")
    page.wait_for_selector("text=Restored")
    assert sha256(victim) == on_disk[victim]
    page.screenshot(path=str(shots / "trash-1280.png"), full_page=True)

    # Home: the session with its counts; and the phone width.
    page.goto(base + "/")
    assert page.locator(f"tr[data-token='{token}']").count() == 1
    page.screenshot(path=str(shots / "home-1280.png"), full_page=True)
    phone = browser.new_page(viewport={"width": 360, "height": 780}, storage_state=page.context.storage_state())
    for name, url in (("home", "/"), ("session", f"/s/{token}?g=1"), ("upload", "/upload"), ("trash", "/trash")):
        phone.goto(base + url)
        phone.wait_for_load_state("networkidle")
        overflow = phone.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 360, (name, overflow)  # nothing wider than the phone
        phone.screenshot(path=str(shots / f"{name}-360.png"), full_page=True)
    # Keyboard only: the first Tab shows the skip link, focused and visible.
    phone.keyboard.press("Tab")
    assert phone.evaluate("document.activeElement.className") == "skip"
    # No script error (the refused login and upload show up as failed loads, as they should).
    assert [e for e in errors if not re.search(r"status of (401|415)", e)] == [], errors
