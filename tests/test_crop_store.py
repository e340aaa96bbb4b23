"""The crop candidate index on disk (``adapters/crop_store.py``): stored segments propose what the
whole in-memory index proposes; the store grows a session at a time and merges; it is rebuilt
from the index when missing, made for another index, damaged or behind; candidates are kept
both ways; and, with the real daemon, photos analysed before features existed are backfilled
and a missing store is rebuilt, so a crop of an old original is still found.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dupligoned.adapters import crop_store
from dupligoned.adapters.crop_store import CropStore
from dupligoned.adapters.index import Index, open_index
from dupligoned.core import crop_index
from dupligoned.core.crop_index import CropIndex, make_segment, segment_votes
from dupligoned.core.crops import CropParams, LocalFeatures, quantise
from dupligoned.services import library_crops
from tests import synth
from tests.daemon_support import Daemon, groups, rows, settled, status, wait_for, write_config


def _synthetic(n: int, seed: int, k: int = 60) -> list[LocalFeatures]:
    """Photos sharing descriptors from a small pool (so buckets fill and candidates appear),
    each keypoint with two alternates (another pool descriptor, or itself a few bits off)."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (400, 16), dtype=np.uint8)
    out = []
    for _ in range(n):
        desc = pool[rng.integers(0, len(pool), k)].copy()
        flip = rng.integers(0, 16, (k, 2))
        desc[np.arange(k), flip[:, 0]] ^= np.uint8(1) << flip[:, 1].astype(np.uint8) % 8
        alt = np.stack([pool[rng.integers(0, len(pool), k)], desc ^ (rng.random((k, 16)) < 0.03).astype(np.uint8)])
        out.append(quantise(rng.uniform(0, 500, (k, 2)), desc, 512, 384, np.zeros((16, 16), np.uint8), alt))
    return out


def test_a_query_keypoint_votes_with_its_alternates_once() -> None:
    """A crop's keypoints described half a pyramid level either way (``alt``) find the partners
    its own descriptors miss; a keypoint votes once however many of its descriptors find one.
    The whole index and stored segments (read back from stored blobs) agree."""
    from dupligoned.core.crops import descriptors_of_blobs

    params = CropParams(min_votes=1)
    rng = np.random.default_rng(2)
    stored = quantise(rng.uniform(0, 500, (60, 2)), rng.integers(0, 256, (60, 16), dtype=np.uint8), 512, 384)
    own = rng.integers(0, 256, (60, 16), dtype=np.uint8)  # nowhere near the stored photo's
    alt = np.stack([rng.integers(0, 256, (60, 16), dtype=np.uint8) for _ in range(2)])
    alt[0, :10] = stored.desc[:10]  # ten keypoints meet the stored ones at one scale ...
    alt[1, 5:15] = stored.desc[5:15]  # ... and ten at the other, five of them both
    query = quantise(rng.uniform(0, 500, (60, 2)), own, 512, 384, None, alt)
    whole = CropIndex(params)
    whole.add([stored])
    assert _triples(whole.votes([query])) == [(0, 0, 15.0)]
    assert len(whole.votes([query.without_alt()])) == 0
    desc, owner = descriptors_of_blobs([stored.to_bytes()])
    assert np.array_equal(desc, stored.desc) and not owner.any()
    seg = make_segment(desc, owner, params)
    assert _triples(segment_votes([query], [seg], params)) == [(0, 0, 15.0)]


def _triples(p: object) -> list[tuple[int, int, float]]:
    return sorted(zip(p.i.tolist(), p.j.tolist(), p.dist.tolist(), strict=True))  # type: ignore[attr-defined]


