"""Screenshots of every page of the review UI at a phone (390 px) and a laptop (1280 px) width,
on the real daemon and a library of drawn photos (``tests/synth.py``), for a person to look at.

    python bench/screens.py [--out DIR]      # default /tmp/dupligone-screens

Pages: login, home, upload, an open session waiting for more photos (with its preliminary
groups), the overview, a group of 3 in the stepper, compare, compare with the difference
overlay, the dry run with groups not reviewed, the done page, the trash, the rules. Prints each
file with its page height (a phone page of one group of 3 should stay short).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import synth  # noqa: E402
from tests.daemon_support import Daemon, free_port, wait_for  # noqa: E402
from tests.web_support import PASSWORD, Api, write_config  # noqa: E402

WIDTHS = (390, 1280)
CAMERA = {"make": "Canon", "model": "EOS 80D", "datetime": "2021:06:01 10:00:00"}


def library(lib: Path) -> None:
    o = synth.photo(lib / "Camera" / "IMG_4001.jpg", 21, quality=95, camera=CAMERA)
    synth.save(synth.resize(synth.scene(21), 800), lib / "WhatsApp" / "IMG-20210601-WA0001.jpg", quality=70)
    synth.save(synth.blur(synth.scene(21), 2.0), lib / "Edited" / "IMG_4001 (edited).jpg", quality=90)
    (lib / "Backup").mkdir()
    shutil.copy2(o, lib / "Backup" / "IMG_4001.jpg")
    synth.photo(lib / "Camera" / "IMG_4002.jpg", 22, quality=95)
    synth.save(synth.scene(22), lib / "Export" / "IMG_4002.jpg", quality=55)
    synth.photo(lib / "Sets" / "S5a.jpg", 23, quality=92)
    synth.save(synth.brightness(synth.scene(23), 1.02), lib / "Sets" / "S5b.jpg", quality=92)
    for k in range(4):
        synth.photo(lib / "Other" / f"single{k}.jpg", 30 + k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/dupligone-screens")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    os.environ["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        port = free_port()
        cfg = write_config(tmp, port, password=None)
        cfg.write_text(cfg.read_text().replace("quiet_s = 30.0", "quiet_s = 25.0"))
        subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config", str(cfg)],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        lib = tmp / "lib"
        library(lib)
        base = f"http://127.0.0.1:{port}"
        with Daemon(cfg) as d:
            wait_for(lambda: "review page on" in d.log(), 30, "the review page")
            api = Api(base)
            api.login()
            first = next(s["token"] for s in api.get("/api/sessions").json() if s["kind"] == "first_scan")
            wait_for(lambda: api.get(f"/api/sessions/{first}").json()["state"] == "clustered", 90, "the groups")
            res = api.get(f"/api/sessions/{first}/result").json()
            big = 1 + max(range(len(res["groups"])), key=lambda i: len(res["groups"][i]["photos"]))
            b3 = res["groups"][big - 1]["photos"]
            shots: list[tuple[str, str]] = [
                ("home", "/"), ("upload", "/upload"), ("overview", f"/s/{first}"),
                ("group", f"/s/{first}?g={big}"),
                ("compare", f"/s/{first}/compare?g={big}&a={b3[0]['id']}&b={b3[1]['id']}"),
                ("compare-diff", f"/s/{first}/compare?g={big}&a={b3[0]['id']}&b={b3[1]['id']}&diff=1"),
                ("dry-run", f"/s/{first}/confirm"), ("rules", "/rules"),
            ]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu",
                                                   "--disable-background-networking"])
                ctx = browser.new_context()
                page = ctx.new_page()
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(base + "/login")
                for w in WIDTHS:
                    page.set_viewport_size({"width": w, "height": 900})
                    page.screenshot(path=str(out / f"login-{w}.png"), full_page=True)
                page.fill("#password", PASSWORD)
                page.press("#password", "Enter")
                page.wait_for_url(base + "/")

                def snap(name: str, url: str | None) -> None:
                    for w in WIDTHS:
                        page.set_viewport_size({"width": w, "height": 900 if w > 600 else 844})
                        if url is not None:
                            page.goto(base + url)
                        page.wait_for_load_state("networkidle")
                        path = out / f"{name}-{w}.png"
                        page.screenshot(path=str(path), full_page=True)
                        h = page.evaluate("document.documentElement.scrollHeight")
                        sw = page.evaluate("document.documentElement.scrollWidth")
                        print(f"{path.name}: {h} px high{'' if sw <= w else f', TOO WIDE ({sw} px)'}")

                for name, url in shots:
                    snap(name, url)
                # An open session: a new copy arrives; the page says what it waits for.
                (lib / "New").mkdir()
                shutil.copy2(lib / "Camera" / "IMG_4002.jpg", lib / "New" / "IMG_4002 (2).jpg")
                burst = wait_for(lambda: next((s["token"] for s in api.get("/api/sessions").json()
                                               if s["kind"] == "burst"), None), 30, "the new session")
                page.goto(f"{base}/s/{burst}")
                page.wait_for_selector("text=The groups below are preliminary", timeout=20_000)
                snap("open-session", f"/s/{burst}")
                # Confirm the opened group (the big one), then the done page and the trash.
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(f"{base}/s/{first}/confirm")
                page.click("[data-confirm]")
                page.wait_for_selector("[data-summary]")
                snap("done", None)
                snap("trash", "/trash")
                browser.close()
            api.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
