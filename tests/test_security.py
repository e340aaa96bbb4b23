"""Each attack of issue 15 against the real review page (uvicorn on a real index built by the
daemon's services) or the real daemon, failing if it works again: DNS rebinding, links,
bodies before login, idle connections, password guessing, decompression bombs, bad ids and
headers on errors. ``bench/attacks.py`` runs the same attacks against a live daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from dupligoned.adapters.config import load_config
from dupligoned.web.server import WebServer
from tests.web_support import PASSWORD, Api, build_index, write_config

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def draw_photo(path: Path, seed: int, size: tuple[int, int] = (640, 480)) -> Path:
    """A textured scene (noise, gradients, blocks) that analyses like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.005, 0.03, 2)
        img[..., c] = 110 + 60 * np.sin(x * fx + rng.uniform(0, 6)) * np.cos(y * fy + rng.uniform(0, 6))
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        img[y0:y0 + int(rng.integers(20, 80)), x0:x0 + int(rng.integers(20, 80))] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


class Server:
    """A review page on its own index: a library with one pair of identical photos."""

    def __init__(self, tmp: Path, *, password: str | None = PASSWORD, **web: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cfg_path = write_config(tmp, self.port, password=password, **web)
        lib = tmp / "lib"
        a = draw_photo(lib / "a" / "IMG_1.jpg", 1)
        (lib / "b").mkdir(exist_ok=True)
        (lib / "b" / "IMG_1 copy.jpg").write_bytes(a.read_bytes())
        draw_photo(lib / "other.jpg", 2)
        build_index(self.cfg_path)
        self.cfg = load_config(self.cfg_path)
        self.server = WebServer(self.cfg)
        assert self.server.start(), self.server.error
        self.base = f"http://127.0.0.1:{self.port}"
        self.lib = lib

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.lib)) for p in self.lib.rglob("*") if p.is_file())

    def token(self) -> str:
        with httpx.Client(base_url=self.base) as c:
            c.get("/healthz")
            if self.cfg.web.password_hash:
                c.post("/api/login", json={"password": PASSWORD},
                       headers={"x-csrftoken": str(c.cookies.get("dupligone_csrf"))})
            sessions = c.get("/api/sessions").json()
        return str(next(s["token"] for s in sessions if s.get("groups")))

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def open_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Loopback mode: no password, with one extra name allowed."""
    s = Server(tmp_path_factory.mktemp("open"), password=None, allowed_hosts=["photos.home.arpa"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def locked_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """LAN mode: a password, small uploads."""
    s = Server(tmp_path_factory.mktemp("locked"), max_upload_mb=1.0)
    yield s
    s.stop()


def raw_request(port: int, head: str, body: bytes = b"", *, timeout: float = 5.0) -> tuple[int, str, float]:
    """Send ``head`` (and ``body``) on a fresh socket; the status, the response and the seconds
    until the first byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = s.recv(65536)
        took = time.monotonic() - t0
        s.settimeout(0.5)
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    text = data.decode("latin-1")
    return int(text.split(" ", 2)[1]), text, took


# ---------------------------------------------------------------- 1. DNS rebinding


def test_rebinding_cannot_reach_the_page_in_loopback_mode(open_page: Server) -> None:
    token = open_page.token()
    before = open_page.files()
    evil = {"host": f"rebind.evil:{open_page.port}"}
    with httpx.Client(base_url=open_page.base, headers=evil) as c:
        # The attack: read the status, get a CSRF cookie, accept all, confirm.
        assert c.get("/healthz").status_code == 400
        assert c.get("/api/status").status_code == 400
        assert "dupligone_csrf" not in c.cookies, "a rebound page must not get a CSRF cookie"
        r = c.post(f"/api/sessions/{token}/accept-all", headers={"x-csrftoken": "x"})
        assert r.status_code == 400
        r = c.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}, headers={"x-csrftoken": "x"})
        assert r.status_code == 400
    assert open_page.files() == before
    # Names this server answers to: addresses, localhost, and [web] allowed_hosts.
    for host in (f"127.0.0.1:{open_page.port}", f"localhost:{open_page.port}", "photos.home.arpa",
                 f"[::1]:{open_page.port}", "192.168.1.20:8765"):
        with httpx.Client(base_url=open_page.base, headers={"host": host}) as c:
            assert c.get("/api/status").status_code == 200, host