@pytest.mark.parametrize("max_bucket", [3, 64])  # with and without stop words at work
def test_stored_segments_vote_as_the_whole_index(max_bucket: int) -> None:
    params = CropParams(max_bucket=max_bucket, min_votes=2)
    feats = _synthetic(500, 1)
    whole = CropIndex(params)
    whole.add(feats)
    queries = list(range(400, 500))
    want = whole.votes([feats[i] for i in queries], np.array(queries))
    segs = []
    for a, b in [(0, 170), (170, 171), (171, 500)]:  # uneven pieces, one of a single photo
        desc = np.concatenate([f.desc for f in feats[a:b]])
        segs.append(make_segment(desc, np.repeat(np.arange(a, b), [len(f) for f in feats[a:b]]), params))
    released: list[int] = []
    got = segment_votes([feats[i] for i in queries], segs, params, np.array(queries), release=released.append)
    assert len(want) > 200
    assert _triples(got) == _triples(want)
    assert set(released) == {0, 1, 2}


def test_a_few_photos_search_a_large_segment_through_its_fence_posts() -> None:
    """A query sparse in a segment (one photo against many) reads each key's window between
    two fence posts, not a binary search over the whole segment: the same votes as the whole
    index, and the fence posts were made and used."""
    params = CropParams(min_votes=2)
    feats = _synthetic(600, 5)
    whole = CropIndex(params)
    whole.add(feats)
    seg = make_segment(np.concatenate([f.desc for f in feats]), np.repeat(np.arange(600), [len(f) for f in feats]), params)
    told: list[tuple[int, bool]] = []
    for q in (3, 250, 599):
        query = feats[q].without_alt()
        assert len(query) * crop_index.SPARSE_QUERY < len(seg)
        want = whole.votes([query], np.array([q]))
        got = segment_votes([query], [seg], params, np.array([q]), access=lambda s, d: told.append((s, d)))
        assert len(want) > 0 and _triples(got) == _triples(want)
    assert sorted(seg._fences) == list(range(params.hash_tables))
    assert told == [(0, True)] * 3  # a small segment: one photo touches much of it, read ahead
    # In a large one, one photo's search touches a few scattered pages (read only those), a
    # batch's touches most of them (worth reading ahead in large pieces).
    rng = np.random.default_rng(8)
    big = make_segment(rng.integers(0, 256, (600_000, 16), dtype=np.uint8), np.arange(600_000) // 60, params)
    assert len(big) > 60 * crop_index.READ_AHEAD_SHARE * crop_index.FENCE
    told.clear()
    segment_votes([feats[0].without_alt()], [seg, big], params, access=lambda s, d: told.append((s, d)))
    segment_votes([f.without_alt() for f in feats[:100]], [big], params, access=lambda s, d: told.append((s, d)))
    assert told == [(0, True), (1, False), (0, True)]


def test_the_window_between_fence_posts_holds_the_first_key_not_below_the_query() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 7, crop_index.FENCE - 1, crop_index.FENCE, crop_index.FENCE + 1, 5 * crop_index.FENCE + 3):
        keys = np.sort(rng.integers(0, 4 * n, n)).astype(np.uint32)  # repeated keys: buckets
        q = np.sort(np.r_[rng.integers(0, 4 * n + 2, 300), keys[rng.integers(0, n, 50)], 0, keys[0], keys[-1]])
        got = crop_index._lower_bound(keys, q.astype(np.uint32), crop_index._fence(keys))
        assert np.array_equal(got, np.searchsorted(keys, q, "left")), n


