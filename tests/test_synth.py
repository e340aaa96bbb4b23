"""The test photos behave like photos: what the rest of the suite relies on ``tests/synth.py`` for."""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image, ImageOps

from dupligoned.adapters import orb
from dupligoned.core.hashing import distance
from dupligoned.services.analyse import analyse_file
from tests import synth

SIZE = (1024, 768)


def test_scenes_are_deterministic_and_unrelated_scenes_hash_far_apart(tmp_path):
    assert np.array_equal(np.asarray(synth.scene(3, SIZE)), np.asarray(synth.scene(3, SIZE)))
    infos = [analyse_file(str(synth.photo(tmp_path / f"s{k}.jpg", k, SIZE))) for k in range(8)]
    d = [distance(a.phash, a.dhash, b.phash, b.dhash) for a, b in itertools.combinations(infos, 2)]
    # Real photos: the closest pair in different groups of the dev corpus is 14.5 apart.
    assert min(d) > 12 and float(np.median(d)) > 20
    for info in infos:  # ORB finds its full budget of keypoints, as on a real photo
        feats = orb.features_of(info.extra)
        assert feats is not None and len(feats) >= 90


def test_every_group_kind_stays_near_its_original(tmp_path):
    for n, kind in enumerate(synth.KINDS):
        paths = synth.group(kind, 40 + n, tmp_path / kind, size=SIZE)
        assert len(paths) >= 2 and all(p.exists() for p in paths)
        infos = [analyse_file(str(p)) for p in paths]
        worst = max(distance(infos[0].phash, infos[0].dhash, i.phash, i.dhash) for i in infos[1:])
        limit = {"crop": 64, "burst": 12, "degrade": 6, "edit": 6}.get(kind, 3)
        assert worst <= limit, (kind, worst)


def test_formats_orientation_and_camera_fields(tmp_path):
    im = synth.scene(5, SIZE)
    for suffix in (".jpg", ".png", ".webp", ".heic", ".tif"):
        p = synth.save(im, tmp_path / f"a{suffix}")
        import pillow_heif

        pillow_heif.register_heif_opener()
        with Image.open(p) as back:
            assert back.size == SIZE
    for o in (2, 3, 6, 8):
        p = synth.save(im, tmp_path / f"o{o}.jpg", 95, orientation=o, camera=synth.CAMERA)
        with Image.open(p) as raw:
            assert raw.getexif()[0x0112] == o
            assert raw.getexif()[0x0110] == synth.CAMERA["model"]
            shown = np.asarray(ImageOps.exif_transpose(raw), np.float32)
        assert np.abs(shown - np.asarray(im, np.float32)).mean() < 4  # the viewer sees the scene
    info = analyse_file(str(synth.save(im, tmp_path / "cam.jpg", camera={**synth.CAMERA, "gps": (48.85, 2.35)})))
    assert info.has_gps and info.camera and "EOS 80D" in info.camera


def test_burst_shots_differ_a_little_and_crops_are_inside(tmp_path):
    a, b = np.asarray(synth.burst(7, 0, SIZE), np.float32), np.asarray(synth.burst(7, 1, SIZE), np.float32)
    assert 2 < np.abs(a - b).mean() < 40
    im = synth.scene(7, SIZE)
    assert synth.CROPS["quarter"](im).size == (512, 384)
    assert max(synth.CROPS["shared"](im).size) <= 1080
    sq = synth.CROPS["square"](im)
    assert sq.width == sq.height
