"""Every attack of issue 15 against a live daemon; one line each: the attack, what happened, and
whether it was refused.

    PYTHONPATH=$PWD python bench/attacks.py [--nofile 1024] [--keep DIR]

Starts ``dupligoned`` itself (a password set, the page on 127.0.0.1, ``ulimit -n NOFILE`` in
the shell that starts it) on a library it draws: an identical pair of photos and a third one.
The login burst runs last (it locks this client out for minutes, as it should).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_security import draw_photo, free_port, healthz_latency, open_idle, raw_request  # noqa: E402
from tests.web_support import PASSWORD, write_config  # noqa: E402

results: list[tuple[str, bool, str]] = []


def report(name: str, refused: bool, detail: str) -> None:
    results.append((name, refused, detail))
    print(f"{'REFUSED' if refused else 'WORKS!!'}  {name:34s} {detail}", flush=True)


class Live:
    def __init__(self, tmp: Path, nofile: int) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cfg = write_config(tmp, self.port)
        self.lib = tmp / "lib"
        a = draw_photo(self.lib / "a" / "IMG_1.jpg", 1)
        (self.lib / "b").mkdir()
        shutil.copy2(a, self.lib / "b" / "IMG_1 copy.jpg")
        draw_photo(self.lib / "other.jpg", 2)
        self.log = tmp / "daemon.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(["bash", "-c", f"ulimit -n {nofile} && exec {sys.executable} -m "
                                      f"dupligoned.daemon.main --config '{self.cfg}' >'{self.log}' 2>&1"], env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise SystemExit("the daemon did not start:\n" + self.log.read_text()[-3000:])

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(str(self.tmp / "state" / "index.db"), timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def wait(self, sql: str, timeout: float = 120) -> list[sqlite3.Row]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.rows(sql)
            if got:
                return got
            time.sleep(0.5)
        raise SystemExit(f"timed out waiting for: {sql}")

    def client(self) -> httpx.Client:
        """A logged-in client (close it after use)."""
        c = httpx.Client(base_url=self.base, timeout=30)
        c.get("/healthz")
        r = c.post("/api/login", json={"password": PASSWORD}, headers={"x-csrftoken": self.csrf(c)})
        assert r.status_code == 200, r.text
        return c

    @staticmethod
    def csrf(c: httpx.Client) -> str:
        return str(c.cookies.get("dupligone_csrf"))

    def worker_peaks_mb(self) -> list[float]:
        """Peak RSS (VmHWM) of every process under the daemon: its analysis workers."""
        parent: dict[int, int] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        out = []
        for pid in parent:
            p = pid
            while p in parent and p != self.proc.pid:
                p = parent[p]
            if p != self.proc.pid or pid == self.proc.pid:
                continue
            try:
                hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                continue
            out.append(int(hwm.split()[1]) / 1024)
        return out

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="dupligone-attacks-"))
    tmp.mkdir(parents=True, exist_ok=True)
    live = Live(tmp, args.nofile)
    try:
        run(live)
    finally:
        live.stop()
    held = sum(1 for _, refused, _ in results if refused)
    print(f"{held}/{len(results)} attacks refused; daemon log {live.log.stat().st_size / 1e3:.0f} kB ({live.log})")


def run(live: Live) -> None:
    live.wait("SELECT 1 FROM groups")
    with closing(live.client()) as c:
        token = next(s["token"] for s in c.get("/api/sessions").json() if s.get("groups"))

    # 1. DNS rebinding: a page under another name, rebound to 127.0.0.1.
    with httpx.Client(base_url=live.base, headers={"host": f"rebind.evil:{live.port}"}) as evil:
        codes = [evil.get("/healthz").status_code, evil.get("/api/status").status_code,
                 evil.post(f"/api/sessions/{token}/accept-all").status_code]
    report("1 rebinding: Host rebind.evil", all(x == 400 for x in codes), f"GET /healthz, /api/status, POST accept-all: {codes}")
    with closing(live.client()) as c:
        r = c.post(f"/api/sessions/{token}/accept-all", headers={"x-csrftoken": live.csrf(c), "origin": "http://rebind.evil"})
    report("1 change from another Origin", r.status_code == 403, f"POST accept-all with a valid token: {r.status_code}")
    with closing(live.client()) as c, closing(live.client()) as other:
        for ck in list(c.cookies.jar):
            if ck.name == "dupligone_csrf":
                c.cookies.jar.clear(ck.domain, ck.path, ck.name)
        c.cookies.set("dupligone_csrf", live.csrf(other))
        r = c.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}, headers={"x-csrftoken": live.csrf(other)})
    report("1 CSRF token of another login", r.status_code == 403, f"{r.status_code}")

    # 2. Links, made while the daemon watches.
    os.symlink(live.lib / "a" / "IMG_1.jpg", live.lib / "a" / "link.jpg")
    outside = live.tmp / "outside"
    draw_photo(outside / "secret.jpg", 9)
    os.symlink(outside / "secret.jpg", live.lib / "secret.jpg")
    draw_photo(live.lib / "marker.jpg", 10)
    live.wait("SELECT 1 FROM photos WHERE path LIKE '%marker.jpg' AND status != 'queued'")
    time.sleep(2)
    linked = live.rows("SELECT path FROM photos WHERE path LIKE '%link.jpg' OR path LIKE '%secret%'")
    report("2 symlinks in a watched library", not linked, f"indexed link rows: {len(linked)}")
    with closing(live.client()) as c:
        h = {"x-csrftoken": live.csrf(c)}
        c.post(f"/api/sessions/{token}/accept-all", headers=h)
        done = c.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}, headers=h).json()
        entries = c.get("/api/trash").json()
        if entries:
            e = entries[0]
            orig = Path(e["original_path"])
            os.rename(orig.parent, orig.parent.with_name(orig.parent.name + "-moved"))
            (live.tmp / "elsewhere").mkdir(exist_ok=True)
            os.symlink(live.tmp / "elsewhere", orig.parent)
            r = c.post(f"/api/trash/{e['id']}/restore", headers=h)
            wrote = list((live.tmp / "elsewhere").iterdir())
            report("2 restore through a linked folder", r.status_code == 409 and not wrote,
                   f"{r.status_code}, files written outside: {len(wrote)}")
        else:
            report("2 restore through a linked folder", False, f"nothing was trashed: {done}")

    # 3. A 300 MB upload without a login: answered from its headers.
    head = (f"POST /api/upload HTTP/1.1\nHost: 127.0.0.1:{live.port}\nContent-Type: multipart/form-data; "
            "boundary=XX\nContent-Length: 300000000\n\n")
    status, _, took = raw_request(live.port, head)
    report("3 300 MB upload, no login", status in (302, 401), f"{status} after {took * 1000:.0f} ms, 0 bytes of body read")

    # 6. A decompression bomb dropped into the library.
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    Image.new("L", (14000, 14000), 200).save(live.lib / "bomb.png", optimize=True)
    row = live.wait("SELECT status, error FROM photos WHERE path LIKE '%bomb.png' AND status != 'queued'")[0]
    peaks = live.worker_peaks_mb()
    report("6 14000x14000 PNG bomb", row["status"] == "error" and max(peaks or [0]) <= 512,
           f"{row['status']}: {row['error']}; worker peak RSS {', '.join(f'{p:.0f}' for p in peaks)} MB")

    # 7. Ids and headers.
    with closing(live.client()) as c:
        h = {"x-csrftoken": live.csrf(c)}
        codes = [c.get("/thumb/9223372036854775808").status_code,
                 c.post("/api/trash/99999999999999999999/restore", headers=h).status_code,
                 c.post(f"/api/sessions/{token}/decisions", json={"photo_id": 10**23, "action": "keep"},
                        headers=h).status_code]
        r404, r405 = c.get("/no/such/page"), c.put("/healthz")
    report("7 ids beyond 64 bits", 500 not in codes, f"{codes}")
    missing = [h for h in ("content-security-policy", "x-content-type-options", "x-frame-options")
               for r in (r404, r405) if h not in r.headers]
    report("7 security headers on 404/405", not missing, f"{r404.status_code}/{r405.status_code} missing: {missing}")

    quiet = sorted(healthz_latency(live.port) for _ in range(7))
    print(f"         /healthz with nothing going on: median {quiet[3] * 1000:.0f} ms, max {quiet[-1] * 1000:.0f} ms",
          flush=True)
    # 4. 1,100 idle connections (half of them with half a request head) under the file limit.
    socks = open_idle(live.port, 600) + open_idle(live.port, 500, partial=True)
    try:
        time.sleep(1.0)
        took_s = sorted(healthz_latency(live.port, timeout=30) for _ in range(7))
        report("4 1,100 idle connections", took_s[-1] < 1.0,
               f"/healthz median {took_s[3] * 1000:.0f} ms, max {took_s[-1] * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()

    # 5. 100 concurrent wrong passwords, /healthz timed all along; then the right one.
    c0 = httpx.Client(base_url=live.base)
    c0.get("/healthz")
    csrf = live.csrf(c0)
    c0.close()
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            health.append(healthz_latency(live.port, timeout=30))
            time.sleep(0.05)

    def guess(i: int) -> int:
        body = json.dumps({"password": f"guess-{i}"}).encode()
        h = (f"POST /api/login HTTP/1.1\nHost: 127.0.0.1:{live.port}\nCookie: dupligone_csrf={csrf}\n"
             f"x-csrftoken: {csrf}\nContent-Type: application/json\nContent-Length: {len(body)}\nConnection: close\n")
        return raw_request(live.port, h, body, timeout=60)[0]

    t = threading.Thread(target=probe)
    t.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(100) as ex:
        codes = list(ex.map(guess, range(100)))
    burst = time.monotonic() - t0
    time.sleep(0.3)
    stop.set()
    t.join()
    with httpx.Client(base_url=live.base) as c:
        c.get("/healthz")
        right = c.post("/api/login", json={"password": PASSWORD}, headers={"x-csrftoken": live.csrf(c)})
    report("5 100 concurrent wrong logins", codes.count(200) == 0 and right.status_code == 429 and max(health) < 1.0,
           f"{codes.count(429)}x429 {codes.count(401)}x401 in {burst:.2f} s; /healthz max {max(health) * 1000:.0f} ms; "
           f"right password after: {right.status_code} (retry-after {right.headers.get('retry-after')})")


if __name__ == "__main__":
    main()