def test_a_streamed_merge_of_segments_is_the_segment_of_all_their_descriptors() -> None:
    """``merged_table`` sorts a key range at a time, yet gives exactly ``make_segment``'s keys
    and order over the segments' descriptors one after another (ties too: a third of each
    segment shares one descriptor, an empty segment among them)."""
    params = CropParams()
    rng = np.random.default_rng(11)
    descs = []
    for n in (900, 0, 4000, 3, 1200):
        d = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        d[: n // 3] = d[0] if n else d[:0]
        descs.append(d)
    segs = [make_segment(d, np.arange(len(d)), params) for d in descs]
    whole = make_segment(np.concatenate(descs), np.arange(sum(map(len, descs))), params)
    for t in range(params.hash_tables):
        chunks = list(crop_index.merged_table(segs, t, params.hash_bits, block=500))
        assert len(chunks) == 13  # 6,103 keys in ranges of about 500
        assert np.array_equal(np.concatenate([k for k, _ in chunks]), whole.keys[t])
        assert np.array_equal(np.concatenate([o for _, o in chunks]), whole.order[t])


def test_votes_answered_a_part_at_a_time_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many queries are searched in parts (the spans of one pass are bounded): same votes."""
    from dupligoned.core import crop_index

    params = CropParams(min_votes=2)
    feats = _synthetic(300, 4)
    segs = [make_segment(np.concatenate([f.desc for f in feats[a:b]]),
                         np.repeat(np.arange(a, b), [len(f) for f in feats[a:b]]), params) for a, b in [(0, 120), (120, 300)]]
    queries = np.arange(200, 300)
    whole = segment_votes([feats[i] for i in queries], segs, params, queries)
    monkeypatch.setattr(crop_index, "SPAN_BYTES", 8 * params.hash_tables * 2 * 60 * 7)  # 7 photos a part
    parts = segment_votes([feats[i] for i in queries], segs, params, queries)
    assert len(whole) > 100 and _triples(parts) == _triples(whole)


def _library(tmp_path: Path, feats: list[LocalFeatures]) -> Index:
    """An index holding one analysed photo per features (ids 1..n), none searched yet."""
    idx = open_index(tmp_path / "state" / "index.db")
    with idx.tx() as conn:
        for k, f in enumerate(feats):
            conn.execute("INSERT INTO photos(id, path, size_bytes, mtime_ns, status, first_seen_at, width) "
                         "VALUES (?, ?, 1, 1, 'ok', 0, 512)", (k + 1, f"/lib/{k:05d}.jpg"))
            conn.execute("INSERT INTO photo_features(photo_id, data) VALUES (?, ?)", (k + 1, f.to_bytes()))
    return idx


def _store_votes(store: CropStore, feats: list[LocalFeatures], ids: list[int], params: CropParams) -> list:
    return _triples(segment_votes([feats[i - 1] for i in ids], store.segments, params, np.array(ids),
                                  release=store.release, access=store.access))  # as the daemon searches


def _append(store: CropStore, idx: Index, feats: list[LocalFeatures], ids: list[int]) -> None:
    desc = np.concatenate([feats[i - 1].desc for i in ids])
    store.append(desc, np.repeat(np.array(ids), [len(feats[i - 1]) for i in ids]), len(ids))
    idx.record_crop_search(ids, {}, [], 0.0)


def test_the_store_grows_merges_and_is_rebuilt_when_missing_stale_foreign_or_damaged(tmp_path: Path) -> None:
    params = CropParams(min_votes=2)
    feats = _synthetic(400, 2)
    idx = _library(tmp_path, feats)
    folder = crop_store.store_path(idx.path)
    store = CropStore(folder, idx, params)
    assert not store.ready and store.progress() == {"done": 0, "total": 0, "started_at": store.progress()["started_at"]}
    assert store.rebuild_step() and store.ready  # nothing searched yet: built at once
    # Sessions of 30 photos: each appended; small segments are merged as they pile up.
    for a in range(1, 301, 30):
        _append(store, idx, feats, list(range(a, a + 30)))
    assert store.photos == 300
    assert len(store.segments) < 10  # merged (MERGE_COUNT = 8)
    whole = CropIndex(params)
    whole.add(feats[:300])  # ids 0..299 = photos 1..300
    queries = list(range(301, 401))
    want = [(q, j + 1, v) for q, j, v in _triples(whole.votes([feats[i - 1] for i in queries]))]
    assert len(want) > 100
    assert _store_votes(store, feats, queries, params) == want
    store.close()

    # Reopened as it is: ready, the same answers, nothing rebuilt.
    store = CropStore(folder, idx, params)
    assert store.ready and store.photos == 300
    assert _store_votes(store, feats, queries, params) == want
    store.close()

    def rebuilt() -> CropStore:
        s = CropStore(folder, idx, params)
        assert not s.ready
        steps = 0
        while not s.rebuild_step(block=64):  # a step at a time, as the daemon's loop does
            steps += 1
            prog = s.progress()
            assert prog is not None and prog["total"] == idx.crop_searched_count() and prog["done"] <= prog["total"]
        assert steps >= 4 and s.ready and s.photos == idx.crop_searched_count()
        if s.photos == 300:
            assert _store_votes(s, feats, queries, params) == want
        return s

    shutil.rmtree(folder)  # missing
    rebuilt().close()
    with idx.tx() as conn:  # foreign: made for another index
        idx.set_meta(conn, crop_store.META_KEY, "someone-else")
    rebuilt().close()
    seg = sorted(folder.glob("seg-*.bin"))[0]  # damaged
    seg.write_bytes(seg.read_bytes()[:100])
    rebuilt().close()
    # Behind: the index says 50 more photos were searched than the store holds (a crash
    # between the two, or a store restored from an old backup): rebuilt with them.
    idx.record_crop_search(list(range(301, 351)), {}, [], 0.0)
    s = rebuilt()
    assert s.photos == 350
    man = json.loads((folder / "manifest.json").read_text())
    assert man["photos"] == 350 and man["building"] is None
    s.close()


def test_a_new_photo_is_checked_against_old_photos_whose_best_it_would_be(tmp_path: Path) -> None:
    """A new original whose own best-voted places are taken by look-alikes still gets checked
    against an old crop of it: it would be among the crop's best-voted."""
    params = CropParams()
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (99, 16), dtype=np.uint8)

    def with_shared(n_shared: int, seed: int) -> LocalFeatures:
        r = np.random.default_rng(seed)
        desc = r.integers(0, 256, (99, 16), dtype=np.uint8)
        desc[:n_shared] = base[:n_shared] ^ (r.random((n_shared, 16)) < 0.02).astype(np.uint8)
        return quantise(r.uniform(0, 500, (99, 2)), desc, 512, 384, np.zeros((16, 16), np.uint8))

    lookalikes = [with_shared(60, 100 + k) for k in range(params.candidates_per_photo)]
    old_crop = with_shared(15, 7)
    new_original = quantise(np.random.default_rng(8).uniform(0, 500, (99, 2)), base, 512, 384,
                            np.zeros((16, 16), np.uint8))
    feats = [*lookalikes, old_crop, new_original]
    idx = _library(tmp_path, feats)
    crop_id, new_id = len(lookalikes) + 1, len(feats)
    with idx.tx() as conn:  # the new photo is not there yet: the old ones are searched first
        conn.execute("UPDATE photos SET status = 'queued' WHERE id = ?", (new_id,))
    store = library_crops.open_store(idx, params)
    library_crops.search_pending(idx, params, store=store)
    with idx.tx() as conn:
        conn.execute("UPDATE photos SET status = 'ok' WHERE id = ?", (new_id,))
    kth = idx.crop_kth(range(1, new_id))
    assert kth[crop_id] == 15 and all(kth[i] >= 15 for i in range(1, crop_id))  # look-alikes are best

    def checked() -> set[tuple[int, int]]:
        return set(library_crops.candidates(idx, store, [new_id], [new_original], params).pairs)

    assert (crop_id, new_id) in checked()
    assert {(i, new_id) for i in range(1, len(lookalikes) + 1)} <= checked()
    with idx.tx() as conn:  # had it better candidates than the new photo: not checked
        conn.execute("UPDATE photo_features SET crop_kth = 90 WHERE photo_id = ?", (crop_id,))
    assert (crop_id, new_id) not in checked()
    store.close()


