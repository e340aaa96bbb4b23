"""The daemon on both queues: SqliteHuey (embedded) and RedisHuey (a real Debian redis-server
started here), and stopping on SIGTERM mid-ingest within seconds with nothing lost."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import corpus
from tests.daemon_support import Daemon, free_port, groups, rows, settled, wait_for, write_config


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port)
        wait_for(lambda: _ping(client), 10, "redis-server to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _ping(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def _fill(lib: Path, n: int) -> list[Path]:
    files = [p for p in corpus.files() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    out = []
    for k, src in enumerate(files[:n]):
        dest = lib / f"{k:04d}{src.suffix}"
        dest.write_bytes(src.read_bytes())
        out.append(dest)
    return out


def test_redis_queue(tmp_path: Path, redis_url: str) -> None:
    import redis

    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib], queue={"redis_url": redis_url})
    with Daemon(cfg) as d:
        files = _fill(lib, 40)
        (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
        st = wait_for(lambda: (s := settled(cfg)) and s["photos"] + s["errors"] == len(files) + 1 and s, 90,
                      "the Redis-queued photos to be analysed")
        assert st["errors"] == 1
        assert {r["analyses"] for r in rows(cfg, "SELECT analyses FROM photos")} == {1}
        # The work went through Redis (a task and a result pushed per photo); no SQLite queue was made.
        stats = redis.Redis.from_url(redis_url).info("commandstats")
        assert stats.get("cmdstat_lpush", {}).get("calls", 0) >= 2 * len(files), stats
        assert not (tmp_path / "state" / "queue.db").exists()
        assert groups(cfg)["photos"] == len(files)
        assert d.stop(signal.SIGINT) == 0


def test_sigterm_mid_ingest_stops_within_seconds_and_resumes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib])
    d = Daemon(cfg).start()
    files = _fill(lib, 120)
    wait_for(lambda: rows(cfg, "SELECT COUNT(*) AS n FROM photos WHERE status = 'ok'")[0]["n"] >= 5, 60,
             "some analyses")
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=20) == 0
    took = time.monotonic() - t0
    assert took < 10, f"SIGTERM took {took:.1f} s"
    assert "stopped" in d.log()
    left = rows(cfg, "SELECT COUNT(*) AS n FROM photos WHERE status = 'queued'")[0]["n"]
    with Daemon(cfg) as d2:
        if left:
            assert f"{left} photos queued again" in d2.log()
        wait_for(lambda: (s := settled(cfg)) and s["photos"] == len(files), 90, "the rest after the restart")
        assert {r["analyses"] for r in rows(cfg, "SELECT analyses FROM photos")} == {1}
        assert d2.stop(signal.SIGINT) == 0