def test_changes_from_another_site_are_refused_even_with_a_token(open_page: Server) -> None:
    token = open_page.token()
    before = open_page.files()
    api = Api(open_page.base)  # holds a valid CSRF cookie and token, like a page that stole them
    try:
        for hdr in ({"origin": "http://rebind.evil:8765"}, {"origin": "null"},
                    {"referer": "http://rebind.evil/attack.html"}):
            r = api.post(f"/api/sessions/{token}/accept-all", headers=hdr)
            assert r.status_code == 403, (hdr, r.text)
            assert "another site" in r.json()["detail"]
        r = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False},
                     headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        # The page's own requests (same origin) go through.
        r = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": True},
                     headers={"origin": open_page.base})
        assert r.status_code == 200, r.text
    finally:
        api.close()
    assert open_page.files() == before


def test_csrf_token_is_bound_to_the_login(locked_page: Server) -> None:
    token = locked_page.token()
    victim = Api(locked_page.base)
    other = Api(locked_page.base)  # an attacker's own, valid CSRF pair
    try:
        assert victim.login().status_code == 200
        assert victim.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}).status_code == 200
        # Plant the attacker's CSRF cookie and token beside the victim's login cookie.
        planted = other.csrf
        for c in list(victim.c.cookies.jar):
            if c.name == "dupligone_csrf":
                victim.c.cookies.jar.clear(c.domain, c.path, c.name)
        victim.c.cookies.set("dupligone_csrf", planted)
        r = victim.post(f"/api/sessions/{token}/confirm", json={"dry_run": True})
        assert r.status_code == 403, r.text
    finally:
        victim.close()
        other.close()


# ---------------------------------------------------------------- 3. bodies before login


def test_uploads_without_login_are_refused_from_their_headers(locked_page: Server) -> None:
    size = 300_000_000
    for path in ("/upload", "/api/upload"):
        head = (f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{locked_page.port}\n"
                "Content-Type: multipart/form-data; boundary=XX\n"
                f"Content-Length: {size}\n\n")
        status, text, took = raw_request(locked_page.port, head)  # not one byte of the body sent
        assert status in (302, 401), text[:300]
        assert took < 2.0


def test_parallel_uploads_are_limited_before_a_byte_is_stored(locked_page: Server) -> None:
    api = Api(locked_page.base)
    assert api.login().status_code == 200
    cookie = "; ".join(f"{k}={v}" for k, v in api.c.cookies.items())
    head = (f"POST /api/upload HTTP/1.1\nHost: 127.0.0.1:{locked_page.port}\nCookie: {cookie}\n"
            f"x-csrftoken: {api.csrf}\nContent-Type: multipart/form-data; boundary=XX\n"
            "Content-Length: 900000\n\n")
    slow = []
    try:
        for _ in range(4):  # four uploads that send their body slowly
            s = socket.create_connection(("127.0.0.1", locked_page.port), timeout=5)
            s.sendall(head.replace("\n", "\r\n").encode() + b"--XX\r\n")
            slow.append(s)
        time.sleep(0.5)
        status, text, took = raw_request(locked_page.port, head)
        assert status == 429, text[:300]
        assert "retry-after" in text.lower()
    finally:
        for s in slow:
            s.close()
    time.sleep(0.5)  # the server notices the closed uploads
    try:
        # Too large is refused from Content-Length alone.
        status, text, _ = raw_request(locked_page.port, head.replace("900000", "5000000"))
        assert status == 413, text[:300]
    finally:
        api.close()


# ---------------------------------------------------------------- 5. password guessing


