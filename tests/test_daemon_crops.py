"""Heavy crops in the daemon: the real ``dupligoned`` finds a crop of an old original and the
original of old crops, keeps the original, and keeps the features across a restart.

Also, in-process: the daemon's search over stored segments finds exactly the votes the one-shot
index (``CropIndex``) finds for the same photos.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dupligoned.core.crop_index import CropIndex, make_segment, segment_votes, top_candidates
from dupligoned.core.crops import CropParams, LocalFeatures, descriptors_of_blobs, quantise
from tests.daemon_support import Daemon, groups, rows, settled, status, wait_for, write_config
from tests.test_crops import _aspect, _frac, _src


def _save(im: Image.Image, path: Path, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=quality)
    return path


def _crops(im: Image.Image, folder: Path, name: str) -> list[Path]:
    """A 16:9 crop, and a square crop shared at lower resolution (as a messenger does)."""
    wide = _aspect(im, 16 / 9, 0.3) if im.width / im.height < 16 / 9 else _aspect(im, 4 / 3, 0.6)
    square = _aspect(im, 1.0, 0.7)
    square.thumbnail((900, 900), Image.Resampling.LANCZOS)
    return [_save(wide, folder / f"{name}_16x9.jpg", 85), _save(square, folder / f"{name}_square.jpg", 80)]


def _settled_with(cfg: Path, sessions: int) -> dict | None:
    st = settled(cfg)
    return st if st and len(st["sessions"]) == sessions else None


def _check_group(cfg: Path, original: Path, crops: list[Path], loners: list[Path]) -> None:
    out = groups(cfg)
    with_orig = [c for c in out["clusters"] if str(original) in c["members"]]
    assert len(with_orig) == 1, out
    c = with_orig[0]
    assert sorted(c["members"]) == sorted(str(p) for p in [original, *crops]), c
    assert c["keep"] == [str(original)]
    for p in crops:
        assert c["reasons"][str(p)] == f"cropped copy of {original.name}"
    grouped = {m for cl in out["clusters"] for m in cl["members"]}
    assert not grouped & {str(p) for p in loners}, out


def _features_ok(cfg: Path, n: int) -> list:
    feats = rows(cfg, "SELECT f.photo_id, length(f.data) AS size, f.crops_searched, p.analyses "
                      "FROM photo_features f JOIN photos p ON p.id = f.photo_id")
    assert len(feats) == n
    for r in feats:
        assert 0 < r["size"] <= 3072 and r["crops_searched"] == 1 and r["analyses"] == 1
    return feats


def test_crops_arriving_after_their_original_join_its_group_and_survive_a_restart(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    original = _save(_src(1), lib / "Camera" / "IMG_0001.jpg", 95)
    loners = [_save(_src(2), lib / "Camera" / "IMG_0002.jpg")]
    cfg = write_config(tmp_path, [lib])
    d = Daemon(cfg)
    with d:
        wait_for(lambda: _settled_with(cfg, 1), 40, "the first scan to be clustered")
        crops = _crops(_src(1), lib / "Shared", "edit")
        loners.append(_save(_src(4), lib / "Shared" / "other.jpg"))
        # A second shot zoomed 2× into the scene: inside it, but with more pixels for what it
        # shows than the original has, so not a crop of it.
        im = _src(1)
        loners.append(_save(_frac(im, 0.25, 0.25, 0.75, 0.75).resize(im.size, Image.Resampling.LANCZOS),
                            lib / "Camera" / "IMG_0003.jpg", 92))
        wait_for(lambda: _settled_with(cfg, 2), 40, "the second batch to be clustered")
        _check_group(cfg, original, crops, loners)
        before = _features_ok(cfg, 6)
        d.stop()
    with Daemon(cfg):
        wait_for(lambda: settled(cfg), 30, "the restarted daemon to settle")
        assert status(cfg)["photos"] == 6
        assert _features_ok(cfg, 6) == before  # nothing analysed or searched again
        _check_group(cfg, original, crops, loners)
        found = rows(cfg, "SELECT c.path AS crop, o.path AS original FROM crop_pairs x "
                          "JOIN photos c ON c.id = x.crop_id JOIN photos o ON o.id = x.original_id")
        assert {(r["crop"], r["original"]) for r in found} >= {(str(p), str(original)) for p in crops}


def test_an_original_arriving_after_its_crops_gathers_them(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    crops = _crops(_src(3), lib / "Shared", "story")
    loners = [_save(_src(0), lib / "Shared" / "other.jpg")]
    cfg = write_config(tmp_path, [lib])
    with Daemon(cfg):
        wait_for(lambda: _settled_with(cfg, 1), 40, "the first scan to be clustered")
        assert not [c for c in groups(cfg)["clusters"] if set(c["members"]) & {str(p) for p in crops}]
        original = _save(_src(3), lib / "Camera" / "P0003.jpg", 95)
        wait_for(lambda: _settled_with(cfg, 2), 40, "the original's batch to be clustered")
        _check_group(cfg, original, crops, loners)


def _synthetic(n: int, seed: int) -> list[LocalFeatures]:
    """Photos sharing descriptors from a small pool (so buckets fill and candidates appear)."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (400, 16), dtype=np.uint8)
    out = []
    for _ in range(n):
        desc = pool[rng.integers(0, len(pool), 60)].copy()
        flip = rng.integers(0, 16, (60, 2))
        desc[np.arange(60), flip[:, 0]] ^= np.uint8(1) << flip[:, 1].astype(np.uint8) % 8
        alt = pool[rng.integers(0, len(pool), (1, 60))]  # each keypoint described once more
        out.append(quantise(rng.uniform(0, 500, (60, 2)), desc, 512, 384, np.zeros((16, 16), np.uint8), alt))
    return out


@pytest.mark.parametrize("max_bucket,share", [(3, 32.0), (64, 32.0), (3, 2800.0)])  # stop words: fixed, none, scaled
def test_the_stored_segments_propose_what_the_whole_index_proposes(max_bucket: int, share: float) -> None:
    """The daemon's search (the library as stored blobs, in segments) and the one-shot scan's
    whole index agree on every vote and candidate, with stop words at work, fixed or grown with
    the library (``CropParams.bucket_cap``: 2,800 times a bucket's even share is 6 here, not 3)."""
    params = CropParams(max_bucket=max_bucket, stop_word_share=share, min_votes=2)
    feats = _synthetic(600, 1)
    index = CropIndex(params)
    index.add(feats)
    assert params.bucket_cap(index.descriptors) == (6 if share > 1e3 else max_bucket)
    query_ids = list(range(500, 600))
    want = index.votes([feats[i] for i in query_ids], np.array(query_ids))
    segments = []
    for b in range(0, len(feats), 128):  # the library in blocks, as stored blobs
        desc, owner = descriptors_of_blobs([f.to_bytes() for f in feats[b : b + 128]])
        segments.append(make_segment(desc, owner + b, params))
    got = segment_votes([feats[i] for i in query_ids], segments, params, np.array(query_ids))
    assert len(top_candidates(want, params)) > 50
    if share > 1e3:  # the grown cap lets through votes the fixed one stops
        fixed = segment_votes([feats[i] for i in query_ids], segments, replace(params, stop_word_share=0.0),
                              np.array(query_ids))
        assert got.dist.sum() > fixed.dist.sum()
    assert sorted(zip(got.i.tolist(), got.j.tolist(), got.dist.tolist(), strict=True)) == \
        sorted(zip(want.i.tolist(), want.j.tolist(), want.dist.tolist(), strict=True))
