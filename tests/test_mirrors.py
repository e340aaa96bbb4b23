"""Azure Blob and MongoDB mirrors on real servers (Azurite, SecantusDB) and a real dupligoned.

After ingest every photo and thumbnail is in the container and every row in MongoDB; a SAS
preview link serves the photo's bytes and stops after its lifetime; confirm + purge removes
them; cleanup removes an orphan blob; resync repairs a damaged mirror; an outage in the middle
of an ingest blocks nothing and the mirrors converge, nothing missing or extra.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import (
    Daemon,
    cli,
    copy_photo,
    groups_of,
    rows,
    settled,
    singletons,
    status,
    wait_for,
    write_config,
)
from tests.mirror_support import AZURITE_KEY, Azurite, Mongo

pytestmark = pytest.mark.timeout(240)

CONTAINER = "photos"
DB = "dg"


@pytest.fixture
def servers(tmp_path: Path) -> Any:
    az, mongo = Azurite(tmp_path / "azurite"), Mongo(tmp_path / "mongo")
    try:
        az.start()
        mongo.start()
        yield az, mongo
    finally:
        az.stop()
        mongo.stop()


def mirror_config(tmp: Path, lib: Path, az: Azurite, mongo: Mongo, **tables: dict[str, Any]) -> Path:
    return write_config(tmp, [lib], azure={"connection_string": az.connection_string, "container": CONTAINER},
                        mongo={"uri": mongo.uri, "database": DB}, web={"enabled": False},
                        trash={"retention_days": 0.0}, **tables)


def caught_up(cfg: Path) -> dict[str, Any] | None:
    st = status(cfg)
    ms = {m["name"]: m for m in st["mirrors"]}
    if set(ms) == {"azure", "mongo"} and all(m["pending"] == 0 for m in ms.values()):
        return ms
    return None


def expected(cfg: Path) -> dict[str, set[Any]]:
    """What the mirrors must hold, read from the index."""
    hashes = {r[0] for r in rows(cfg, "SELECT content_hash FROM photos WHERE status != 'gone' AND content_hash IS NOT NULL "
                                      "UNION SELECT content_hash FROM trash WHERE state IN ('moving', 'trashed') "
                                      "AND content_hash IS NOT NULL")}
    thumbs = {r[0] for r in rows(cfg, "SELECT DISTINCT content_hash FROM photos WHERE thumb IS NOT NULL") if r[0] in hashes}
    return {
        "blobs": {f"photos/{h}" for h in hashes} | {f"thumbs/{h}.jpg" for h in thumbs},
        "photos": {r[0] for r in rows(cfg, "SELECT id FROM photos")},
        "sessions": {r[0] for r in rows(cfg, "SELECT id FROM sessions")},
        "groups": {r[0] for r in rows(cfg, "SELECT id FROM groups")},
        "decisions": {f"{r[0]}:{r[1]}" for r in rows(cfg, "SELECT session_id, photo_id FROM decisions")},
        "trash": {r[0] for r in rows(cfg, "SELECT id FROM trash")},
    }


def actual(az: Azurite, mongo: Mongo) -> dict[str, set[Any]]:
    db = mongo.db(DB)
    out: dict[str, set[Any]] = {"blobs": set(az.store(CONTAINER).names())}
    for coll in ("photos", "sessions", "groups", "decisions", "trash"):
        out[coll] = {d["_id"] for d in db[coll].find({}, {"_id": 1})}
    return out


def assert_converged(cfg: Path, az: Azurite, mongo: Mongo) -> None:
    want, have = expected(cfg), actual(az, mongo)
    for k in want:
        assert have[k] == want[k], f"{k}: missing {sorted(want[k] - have[k])[:5]}, extra {sorted(have[k] - want[k])[:5]}"


def test_mirrors_follow_ingest_review_purge_and_cleanup(tmp_path: Path, servers: Any) -> None:
    az, mongo = servers
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = mirror_config(tmp_path, lib, az, mongo)
    picks = [m for g in groups_of("resize", 2) for m in g] + singletons(4)
    with Daemon(cfg) as d:
        for i, rel in enumerate(picks):
            copy_photo(rel, lib, f"p{i:02d}{Path(rel).suffix}")
        copy_photo(picks[0], lib, "same-bytes-copy" + Path(picks[0]).suffix)  # one blob for two photos
        wait_for(lambda: settled(cfg), 90, "the ingest to settle")
        wait_for(lambda: caught_up(cfg), 60, "the mirrors to catch up")
        assert_converged(cfg, az, mongo)
        n_ok = len(rows(cfg, "SELECT id FROM photos WHERE status = 'ok'"))
        assert n_ok == len(picks) + 1
        distinct = len({r[0] for r in rows(cfg, "SELECT content_hash FROM photos WHERE status = 'ok'")})
        assert distinct < n_ok and len(expected(cfg)["blobs"]) == 2 * distinct  # byte-identical copies share blobs
        # Bytes, not just names: the blob is the file; the thumbnail blob is the local thumbnail.
        store = az.store(CONTAINER)
        state = tmp_path / "state"
        for r in rows(cfg, "SELECT path, content_hash, thumb FROM photos WHERE status = 'ok'"):
            assert store.download(f"photos/{r['content_hash']}") == Path(r["path"]).read_bytes()
            assert store.download(f"thumbs/{r['content_hash']}.jpg") == (state / "thumbs" / r["thumb"]).read_bytes()
        db = mongo.db(DB)
        for r in rows(cfg, "SELECT * FROM photos"):
            doc = db.photos.find_one({"_id": r["id"]})
            assert (doc["path"], doc["content_hash"], doc["phash"], doc["status"]) == \
                (r["path"], r["content_hash"], r["phash"], r["status"])
        g = rows(cfg, "SELECT id FROM groups ORDER BY id")[0]["id"]
        members = [r[0] for r in rows(cfg, "SELECT photo_id FROM group_members WHERE group_id = ? ORDER BY position", (g,))]
        assert [m["photo_id"] for m in db.groups.find_one({"_id": g})["members"]] == members
        assert "content_hash_1" in db.photos.index_information() and "token_1" in db.sessions.index_information()
        st = cli("status", "--config", str(cfg))
        assert "Mirrors:" in st.stdout and "azure" in st.stdout and "0 changes pending" in st.stdout, st.stdout

        # SAS preview: the right bytes, read-only, then expired.
        from dupligoned.adapters.config import load_config
        from dupligoned.adapters.index import open_index
        from dupligoned.services import mirror, review, trash

        conf = load_config(cfg)
        index = open_index(conf.index_path)
        try:
            pid, path = rows(cfg, "SELECT id, path FROM photos WHERE status = 'ok' ORDER BY id")[0]
            url = mirror.preview_url(index, conf, pid, ttl_s=3)
            assert url is not None and AZURITE_KEY not in url
            assert urllib.request.urlopen(url, timeout=10).read() == Path(path).read_bytes()
            assert urllib.request.urlopen(str(mirror.preview_url(index, conf, pid, thumb=True)), timeout=10).read()[:2] == b"\xff\xd8"
            put = urllib.request.Request(url, data=b"x", method="PUT", headers={"x-ms-blob-type": "BlockBlob"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(put, timeout=10)
            assert refused.value.code == 403
            # The review page links mirrored photos through SAS, and its CSP lets that origin in.
            from litestar.testing import TestClient

            from dupligoned.web.app import create_app

            token = rows(cfg, "SELECT token FROM sessions ORDER BY id")[0]["token"]
            with TestClient(create_app(conf), base_url="http://127.0.0.1") as client:
                res = client.get(f"/api/sessions/{token}/result")
                assert res.status_code == 200, res.text
                links = [p["preview_url"] for g in res.json()["groups"] for p in g["photos"]]
                origin = f"http://127.0.0.1:{az.port}"
                assert links and all(u.startswith(origin + "/") and "sig=" in u for u in links), links
                assert f"img-src 'self' data: {origin};" in res.headers["content-security-policy"]
                assert urllib.request.urlopen(links[0], timeout=10).status == 200
            time.sleep(4.5)
            with pytest.raises(urllib.error.HTTPError) as expired:
                urllib.request.urlopen(url, timeout=10)
            assert expired.value.code == 403

            # Confirm the recommended deletions of a group, then purge (retention 0).
            token = rows(cfg, "SELECT s.token FROM sessions s JOIN groups g ON g.session_id = s.id LIMIT 1")[0][0]
            root_for = trash.default_trash_root("", [str(lib)])
            assert review.accept_all(index, token) > 0  # decisions, mirrored too
            review.confirm(index, token, root_for)
        finally:
            index.close()
        trashed = rows(cfg, "SELECT content_hash FROM trash WHERE state = 'trashed'")
        assert trashed
        wait_for(lambda: caught_up(cfg), 60, "the mirrors to see the trash")
        assert_converged(cfg, az, mongo)  # trashed files stay mirrored until purged (restore is possible)
        r = cli("cleanup", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        purged = {t[0] for t in trashed} - {x[0] for x in rows(cfg, "SELECT content_hash FROM photos WHERE status != 'gone'")}
        assert purged
        wait_for(lambda: caught_up(cfg), 60, "the mirrors to see the purge")
        blobs = set(store.names())
        assert not {f"photos/{h}" for h in purged} & blobs and not {f"thumbs/{h}.jpg" for h in purged} & blobs
        assert {d["state"] for d in db.trash.find()} == {"purged"}
        assert_converged(cfg, az, mongo)

        # An orphan (a blob no photo refers to) goes at the next cleanup; what is not ours stays.
        orphan = "photos/" + "0123456789abcdef" * 2
        store.put_bytes(orphan, b"not a photo of ours")
        store.put_bytes("notes/readme.txt", b"someone else's")
        assert cli("cleanup", "--config", str(cfg)).returncode == 0
        wait_for(lambda: orphan not in set(store.names()), 30, "the orphan blob to go")
        assert "notes/readme.txt" in set(store.names())
        store.delete("notes/readme.txt")
        assert_converged(cfg, az, mongo)

        # A damaged mirror is rebuilt by `dupligone mirror resync`.
        victim = sorted(expected(cfg)["blobs"])[0]
        store.delete(victim)
        db.photos.delete_many({})
        db.sessions.insert_one({"_id": 999_999, "token": "stale"})
        r = cli("mirror", "resync", "--config", str(cfg), "--json")
        assert r.returncode == 0, r.stderr
        assert_converged(cfg, az, mongo)
        log = d.log()
    assert AZURITE_KEY not in log and "AccountKey" not in log
    shown = cli("check-config", "--config", str(cfg))
    assert shown.returncode == 0 and AZURITE_KEY not in shown.stdout and "connection_string" in shown.stdout


def test_outage_mid_ingest_blocks_nothing_and_mirrors_converge(tmp_path: Path, servers: Any) -> None:
    az, mongo = servers
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = mirror_config(tmp_path, lib, az, mongo)
    picks = [m for g in groups_of("resize", 3) for m in g] + singletons(14)
    first, rest = picks[:5], picks[5:]
    with Daemon(cfg):
        for i, rel in enumerate(first):
            copy_photo(rel, lib, f"a{i:02d}{Path(rel).suffix}")
        wait_for(lambda: settled(cfg), 90, "the first photos to settle")
        wait_for(lambda: caught_up(cfg), 60, "the mirrors to catch up")
        # Both servers go away in the middle of an ingest.
        for i, rel in enumerate(rest[:6]):
            copy_photo(rel, lib, f"b{i:02d}{Path(rel).suffix}")
        az.stop()
        mongo.stop()
        for i, rel in enumerate(rest[6:]):
            copy_photo(rel, lib, f"b{i + 6:02d}{Path(rel).suffix}")
        os.unlink(lib / f"a00{Path(first[0]).suffix}")
        # Local work finishes without them.
        def all_settled() -> dict[str, Any] | None:
            st = settled(cfg)  # read once: the daemon may move on between two reads
            return st if st and st["photos"] == len(picks) - 1 else None

        st = wait_for(all_settled, 120, "local work to finish while the mirrors are down")
        assert st["queued"] == 0
        down = wait_for(lambda: [m for m in status(cfg)["mirrors"] if m["last_error"] and m["pending"]] if
                        len([m for m in status(cfg)["mirrors"] if m["last_error"] and m["pending"]]) == 2 else None,
                        60, "both mirrors to report their error")
        assert {m["name"] for m in down} == {"azure", "mongo"}
        assert all(m["lag_s"] > 0 for m in down)
        az.start()
        mongo.start()
        wait_for(lambda: caught_up(cfg), 120, "the mirrors to converge after the outage", every=1.0)
        assert_converged(cfg, az, mongo)
        assert rows(cfg, "SELECT COUNT(*) FROM photos WHERE status = 'gone'")[0][0] == 1


def test_resumable_upload_and_changed_file(tmp_path: Path) -> None:
    """Blocks staged by an interrupted upload are reused; bytes that no longer match the
    content hash are never committed."""
    import hashlib

    az = Azurite(tmp_path / "azurite").start()
    try:
        store = az.store("resume")
        store.ensure_container()
        data = os.urandom(3 * 256 * 1024 + 1000)
        f = tmp_path / "big.bin"
        f.write_bytes(data)
        h = hashlib.blake2b(data, digest_size=16).hexdigest()
        client = store.container.get_blob_client(f"photos/{h}")
        # An earlier attempt staged the first two blocks and was cut off.
        for i in range(2):
            client.stage_block(f"{h[:16]}-{i:06d}", data[i * 256 * 1024:(i + 1) * 256 * 1024])
        assert store.size_of(f"photos/{h}") is None
        res = store.put_file(f"photos/{h}", str(f), h, block_bytes=256 * 1024)
        assert res.uploaded and store.download(f"photos/{h}") == data
        assert not store.put_file(f"photos/{h}", str(f), h, block_bytes=256 * 1024).uploaded  # idempotent
        f.write_bytes(b"x" + data[1:])  # the file changed after its analysis
        with pytest.raises(ValueError):
            store.put_file(f"photos/{'f' * 32}", str(f), "f" * 32, block_bytes=256 * 1024)
        with pytest.raises(ValueError):
            store.put_file(f"photos/{'e' * 32}", str(f), "e" * 32)
        assert store.size_of(f"photos/{'f' * 32}") is None and store.size_of(f"photos/{'e' * 32}") is None
    finally:
        az.stop()