def test_photos_analysed_before_features_are_backfilled_and_a_missing_store_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    original = synth.photo(lib / "Camera" / "IMG_0001.jpg", 11, quality=95)
    others = [synth.photo(lib / "Camera" / f"IMG_000{k}.jpg", 20 + k) for k in (2, 3)]
    cfg = write_config(tmp_path, [lib])
    monkeypatch.setenv("DUPLIGONE_NO_CROPS", "1")  # as a version before the crop stage
    with Daemon(cfg) as d:
        wait_for(lambda: settled(cfg), 40, "the first scan without crop features")
        assert rows(cfg, "SELECT COUNT(*) AS n FROM photo_features")[0]["n"] == 0
        d.stop()
    monkeypatch.delenv("DUPLIGONE_NO_CROPS")
    shutil.rmtree(tmp_path / "state" / "crop_index", ignore_errors=True)
    crop = synth.save(synth.CROPS["16x9"](synth.scene(11)), lib / "Shared" / "story.jpg", 85)
    with Daemon(cfg):
        def done() -> bool:
            feats = rows(cfg, "SELECT f.photo_id, f.crops_searched, p.analyses, p.path FROM photo_features f "
                              "JOIN photos p ON p.id = f.photo_id")
            return len(feats) == 4 and all(r["crops_searched"] == 1 for r in feats) and settled(cfg) is not None
        wait_for(done, 60, "the old photos' features to be backfilled and searched")
        # The old photos were analysed once more for their features; the new one once.
        analyses = {r["path"]: r["analyses"] for r in rows(cfg, "SELECT path, analyses FROM photos")}
        assert analyses == {str(original): 2, **{str(p): 2 for p in others}, str(crop): 1}
        with_orig = [c for c in groups(cfg)["clusters"] if str(original) in c["members"]]
        assert with_orig and set(with_orig[0]["members"]) == {str(original), str(crop)}, groups(cfg)
        assert with_orig[0]["keep"] == [str(original)]
        assert status(cfg)["photos"] == 4
    man = json.loads((tmp_path / "state" / "crop_index" / "manifest.json").read_text())
    assert man["building"] is None and man["photos"] == 4