class WebProcess:
    """``dupligone web`` in its own process (so the clients' threads do not share its GIL)."""

    def __init__(self, cfg_path: Path, port: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        self.proc = subprocess.Popen([sys.executable, "-m", "dupligoned.cli.main", "web", "--config", str(cfg_path)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("dupligone web did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def login_burst(base: str, port: int, n: int) -> tuple[list[int], float, list[float]]:
    """``n`` wrong passwords at once (one CSRF pair shared, raw sockets: cheap clients), with
    ``/healthz`` timed all along. The statuses, the burst's seconds, the health latencies."""
    with httpx.Client(base_url=base) as c:
        c.get("/healthz")
        csrf = str(c.cookies.get("dupligone_csrf"))
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            health.append(healthz_latency(port))
            time.sleep(0.05)

    def guess(i: int) -> int:
        body = f'{{"password": "guess-{i}"}}'.encode()
        head = (f"POST /api/login HTTP/1.1\nHost: 127.0.0.1:{port}\nCookie: dupligone_csrf={csrf}\n"
                f"x-csrftoken: {csrf}\nContent-Type: application/json\nContent-Length: {len(body)}\n"
                "Connection: close\n")
        return raw_request(port, head, body, timeout=30)[0]

    t = threading.Thread(target=probe)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as ex:
        codes = list(ex.map(guess, range(n)))
    burst = time.monotonic() - t0
    time.sleep(0.2)
    stop.set()
    t.join()
    return codes, burst, health


def test_login_burst_is_throttled_and_logins_end_at_once(tmp_path: Path) -> None:
    port = free_port()
    cfg_path = write_config(tmp_path, port)
    draw_photo(tmp_path / "lib" / "a.jpg", 1)
    build_index(cfg_path)
    web = WebProcess(cfg_path, port)
    try:
        keep = Api(web.base)
        assert keep.login().status_code == 200
        stolen = dict(keep.c.cookies)
        codes, burst, health = login_burst(web.base, port, 100)
        assert codes.count(200) == 0
        assert codes.count(429) >= 90, codes
        assert burst < 5.0, f"the burst took {burst:.1f} s"
        assert max(health) < 1.0, f"/healthz took {max(health):.2f} s during the burst"
        # The right password straight after a burst is still refused: the brake holds.
        late = Api(web.base)
        r = late.login()
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        late.close()

        # Logout ends that login at once: its cookie is worth nothing afterwards.
        assert keep.get("/api/status").status_code == 200
        assert keep.post("/api/logout").status_code == 200
        with httpx.Client(base_url=web.base, cookies=stolen) as c:
            assert c.get("/api/status").status_code == 401
        keep.close()
    finally:
        web.stop()


def test_set_password_ends_every_login_at_once(tmp_path: Path) -> None:
    page = Server(tmp_path)
    try:
        api = Api(page.base)
        assert api.login().status_code == 200
        assert api.get("/api/status").status_code == 200
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config",
                            str(page.cfg_path)], input="a new passphrase\n", text=True, capture_output=True,
                           env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert api.get("/api/status").status_code == 401
        fresh = Api(page.base)
        assert fresh.login().status_code == 401  # the old password no longer opens it
        assert fresh.login("a new passphrase").status_code == 200
        assert fresh.get("/api/status").status_code == 200
        fresh.close()
        api.close()
    finally:
        page.stop()


# ---------------------------------------------------------------- 7. ids and headers


def test_huge_ids_are_404_never_500(locked_page: Server) -> None:
    token = locked_page.token()
    api = Api(locked_page.base)
    try:
        assert api.login().status_code == 200
        for url in ("/thumb/9223372036854775808", "/thumb/99999999999999999999999", "/thumb/0",
                    "/preview/9223372036854775808?exp=99999999999&sig=00"):
            assert api.get(url).status_code == 404, url
        for url in ("/api/trash/99999999999999999999/restore", "/trash/99999999999999999999/restore"):
            assert api.post(url).status_code == 404, url
        assert api.post("/api/trash/restore", json={"ids": [10**23]}).status_code == 404
        r = api.post(f"/api/sessions/{token}/decisions", json={"photo_id": 10**23, "action": "keep"})
        assert r.status_code in (400, 404), r.text
        r = api.post(f"/s/{token}/decide", data={"photo_id": str(10**23), "action": "keep", "g": "1",
                                                  "_csrf_token": api.csrf})
        assert r.status_code in (302, 303, 404), r.text
    finally:
        api.close()


def test_security_headers_on_errors_too(locked_page: Server) -> None:
    with httpx.Client(base_url=locked_page.base) as c:
        for r in (c.get("/no/such/page"), c.put("/healthz"), c.get("/api/status"),
                  c.get("/healthz", headers={"host": "rebind.evil"}), c.get("/healthz")):
            assert r.status_code in (200, 400, 401, 404, 405)
            for h in SECURITY_HEADERS:
                assert h in r.headers, (r.request.url, r.status_code, h)
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_refused_upload_leaves_no_temp_file_open(locked_page: Server) -> None:
    def tmp_fds() -> set[str]:
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.endswith("(deleted)") and "/tmp" in target:
                out.add(target)
        return out

    before = tmp_fds()
    api = Api(locked_page.base)
    try:
        assert api.login().status_code == 200
        blob = os.urandom(1_500_000)  # above the 1 MB spool: Litestar writes it to a temp file
        r = api.post("/api/upload", files={"files": ("IMG_9.jpg", blob, "image/jpeg")})
        assert r.status_code in (413, 415, 422), r.text
        assert tmp_fds() <= before
    finally:
        api.close()


# ---------------------------------------------------------------- 2. links


def test_links_are_never_analysed_by_the_running_daemon(tmp_path: Path) -> None:
    from tests.daemon_support import Daemon, rows, settled, wait_for
    from tests.daemon_support import write_config as daemon_config

    lib, outside = tmp_path / "lib", tmp_path / "outside"
    real = draw_photo(lib / "a" / "IMG_1.jpg", 1)
    draw_photo(lib / "other.jpg", 2)
    secret = draw_photo(outside / "secret.jpg", 3)
    cfg = daemon_config(tmp_path, [lib])
    with Daemon(cfg):
        wait_for(lambda: settled(cfg), 90, "the first scan")
        # With the daemon watching: links to a library photo, to a photo outside, to a folder outside.
        (lib / "b").mkdir()
        os.symlink(real, lib / "b" / "link.jpg")
        os.symlink(secret, lib / "secret.jpg")
        os.symlink(outside, lib / "outdir")
        draw_photo(lib / "c" / "marker.jpg", 4)  # a real file after the links: when it is in, they were seen
        wait_for(lambda: rows(cfg, "SELECT 1 FROM photos WHERE path LIKE '%marker.jpg' AND status = 'ok'"), 60,
                 "the marker photo")
        time.sleep(1.5)
        wait_for(lambda: settled(cfg), 60, "the daemon to settle")
        paths = [r["path"] for r in rows(cfg, "SELECT path FROM photos")]
    assert not [p for p in paths if "link.jpg" in p or "secret" in p or "outdir" in p], paths
    assert str(real) in paths
    # Nothing offers the only real copy for deletion.
    (groups,) = rows(cfg, "SELECT COUNT(*) FROM groups")
    assert groups[0] == 0, "a group was formed from one real photo and a link"


def test_confirm_and_restore_refuse_a_path_through_a_link(tmp_path: Path) -> None:
    page = Server(tmp_path, password=None)
    outside = tmp_path / "outside"
    outside.mkdir()
    try:
        token = page.token()
        api = Api(page.base)
        assert api.post(f"/api/sessions/{token}/accept-all").status_code == 200
        going = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}).json()
        before = page.files()
        # The folder of the copy to delete is swapped for a link (to the same files) before confirm.
        b = page.lib / "b"
        os.rename(b, page.lib / "b-real")
        os.symlink(page.lib / "b-real", b)
        r = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False})
        assert r.status_code in (200, 409), (going, r.text)  # a failed move is reported in the result
        assert "symbolic link" in r.text and not r.json().get("moved")
        assert sorted(p.replace("b-real", "b") for p in page.files()) == before
        os.unlink(b)
        os.rename(page.lib / "b-real", b)
        r = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False})
        assert r.status_code == 200, r.text
        (entry,) = api.get("/api/trash").json()
        original = Path(entry["original_path"])
        # Its folder now links outside the library: restore must not write there.
        moved = original.parent.with_name(original.parent.name + "-moved")
        os.rename(original.parent, moved)
        os.symlink(outside, original.parent)
        r = api.post(f"/api/trash/{entry['id']}/restore")
        assert r.status_code == 409, r.text
        assert list(outside.iterdir()) == []
        assert Path(entry["trash_path"]).is_file()
        api.close()
    finally:
        page.stop()


