"""Review page latency on a large index: 100,000 photos, 10,000 groups (issue 6).

Builds an index with the daemon's schema (rows written directly: the figures measured are the
web server's, not ingest's), starts the real server (uvicorn, as the daemon does) on it, and
times, over loopback, the home page, a session page, the result API and a thumbnail. Loopback
round-trip time is an upper bound of server time. Also counts the SQL statements each request
runs, to show that none runs one query per photo.

    python bench/web_latency.py [--photos 100000] [--groups 10000] [--sessions 100] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._common import require_shared  # noqa: E402
from dupligoned.adapters.config import load_config  # noqa: E402
from dupligoned.adapters.index import open_index  # noqa: E402
from dupligoned.adapters.thumbs import ThumbStore  # noqa: E402
from dupligoned.web.server import WebServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(root: Path, photos: int, groups: int, n_sessions: int, thumbs: int) -> tuple[Path, list[str]]:
    lib = root / "lib"
    lib.mkdir(parents=True)
    port = free_port()
    cfg = root / "dupligone.toml"
    cfg.write_text(f'state_dir = "{root / "state"}"\n[[libraries]]\npath = "{lib}"\n[web]\nport = {port}\n')
    c = load_config(cfg)
    idx = open_index(c.index_path)
    store = ThumbStore(c.thumbs_path)
    rng = random.Random(6)
    thumb_bytes = (require_shared("datasets", "dev", "photos") / "Edited" / "IMG_0895.JPG").read_bytes()
    now = time.time()
    with idx.tx() as conn:
        conn.execute("INSERT INTO folders(id, path, protected, mode, added_at, first_scan_done_at) VALUES (1, ?, 0, 'auto', ?, ?)",
                     (str(lib), now, now))
        tokens = []
        for s in range(n_sessions):
            tok = f"bench-session-{s:06d}-xxxxxxxx"
            tokens.append(tok)
            conn.execute("INSERT INTO sessions(id, token, kind, folder_id, created_at, last_added_at, closed_at, clustered_at, dirty) "
                         "VALUES (?, ?, 'burst', 1, ?, ?, ?, ?, 0)", (s + 1, tok, now - s, now - s, now - s, now - s))
        rows = []
        for i in range(1, photos + 1):
            h = f"{rng.getrandbits(128):032x}"
            thumb = store.relpath(h) if i <= thumbs else None
            rows.append((i, 1, (i % n_sessions) + 1, str(lib / f"{i // 1000:03d}" / f"IMG_{i:06d}.jpg"), rng.randint(500_000, 6_000_000),
                         1, "ok", now, h, rng.getrandbits(63), rng.getrandbits(63), 4000, 3000, "JPEG", 0, 90,
                         rng.uniform(10, 900), rng.uniform(40, 200), rng.uniform(20, 70), 2.0, rng.randint(0, 3),
                         "2020:01:01 12:00:00", "Camera X", 0, thumb))
        conn.executemany(
            "INSERT INTO photos(id, folder_id, session_id, path, size_bytes, mtime_ns, status, first_seen_at, content_hash, "
            "phash, dhash, width, height, format, lossless, jpeg_quality, sharpness, brightness, contrast, noise, faces, "
            "taken_at, camera, has_gps, thumb) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)
        # 10,000 groups of 3 photos, spread over the sessions; members are photos of the session.
        members = []
        for g in range(1, groups + 1):
            sid = (g % n_sessions) + 1
            conn.execute("INSERT INTO groups(id, session_id, position, created_at) VALUES (?, ?, ?, ?)", (g, sid, g // n_sessions, now))
            base = (g // n_sessions) * 3 * n_sessions + sid - 1
            for m in range(3):
                pid = base + m * n_sessions
                pid = pid if pid >= 1 else pid + n_sessions
                members.append((g, pid, m, "keep" if m == 0 else "delete", "best copy" if m == 0 else "lower resolution"))
        conn.executemany("INSERT OR IGNORE INTO group_members(group_id, photo_id, position, recommended, reason) VALUES (?, ?, ?, ?, ?)",
                         members)
    for i in range(1, thumbs + 1):
        h = idx.scalar("SELECT content_hash FROM photos WHERE id = ?", (i,))
        store.write(str(h), thumb_bytes)
    idx.conn.execute("ANALYZE")
    idx.close()
    return cfg, tokens


def timed(client: httpx.Client, url: str, n: int, before: Any = None) -> list[float]:
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    require_shared("datasets", "dev", "photos")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dupligone-web-bench-") as tmp:
        t0 = time.perf_counter()
        cfg_path, tokens = build(Path(tmp), args.photos, args.groups, args.sessions, thumbs=1000)
        build_s = time.perf_counter() - t0
        cfg = load_config(cfg_path)
        srv = WebServer(cfg)
        assert srv.start(), srv.error
        conn = srv.server.config.app.state.web.index.conn
        base = f"http://127.0.0.1:{cfg.web.port}"
        token = tokens[len(tokens) // 2]
        targets = {
            "home page": "/",
            "session overview": f"/s/{token}",
            "session page": f"/s/{token}?g=50",
            "dry run": f"/s/{token}/confirm",
            "result API": f"/api/sessions/{token}/result",
            "thumbnail": "/thumb/500",
        }
        out = {"photos": args.photos, "groups": args.groups, "sessions": args.sessions,
               "groups_per_session": args.groups // args.sessions, "build_s": round(build_s, 1), "endpoints": {}}
        with httpx.Client(base_url=base, timeout=30) as client:
            writer = sqlite3.connect(str(cfg.index_path))
            writer.isolation_level = None

            def touch() -> None:  # another process (the daemon) commits: cached counts are stale
                writer.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('bench', ?)", (str(time.time()),))

            for name, url in targets.items():
                timed(client, url, 5)  # warm-up
                statements: list[str] = []
                conn.set_trace_callback(statements.append)
                client.get(url)
                conn.set_trace_callback(None)
                xs = timed(client, url, args.requests)
                out["endpoints"][name] = {"url": url, "p50_ms": round(statistics.median(xs), 1),
                                          "p95_ms": round(pct(xs, 95), 1), "max_ms": round(max(xs), 1),
                                          "sql_statements": len(statements)}
            xs = timed(client, "/", max(20, args.requests // 4), before=touch)
            out["endpoints"]["home, index just changed"] = {"url": "/", "p50_ms": round(statistics.median(xs), 1),
                                                            "p95_ms": round(pct(xs, 95), 1), "max_ms": round(max(xs), 1),
                                                            "sql_statements": out["endpoints"]["home page"]["sql_statements"] + 1}
            writer.close()
        srv.stop()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"index: {args.photos} photos, {args.groups} groups in {args.sessions} sessions (built in {build_s:.1f} s); "
          f"{args.requests} sequential requests each over loopback, load average {os.getloadavg()[0]:.1f}")
    for name, e in out["endpoints"].items():
        print(f"  {name:<26} p50 {e['p50_ms']:6.1f} ms   p95 {e['p95_ms']:6.1f} ms   max {e['max_ms']:6.1f} ms   "
              f"{e['sql_statements']} SQL statements")


if __name__ == "__main__":
    main()