def test_features_of_an_older_extraction_are_made_again_and_the_store_rebuilt(tmp_path: Path) -> None:
    """Photos whose crop features an older extraction made (``photo_features.version`` below
    ``orb.FEATURES_VERSION``) are analysed again; once all are searched, the crop index, which
    then holds their old descriptors beside the new, is rebuilt to hold each photo once."""
    from dupligoned.adapters import orb

    lib = tmp_path / "lib"
    original = synth.photo(lib / "Camera" / "IMG_0001.jpg", 11, quality=95)
    others = [synth.photo(lib / "Camera" / f"IMG_000{k}.jpg", 20 + k) for k in (2, 3)]
    cfg = write_config(tmp_path, [lib])
    with Daemon(cfg) as d:
        wait_for(lambda: settled(cfg), 40, "the first scan")
        feats = rows(cfg, "SELECT photo_id, version, data FROM photo_features")
        assert len(feats) == 3 and {r["version"] for r in feats} == {orb.FEATURES_VERSION}
        d.stop()
    # As an older version left them: few keypoints (too few to find any crop), version 1.
    idx = open_index(tmp_path / "state" / "index.db")
    with idx.tx() as conn:
        for r in feats:
            f = LocalFeatures.from_bytes(r["data"])
            few = LocalFeatures(f.width, f.height, f.pos[:4].copy(), f.desc[:4].copy(), f.thumb)
            conn.execute("UPDATE photo_features SET version = 1, data = ? WHERE photo_id = ?",
                         (few.to_bytes(), r["photo_id"]))
    idx.close()
    crop = synth.save(synth.CROPS["16x9"](synth.scene(11)), lib / "Shared" / "story.jpg", 85)
    with Daemon(cfg):
        def done() -> bool:
            fs = rows(cfg, "SELECT version, crops_searched FROM photo_features")
            man = json.loads((tmp_path / "state" / "crop_index" / "manifest.json").read_text())
            return (len(fs) == 4 and all(r["version"] == orb.FEATURES_VERSION and r["crops_searched"] == 1 for r in fs)
                    and man["building"] is None and man["photos"] == 4 and settled(cfg) is not None)
        wait_for(done, 60, "the old features to be made again and the crop index rebuilt")
        analyses = {r["path"]: r["analyses"] for r in rows(cfg, "SELECT path, analyses FROM photos")}
        assert analyses == {str(original): 2, **{str(p): 2 for p in others}, str(crop): 1}
        assert all(len(LocalFeatures.from_bytes(r["data"])) > 4 for r in rows(cfg, "SELECT data FROM photo_features"))
        with_orig = [c for c in groups(cfg)["clusters"] if str(original) in c["members"]]
        assert with_orig and set(with_orig[0]["members"]) == {str(original), str(crop)}, groups(cfg)
        assert rows(cfg, "SELECT value FROM meta WHERE key = 'crop_features_remade'")[0]["value"] == "0"
    # The rebuilt store holds each photo's current descriptors once.
    man = json.loads((tmp_path / "state" / "crop_index" / "manifest.json").read_text())
    idx = open_index(tmp_path / "state" / "index.db")
    want = sum(len(LocalFeatures.from_bytes(b)) for _, b in idx.crop_searched_blobs_after(-1, 100))
    idx.close()
    assert man["photos"] == 4 and man["descriptors"] == want