# ---------------------------------------------------------------- 4. idle connections


def start_daemon_with_file_limit(tmp: Path, nofile: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The real daemon, its page on, started from a shell with ``ulimit -n nofile``."""
    port = free_port()
    cfg = write_config(tmp, port, password=None)
    draw_photo(tmp / "lib" / "a.jpg", 1)
    log = tmp / "daemon.log"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(["bash", "-c", f"ulimit -n {nofile} && exec {sys.executable} -m dupligoned.daemon.main "
                             f"--config '{cfg}' >'{log}' 2>&1"], env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port, log
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the daemon did not start: " + log.read_text()[-2000:])


def daemon_pid(shell: subprocess.Popen[bytes]) -> int:
    return shell.pid  # the shell execs the daemon


def healthz_latency(port: int, timeout: float = 10.0) -> float:
    """Seconds from connecting to the whole answer of ``GET /healthz`` (a raw socket: the
    client's own set-up is not counted)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    took = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return took


def open_idle(port: int, n: int, partial: bool = False) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        out.append(s)
    if partial:  # slowloris: half a request head
        time.sleep(0.2)
        for s in out:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                pass
    return out


def test_idle_connections_do_not_stop_the_page(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    proc, port, log = start_daemon_with_file_limit(tmp_path, 1024)
    socks: list[socket.socket] = []
    try:
        socks = open_idle(port, 600) + open_idle(port, 500, partial=True)  # 1,100 idle sockets
        time.sleep(1.0)
        fds = len(os.listdir(f"/proc/{daemon_pid(proc)}/fd"))
        assert fds < 1024
        took = [healthz_latency(port) for _ in range(5)]
        assert max(took) < 1.0, f"/healthz took {max(took):.2f} s with 1,100 idle connections"
        time.sleep(3.0)
        assert healthz_latency(port) < 1.0
        assert proc.poll() is None
        size = log.stat().st_size
        assert size < 200_000, f"the daemon wrote {size} bytes of log in a few seconds"
        assert "Too many open files" not in log.read_text()
    finally:
        for s in socks:
            s.close()
        proc.send_signal(2)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------- 6. decompression bombs

WORKER = r"""
import json, sys
from dupligoned.adapters.config import AnalysisConfig
from dupligoned.services.ingest import AnalysisJob, analyse_for_index
a = AnalysisConfig()
res = analyse_for_index(AnalysisJob(1, sys.argv[1], a.max_pixels, a.work_px, a.thumb_px))
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"ok": res.get("ok"), "error": res.get("error"), "peak_kb": hwm}))
"""


def analyse_in_a_worker(path: Path) -> dict[str, Any]:
    """The worker's analysis of one file in a fresh process: its result and peak RSS."""
    import json

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", WORKER, str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_decompression_bombs_are_refused_within_the_memory_budget(tmp_path: Path) -> None:
    import io
    import struct

    Image.MAX_IMAGE_PIXELS = None
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    # The bomb: 14000×14000 in ~200 kB of PNG.
    Image.new("L", (14000, 14000), 200).save(bombs / "bomb.png", optimize=True)
    assert (bombs / "bomb.png").stat().st_size < 300_000
    flat = Image.new("L", (9000, 9000), 120)  # 81 MP: over the budget, quicker to make
    flat.save(bombs / "bomb.tif", compression="tiff_adobe_deflate")
    flat.convert("RGB").save(bombs / "bomb.webp", lossless=True, quality=0, method=0)
    # HEIC: x265 takes minutes for a huge one; a small one whose header says 14000×14000.
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "HEIF", quality=10)
    data = bytearray(buf.getvalue())
    at = data.find(b"ispe")
    data[at + 8:at + 16] = struct.pack(">II", 14000, 14000)
    (bombs / "bomb.heic").write_bytes(bytes(data))
    for name in ("bomb.png", "bomb.tif", "bomb.webp", "bomb.heic"):
        res = analyse_in_a_worker(bombs / name)
        assert res["ok"] is False and "too many pixels" in res["error"] and "max_pixels" in res["error"], (name, res)
        assert res["peak_kb"] < 512 * 1024, (name, res["peak_kb"])
    # A large real photo still goes through, reduced early, well within the budget.
    rng = np.random.default_rng(5)
    big = Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).resize((6000, 4500))
    big.save(bombs / "big.png", compress_level=1)
    res = analyse_in_a_worker(bombs / "big.png")
    assert res["ok"] is True, res
    assert res["peak_kb"] < 400 * 1024, res["peak_kb"]


def test_a_flood_of_one_log_line_is_counted_not_written() -> None:
    import logging

    from dupligoned.daemon.lograte import RateLimit

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("dupligone.test.flood")
    logger.propagate = False
    h = Keep()
    now = [0.0]
    h.addFilter(RateLimit(burst=50, window_s=10.0, clock=lambda: now[0]))
    logger.addHandler(h)
    try:
        for i in range(20_000):
            logger.error("socket.accept() out of system resource (%d)", i)
        logger.warning("another message")
        now[0] = 10.5
        logger.error("socket.accept() out of system resource (%d)", 0)
    finally:
        logger.removeHandler(h)
    assert len(lines) == 52
    assert "another message" in lines
    assert "19950 more lines like this were not logged" in lines[-1]
