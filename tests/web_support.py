"""Helpers for the review page's tests: a config with a password, a real index built by the
daemon's own ingest and clustering services, and a real HTTP server (uvicorn) on it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx

from dupligoned.adapters.config import load_config
from dupligoned.adapters.index import open_index
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.services import cluster, sessions
from dupligoned.services.ingest import Ingest, analyse_for_index
from dupligoned.web.security import hash_password
from tests import corpus

REPO = Path(__file__).resolve().parents[1]
PHOTOS = corpus.PHOTOS  # drawn by tests/synth.py (see tests/corpus.py), not ../shared
PASSWORD = "correct horse battery staple"

# Two groups the engine finds reliably: a photo with two smaller copies, and two identical files.
RESIZED = corpus.RESIZED
IDENTICAL = corpus.IDENTICAL
WITH_GPS = corpus.WITH_GPS
SINGLE = corpus.SINGLE
SMALL = RESIZED[1]  # 96 px, about 2 kB


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_config(tmp: Path, port: int, *, password: str | None = PASSWORD, **web: Any) -> Path:
    lib = tmp / "lib"
    lib.mkdir(exist_ok=True)
    lines = [f'state_dir = "{tmp / "state"}"', "[[libraries]]", f'path = "{lib}"', 'mode = "native"',
             "[watch]", "stable_s = 0.3", "rescan_every_min = 0.0",
             "[sessions]", "quiet_s = 30.0", "recluster_every_s = 1.0",
             "[queue]", "workers = 2", "retry_delay_s = 0.2",
             "[web]", f"port = {port}"]
    if password:
        lines.append(f'password_hash = "{hash_password(password)}"')
    lines += [f"{k} = {json.dumps(v)}" for k, v in web.items()]
    cfg = tmp / "dupligone.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def copy(rel: str, dest_dir: Path, name: str | None = None) -> Path:
    dest = dest_dir / (name or Path(rel).name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(corpus.build() / "photos" / rel, dest)
    return dest


def build_index(cfg_path: Path) -> None:
    """Ingest the library with the daemon's services (analysis inline, no queue) and cluster it."""
    cfg = load_config(cfg_path)
    idx = open_index(cfg.index_path)
    try:
        os.makedirs(cfg.inbox_path, exist_ok=True)
        holder: dict[str, Ingest] = {}

        def enqueue(job: Any) -> None:
            holder["ingest"].apply_result(analyse_for_index(job))

        ing = Ingest(idx, ThumbStore(cfg.thumbs_path), enqueue, max_pixels=cfg.analysis.max_pixels,
                     work_px=cfg.analysis.work_px, thumb_px=cfg.analysis.thumb_px, inbox=str(cfg.inbox_path),
                     excluded=[str(cfg.thumbs_path)])
        holder["ingest"] = ing
        ing.register_folders([(lib.path, lib.protected, lib.mode) for lib in cfg.libraries]
                             + [(str(cfg.inbox_path), False, "native")])
        for f in ing.folders:
            ing.scan_folder(f, stable_s=0)
            sessions.finish_first_scan(idx, f.id, 0)
        settings = cluster.settings_from(cfg.cluster, cfg.keeper, cfg.rules)
        lib = cluster.Library.load(idx)
        for sid in sessions.ready_to_cluster(idx):
            cluster.cluster_session(idx, sid, lib, settings)
    finally:
        idx.close()


class Api:
    """An HTTP client that behaves like the page: cookies, and the CSRF token as a header."""

    def __init__(self, base: str) -> None:
        self.c = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
        self.c.get("/healthz")

    @property
    def csrf(self) -> str:
        return str(self.c.cookies.get("dupligone_csrf"))

    def login(self, password: str = PASSWORD) -> httpx.Response:
        return self.post("/api/login", json={"password": password})

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.c.get(url, **kw)

    def post(self, url: str, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if csrf:
            headers["x-csrftoken"] = self.csrf
        return self.c.post(url, headers=headers, **kw)

    def close(self) -> None:
        self.c.close()
