"""The review page through HTTP, on a real server (uvicorn) over a real index built by the
daemon's ingest: login, CSRF, signed previews, path tricks, upload refusals, the API contract,
decisions, dry run / confirm with an XMP sidecar, restore, and the start-up refusal."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dupligoned.adapters.config import load_config
from dupligoned.adapters.metadata import read_metadata
from dupligoned.web.security import Signer, load_secret, verify_password
from dupligoned.web.server import WebServer
from tests.web_support import (
    IDENTICAL,
    PHOTOS,
    REPO,
    RESIZED,
    SINGLE,
    SMALL,
    WITH_GPS,
    Api,
    build_index,
    copy,
    sha256,
    write_config,
)

MAX_UPLOAD_MB = 0.1  # 100 kB: the identical .webp pair (164 kB) is too large


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cfg_path = write_config(tmp, self.port, max_upload_mb=MAX_UPLOAD_MB)
        lib = tmp / "lib"
        for rel in RESIZED + IDENTICAL + [SINGLE, WITH_GPS]:
            copy(rel, lib)
        # The same photo without its EXIF (no GPS, no date): a copy that lost its metadata.
        with Image.open(PHOTOS / WITH_GPS) as im:
            im.save(lib / "stripped.jpg", quality=95)
        build_index(self.cfg_path)
        self.cfg = load_config(self.cfg_path)
        self.server = WebServer(self.cfg)
        assert self.server.start(), self.server.error
        self.base = f"http://127.0.0.1:{self.port}"

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.cfg.index_path), timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = self.db()
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def token(self) -> str:
        (r,) = self.rows("SELECT token FROM sessions WHERE kind = 'first_scan'")
        return str(r[0])

    def photo_id(self, name: str) -> int:
        (r,) = self.rows("SELECT id FROM photos WHERE path LIKE ? AND status != 'gone'", (f"%/{name}",))
        return int(r[0])

    def inbox_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.cfg.inbox_path)) for p in Path(self.cfg.inbox_path).rglob("*"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("web"))
    yield e
    e.server.stop()


@pytest.fixture()
def api(env: Env) -> Iterator[Api]:
    a = Api(env.base)
    assert a.login().status_code == 200
    yield a
    a.close()


@pytest.fixture()
def anon(env: Env) -> Iterator[Api]:
    a = Api(env.base)
    yield a
    a.close()


def test_the_index_has_the_expected_groups(env: Env, api: Api) -> None:
    res = api.get(f"/api/sessions/{env.token()}/result").json()
    names = sorted(sorted(p["name"] for p in g["photos"]) for g in res["groups"])
    assert sorted(Path(p).name for p in RESIZED) in names
    assert sorted(Path(p).name for p in IDENTICAL) in names
    assert any("stripped.jpg" in g for g in names)
    g = next(g for g in res["groups"] if any(p["name"] == "IMG_4450.JPG" for p in g["photos"]))
    keeper = g["photos"][0]
    assert keeper["name"] == "IMG_4450.JPG" and keeper["verdict"] == "keep"
    for p in g["photos"]:
        assert {"size_bytes", "width", "height", "taken_at", "camera", "path", "reason", "thumb_url", "preview_url"} <= set(p)
        assert {"sharpness", "brightness", "contrast", "noise", "faces", "score"} == set(p["quality"])


def test_healthz_needs_no_login_and_everything_else_does(env: Env, anon: Api) -> None:
    assert anon.get("/healthz").json()["ok"] is True
    for url in ("/api/sessions", f"/api/sessions/{env.token()}/result", "/api/trash"):
        assert anon.get(url).status_code == 401, url
    for url in (f"/s/{env.token()}", "/thumb/1", "/", "/trash", "/upload"):
        r = anon.get(url)
        assert r.status_code in (302, 303) and r.headers["location"].startswith("/login?next="), url
    assert anon.login("wrong password").status_code == 401


def test_no_change_without_login(env: Env, anon: Api) -> None:
    token = env.token()
    before = env.rows("SELECT * FROM decisions")
    pid = env.photo_id("IMG_0895.JPG")
    assert anon.post(f"/api/sessions/{token}/decisions", json={"photo_id": pid, "action": "keep"}).status_code == 401
    assert anon.post(f"/api/sessions/{token}/accept-all").status_code == 401
    assert anon.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}).status_code == 401
    r = anon.post("/api/upload", files={"files": ("a.jpg", (PHOTOS / SMALL).read_bytes())})
    assert r.status_code == 401
    assert [tuple(r) for r in env.rows("SELECT * FROM decisions")] == [tuple(r) for r in before]
    assert env.inbox_files() == []
    assert all(os.path.exists(p) for (p,) in env.rows("SELECT path FROM photos"))


def test_no_change_without_csrf_token(env: Env, api: Api) -> None:
    token = env.token()
    pid = env.photo_id("IMG_0895.JPG")
    before = [tuple(r) for r in env.rows("SELECT * FROM decisions")]
    r = api.post(f"/api/sessions/{token}/decisions", csrf=False, json={"photo_id": pid, "action": "keep"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = api.post(f"/api/sessions/{token}/decisions", csrf=False, headers={"x-csrftoken": "0" * 128},
                 json={"photo_id": pid, "action": "keep"})
    assert r.status_code == 403
    # The page's form without its hidden token.
    r = api.post(f"/s/{token}/decide", csrf=False, data={"photo_id": str(pid), "action": "keep", "g": "1"})
    assert r.status_code == 403
    assert [tuple(r) for r in env.rows("SELECT * FROM decisions")] == before


def test_preview_links_are_signed_and_expire(env: Env, api: Api) -> None:
    res = api.get(f"/api/sessions/{env.token()}/result").json()
    p = res["groups"][0]["photos"][0]
    anon = Api(env.base)  # the link itself is the key: no login needed
    r = anon.get(p["preview_url"])
    assert r.status_code == 200 and r.content == Path(p["path"]).read_bytes()
    signer = Signer(load_secret(env.cfg.state_dir))
    past = int(time.time()) - 5
    pid = p["id"]
    expired = f"/preview/{pid}?exp={past}&sig={signer.sign(f'preview:{pid}:{past}')}"
    assert anon.get(expired).status_code == 403
    url, query = p["preview_url"].split("?")
    exp = dict(kv.split("=") for kv in query.split("&"))["exp"]
    assert anon.get(f"{url}?exp={exp}&sig={'0' * 64}").status_code == 403
    assert anon.get(f"{url}?exp={int(exp) + 3600}&sig={dict(kv.split('=') for kv in query.split('&'))['sig']}").status_code == 403
    other = res["groups"][0]["photos"][1]["id"]
    assert anon.get(f"/preview/{other}?{query}").status_code == 403
    anon.close()


def test_path_tricks_are_refused(env: Env, api: Api) -> None:
    secret_file = env.cfg_path  # holds the password hash
    for url in ("/thumb/..%2F..%2Fdupligone.toml", "/thumb/1%2F..%2F..%2Fetc%2Fpasswd", "/static/..%2F..%2Fdupligone.toml",
                "/static/../../../dupligone.toml", "/preview/..%2Fdupligone.toml?exp=1&sig=x",
                "/s/..%2F..%2Fetc%2Fpasswd", "/api/sessions/..%2F..%2Fx/result", "/api/sessions/%2e%2e/result"):
        r = api.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)
        assert b"password_hash" not in r.content and b"root:" not in r.content
    assert api.get(f"/static/{'..%2F' * 4}{secret_file.name}").status_code == 404
    # An upload named like a path lands, renamed, in its own inbox folder.
    r = api.post("/api/upload", files={"files": ("../../../lib/evil.jpg", (PHOTOS / SMALL).read_bytes())})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["stored"][0]["name"] == "evil.jpg"
    assert not (env.tmp / "lib" / "evil.jpg").exists()
    assert (Path(env.cfg.inbox_path) / body["token"] / "evil.jpg").is_file()
    r = api.post("/api/upload?session=..%2F..%2Flib", files={"files": ("x.jpg", (PHOTOS / SMALL).read_bytes())})
    assert r.status_code == 404


def test_refused_uploads_store_nothing(env: Env, api: Api) -> None:
    before_files = env.inbox_files()
    before_sessions = env.rows("SELECT COUNT(*) FROM sessions")[0][0]
    big = (PHOTOS / IDENTICAL[0]).read_bytes()
    assert len(big) > MAX_UPLOAD_MB * 1e6
    r = api.post("/api/upload", files={"files": ("big.webp", big)})
    assert r.status_code == 413 and "too large" in r.json()["detail"] and "max_upload_mb" in r.json()["detail"]
    r = api.post("/api/upload", files={"files": ("notes.jpg", b"just some text, not a photo\n" * 10)})
    assert r.status_code == 415 and "not a photo" in r.json()["detail"]
    r = api.post("/api/upload", files={"files": ("empty.jpg", b"")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    # One bad file among good ones: the whole request is refused.
    r = api.post("/api/upload", files=[("files", ("ok.jpg", (PHOTOS / SMALL).read_bytes())),
                                       ("files", ("bad.png", b"%PDF-1.4 not an image"))])
    assert r.status_code == 415
    # The page's own form says the same.
    r = api.post("/upload", csrf=False, data={"_csrf_token": api.csrf}, files={"files": ("x.txt", b"hello")})
    assert r.status_code == 415 and b"not a photo" in r.content
    assert env.inbox_files() == before_files
    assert env.rows("SELECT COUNT(*) FROM sessions")[0][0] == before_sessions


def test_security_headers(env: Env, anon: Api) -> None:
    for url in ("/login", "/static/app.js", "/healthz", "/api/sessions"):
        h = anon.get(url).headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    page = anon.get("/login").text
    assert "<script>" not in page and "onclick" not in page and "http://" not in page.replace("http://www.w3", "")


def test_openapi_publishes_the_contract(env: Env, anon: Api) -> None:
    paths = anon.get("/api/schema/openapi.json").json()["paths"]
    for p in ("/api/login", "/api/sessions", "/api/sessions/{token}/result", "/api/sessions/{token}/confirm",
              "/api/trash/{trash_id}/restore", "/api/upload", "/healthz"):
        assert p in paths, p


def test_result_takes_the_same_queries_whatever_the_size(env: Env, api: Api) -> None:
    app = env.server.server.config.app
    conn = app.state.web.index.conn
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        assert api.get(f"/api/sessions/{env.token()}/result").status_code == 200
        n_big = len(seen)
        upload = api.post("/api/upload", files={"files": ("one.jpg", (PHOTOS / SMALL).read_bytes())}).json()["token"]
        seen.clear()
        assert api.get(f"/api/sessions/{upload}/result").status_code == 200
        n_small = len(seen)
    finally:
        conn.set_trace_callback(None)
    assert n_big == n_small <= 6, (n_big, n_small)


def test_decisions_dry_run_confirm_sidecar_and_restore(env: Env, api: Api) -> None:
    token = env.token()
    original, stripped = env.photo_id("2017-09-11 12.05.36.jpg"), env.photo_id("stripped.jpg")
    orig_path = env.rows("SELECT path FROM photos WHERE id = ?", (original,))[0][0]
    strip_path = env.rows("SELECT path FROM photos WHERE id = ?", (stripped,))[0][0]
    strip_bytes = sha256(strip_path)
    # Keep the copy without metadata, delete the original that has GPS and a date.
    assert api.post(f"/api/sessions/{token}/decisions", json={"photo_id": stripped, "action": "keep"}).status_code == 200
    assert api.post(f"/api/sessions/{token}/decisions", json={"photo_id": original, "action": "delete"}).status_code == 200
    # The last kept photo of a group cannot go.
    r = api.post(f"/api/sessions/{token}/decisions", json={"photo_id": stripped, "action": "delete"})
    assert r.status_code == 409 and "at least one" in r.json()["detail"]
    page = api.get(f"/s/{token}", params={"g": 1}).text + "".join(
        api.get(f"/s/{token}", params={"g": g}).text for g in (2, 3))
    assert "GPS position" in page and "32.67394" in page

    on_disk = {p: sha256(p) for (p,) in env.rows("SELECT path FROM photos WHERE status = 'ok'")}
    dry = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}).json()
    assert dry["dry_run"] is True and orig_path in [m["path"] for m in dry["moves"]]
    assert dry["freed_bytes"] == sum(m["size_bytes"] for m in dry["moves"])
    (sc,) = [s for s in dry["sidecars"] if s["keeper_path"] == strip_path]
    assert "GPS position" in sc["fields"] and "capture date" in sc["fields"]
    assert {p: sha256(p) for p in on_disk} == on_disk  # the dry run moved nothing
    assert not os.path.exists(strip_path + ".xmp")

    done = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}).json()
    moved = {m["path"]: m for m in done["moved"]}
    assert set(moved) == {m["path"] for m in dry["moves"]}
    for p in moved:
        assert not os.path.exists(p)
    trash_rows = {r["original_path"]: r for r in env.rows("SELECT * FROM trash WHERE state = 'trashed'")}
    for p in moved:
        assert sha256(trash_rows[p]["trash_path"]) == on_disk[p]
    assert sha256(strip_path) == strip_bytes  # the kept photo is never written to
    meta = read_metadata(strip_path)
    assert meta.gps is not None and abs(meta.gps[0] - 32.67394) < 1e-4 and meta.taken_at
    assert open(strip_path + ".xmp").read().count("<exif:GPSLatitude>") == 1

    trash_list = api.get("/api/trash").json()
    entry = next(e for e in trash_list if e["original_path"] == orig_path)
    assert entry["purge_at"] > time.time()
    r = api.post(f"/api/trash/{entry['id']}/restore")
    assert r.status_code == 200 and r.json()["restored"] == orig_path
    assert sha256(orig_path) == on_disk[orig_path]
    assert api.post(f"/api/trash/{entry['id']}/restore").status_code == 409


def test_set_password_writes_only_a_hash(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 1234, password=None)
    text = cfg.read_text()
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config", str(cfg)],
                       input="a new secret phrase\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    new = cfg.read_text()
    assert "a new secret phrase" not in new
    assert [ln for ln in new.splitlines() if not ln.startswith("password_hash")] == text.splitlines()
    h = load_config(cfg).web.password_hash
    assert h and h.startswith("scrypt$") and verify_password("a new secret phrase", h)
    assert not verify_password("a new secret phrasE", h)
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "set-password", "--config", str(cfg)],
                       input="short\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "at least 8" in r.stderr


def test_daemon_refuses_the_lan_without_a_password(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), password=None, host="0.0.0.0")
    r = subprocess.run([sys.executable, "-m", "dupligoned.daemon.main", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2
    assert "web.host" in r.stderr and "set-password" in r.stderr
    assert not (tmp_path / "state" / "index.db").exists()  # refused before any work


def test_wheel_carries_templates_and_static_files(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "bdist_wheel" in r.stderr:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp_path / "dist").glob("dupligone-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    probe = (f"import dupligoned.web.app as a; assert a.__file__.startswith({str(site)!r}), a.__file__; "
             "assert (a.TEMPLATES / 'session.html').is_file() and (a.STATIC / 'app.js').is_file(); print('ok')")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(site)}, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_confirm_never_moves_the_copies_of_a_keeper_gone_or_swapped_for_a_link(tmp_path: Path) -> None:
    """`dupligone web` serves the index with no watcher: a keeper deleted by another program, or
    swapped for a link to one of its own copies, is not seen. Its group's copies would be all
    that is left, so a confirm moves none of them and says why."""
    port = free_port()
    cfg_path = write_config(tmp_path, port)
    lib = tmp_path / "lib"
    for rel in RESIZED + IDENTICAL + [SINGLE]:
        copy(rel, lib)
    build_index(cfg_path)
    server = WebServer(load_config(cfg_path))
    assert server.start(), server.error
    api = Api(f"http://127.0.0.1:{port}")
    try:
        assert api.login().status_code == 200
        (token,) = [s["token"] for s in api.get("/api/sessions").json()]
        groups = api.get(f"/api/sessions/{token}/result").json()["groups"]
        assert len(groups) == 2
        keepers = [next(p["path"] for p in g["photos"] if p["verdict"] == "keep") for g in groups]
        copies = [p["path"] for g in groups for p in g["photos"] if p["verdict"] == "delete"]
        os.remove(keepers[0])  # deleted behind the daemon's back
        os.remove(keepers[1])
        os.symlink(next(p["path"] for p in groups[1]["photos"] if p["verdict"] == "delete"), keepers[1])
        before = {p: sha256(p) for p in copies}

        assert api.post(f"/api/sessions/{token}/accept-all").status_code == 200
        dry = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": True}).json()
        assert dry["moves"] == []
        assert sorted(s["group"] for s in dry["skipped"]) == sorted(g["position"] for g in groups)
        assert all("is no longer at" in s["why"] for s in dry["skipped"])
        done = api.post(f"/api/sessions/{token}/confirm", json={"dry_run": False}).json()
        assert done["moved"] == [] and done["failed"] is None
        assert {p: sha256(p) for p in copies} == before  # every copy still there, untouched
    finally:
        api.close()
        server.stop()