def test_status_and_the_page_estimate_the_time_left(tmp_path: Path) -> None:
    """What the daemon notes while it works (analysis rate, crop index rebuild) becomes an
    estimate of the time left in ``status``; an old note (a stopped daemon) is not shown."""
    from dupligoned.services import review
    from dupligoned.services.status import status as status_of

    idx = open_index(tmp_path / "index.db")
    with idx.tx() as conn:
        idx.set_meta(conn, "analysis_progress", json.dumps({"queued": 900, "at": 1000.0, "rate_per_s": 30.0,
                                                            "eta_s": 30}))
        idx.set_meta(conn, "crop_index_progress", json.dumps({"state": "building", "done": 250_000,
                                                              "total": 1_000_000, "started_at": 940.0, "now": 1000.0}))
    from dupligoned.services.sessions import progress

    p = progress(idx, now=1010.0)
    assert p["analysis"] == {"queued": 900, "rate_per_s": 30.0, "eta_s": 30}
    assert p["crop_index"] == {"state": "building", "done": 250_000, "total": 1_000_000, "eta_s": 180}
    assert progress(idx, now=1100.0)["analysis"] is None  # noted 100 s ago: the daemon is not at it
    assert set(status_of(idx)["progress"]) == {"analysis", "crop_index"}
    assert review.home(idx)["progress"]["crop_index"]["done"] == 250_000
    with idx.tx() as conn:
        idx.set_meta(conn, "crop_index_progress", json.dumps({"state": "ready", "photos": 5}))
    assert progress(idx, now=1010.0)["crop_index"] is None


def test_a_daemons_store_merges_when_idle_not_in_a_search(tmp_path: Path) -> None:
    """With ``defer_merges`` (the daemon's), appending a session's batches does not merge small
    segments (that cost a 1-photo session 0.8 s at 1M photos); ``merge_step`` does, with the
    same answers; only a pile of them is merged at once."""
    params = CropParams(min_votes=2)
    feats = _synthetic(400, 3)
    idx = _library(tmp_path, feats)
    store = CropStore(crop_store.store_path(idx.path), idx, params)
    assert store.rebuild_step() and store.ready
    store.defer_merges = True
    for a in range(1, 301, 30):  # 10 batches: past MERGE_COUNT = 8
        _append(store, idx, feats, list(range(a, a + 30)))
    assert len(store.segments) == 10
    queries = list(range(301, 401))
    before = _store_votes(store, feats, queries, params)
    while store.merge_step():
        pass
    assert len(store.segments) < 10
    assert not store.merge_step()  # nothing left to merge
    assert _store_votes(store, feats, queries, params) == before and len(before) > 100
    store.close()


def test_segments_merge_by_size_tiers_a_step_at_a_time_with_the_same_answers(tmp_path: Path) -> None:
    """A daemon's store merges ``fanout`` segments of one size tier into one of the next, no
    larger than ``max_merged``, a bounded step at a time: searches between steps, a close in
    the middle (its ``.tmp`` file gone) and a reopened store all give the unmerged answers."""
    params = CropParams(min_votes=2)
    feats = _synthetic(400, 5)
    idx = _library(tmp_path, feats)
    folder = crop_store.store_path(idx.path)

    def opened() -> CropStore:
        s = CropStore(folder, idx, params)
        # Tiers: 16-63 photos, 64-255, ...; merged segments no larger than 80 photos.
        s.base_photos, s.fanout, s.max_merged, s.defer_merges = 16, 4, 80, True
        s.merge_keys = 1000  # a table merged in pieces: fence posts across their edges
        return s

    store = opened()
    assert store.rebuild_step() and store.ready
    for a in range(1, 289, 18):  # 16 sessions of 18 photos: 16 segments of tier 1
        _append(store, idx, feats, list(range(a, a + 18)))
    assert [crop_store.tier(m.photos, 16, 4) for m in store._mapped] == [1] * 16
    queries = list(range(301, 401))
    want = _store_votes(store, feats, queries, params)
    assert len(want) > 100
    assert store.merge_step(budget_s=0.0) and store._job is not None  # one piece of work
    assert list(folder.glob("*.tmp")) and len(store.segments) == 16
    assert _store_votes(store, feats, queries, params) == want
    store.close()  # in the middle of a merge
    assert not list(folder.glob("*.tmp"))
    # What a crash in the middle of one leaves: its part-written file and fence posts.
    (folder / "seg-000999.bin.tmp").write_bytes(b"x" * 100)
    (folder / "seg-000999.fence").write_bytes(b"x" * 8)
    store = opened()
    assert not (folder / "seg-000999.bin.tmp").exists() and not (folder / "seg-000999.fence").exists()
    assert store.ready and len(store.segments) == 16 and _store_votes(store, feats, queries, params) == want
    steps = 0
    while store.merge_step(budget_s=0.0):
        steps += 1
        if steps % 7 == 0:  # searches between steps (now and then: each costs a second)
            assert _store_votes(store, feats, queries, params) == want
    # 16 of tier 1 -> 4 of tier 2 (72 photos each), which together would pass max_merged.
    assert [m.photos for m in store._mapped] == [72] * 4 and steps > 4 * 6
    assert [crop_store.tier(m.photos, 16, 4) for m in store._mapped] == [2] * 4
    assert not list(folder.glob("*.tmp")) and len(list(folder.glob("seg-*.bin"))) == 4
    assert len(list(folder.glob("seg-*.fence"))) == 4  # the merged segments' fence posts, kept
    store.close()
    store = opened()
    # Mapped with their fence posts read from disk (not made from the keys): what _fence makes.
    for seg in store.segments:
        assert sorted(seg._fences) == list(range(params.hash_tables))
        for t in range(params.hash_tables):
            assert np.array_equal(seg._fences[t], crop_index._fence(seg.keys[t]))
    assert store.ready and store.photos == 288 and _store_votes(store, feats, queries, params) == want
    store.close()
    # A store written before fence posts were kept: its first search makes and keeps them.
    for f in folder.glob("seg-*.fence"):
        f.unlink()
    store = opened()
    assert not any(seg.fenced for seg in store.segments)
    assert _store_votes(store, feats, queries, params) == want
    assert len(list(folder.glob("seg-*.fence"))) == 4
    store.close()
    store = opened()
    assert all(seg.fenced for seg in store.segments)  # read from disk this time
    store.max_merged = 300
    store.merge_all()  # allowed larger, the four make one
    assert [m.photos for m in store._mapped] == [288] and _store_votes(store, feats, queries, params) == want
    store.close()


def test_a_search_goes_on_when_fence_posts_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store without fence posts makes them at its first search; when the disk refuses to
    keep them (full), the search still answers, with them in memory."""
    params = CropParams(min_votes=2)
    feats = _synthetic(300, 9)
    idx = _library(tmp_path, feats)
    folder = crop_store.store_path(idx.path)
    store = CropStore(folder, idx, params)
    assert store.rebuild_step() and store.ready
    _append(store, idx, feats, list(range(1, 201)))
    queries = list(range(201, 301))
    want = _store_votes(store, feats, queries, params)
    store.close()
    for f in folder.glob("seg-*.fence"):
        f.unlink()

    def full(path: Path, fences: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crop_store, "_write_fences", full)
    store = CropStore(folder, idx, params)
    assert _store_votes(store, feats, queries, params) == want and len(want) > 50
    assert all(seg.fenced for seg in store.segments) and not list(folder.glob("seg-*.fence"))
    store.close()
