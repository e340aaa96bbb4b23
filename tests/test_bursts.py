"""Bursts: frames one camera took of one view seconds apart are one group whatever their hash
distance (``core/bursts.py``, ``services/bursts.py``), and nothing else is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dupligoned.core import bursts
from tests import synth
from tests.daemon_support import Daemon, groups, settled, wait_for, write_config

CAMERA = {"make": "NIKON CORPORATION", "model": "NIKON D3200"}


def _scan(folder: Path, **env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "dupligoned.cli.main", "scan", str(folder), "--json", "--reasons", "-q", "--workers", "2"],
        capture_output=True, text=True, check=True, timeout=180, env={**os.environ, **env},
    )
    return json.loads(out.stdout)


def _window(canvas: Image.Image, x: float, y: float, share: float = 0.88) -> Image.Image:
    """The part of ``canvas`` a frame sees: ``share`` of each side, its corner at (x, y) of the
    canvas's width and height."""
    w, h = int(canvas.width * share), int(canvas.height * share)
    left, top = int(x * canvas.width), int(y * canvas.height)
    return canvas.crop((left, top, left + w, top + h))


def _frames(canvas: Image.Image) -> list[Image.Image]:
    """Four frames of a hand-held burst: the camera moved 5-6% between shots; the second is
    shaken (motion blur), the third out of focus; the first is the sharp one."""
    shots = [_window(canvas, 0.0, 0.0), _window(canvas, 0.06, 0.02), _window(canvas, 0.11, 0.05), _window(canvas, 0.05, 0.1)]
    shake = np.asarray(shots[1], np.float32)
    shots[1] = Image.fromarray(sum(np.roll(shake, d, axis=1) for d in range(-4, 5)).__truediv__(9).astype(np.uint8))
    shots[2] = shots[2].filter(ImageFilter.GaussianBlur(2.5))
    shots[3] = shots[3].filter(ImageFilter.GaussianBlur(1.5))
    return shots


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("bursts")
    burst = [synth.save(f, root / "DCIM" / "100NIKON" / f"DSC_{41 + k:04d}.JPG", 90,
                        camera={**CAMERA, "datetime": f"2024:06:01 10:00:0{k}"})
             for k, f in enumerate(_frames(synth.scene(31, (1400, 1000))))]
    # One second later the same camera took another view; a minute later it shot a panorama of
    # three frames overlapping by half (parts of one picture, not copies).
    other = [synth.save(synth.scene(32, (1232, 880)), root / "DCIM" / "100NIKON" / "DSC_0045.JPG", 90,
                        camera={**CAMERA, "datetime": "2024:06:01 10:00:04"})]
    wide = synth.scene(33, (2400, 900))
    pano = [synth.save(wide.crop((x, 0, x + 1200, 900)), root / "DCIM" / "100NIKON" / f"DSC_{46 + k:04d}.JPG", 90,
                       camera={**CAMERA, "datetime": f"2024:06:01 10:01:0{k}"})
            for k, x in enumerate((0, 600, 1200))]
    return {"root": [root], "burst": burst, "other": other, "pano": pano}


def test_a_burst_is_one_group_with_its_sharp_frame_kept(library: dict[str, list[Path]]) -> None:
    result = _scan(library["root"][0])
    frames = [str(p) for p in library["burst"]]
    holding = [c for c in result["clusters"] if set(frames) & set(c["members"])]
    assert len(holding) == 1 and sorted(holding[0]["members"]) == sorted(frames), \
        f"the burst is split or mixed: {[c['members'] for c in holding]}"
    group = holding[0]
    assert group["keep"] == [frames[0]], group["reasons"]
    for f in frames[1:]:
        assert "DSC_0041.JPG" in group["reasons"][f]
    grouped = {m for c in result["clusters"] for m in c["members"]}
    assert not grouped & {str(p) for p in library["other"] + library["pano"]}, \
        "another view or a panorama's frames were grouped"


def test_without_local_features_the_burst_falls_apart(library: dict[str, list[Path]]) -> None:
    """What the stage adds: with it off, the hashes alone do not hold the frames together
    (so the test above shows the stage, not the hashes)."""
    result = _scan(library["root"][0], DUPLIGONE_NO_CROPS="1")
    frames = {str(p) for p in library["burst"]}
    assert not any(frames <= set(c["members"]) for c in result["clusters"])


class _Shot:
    def __init__(self, camera: str | None, taken_at: str | None, content_hash: str) -> None:
        self.camera, self.taken_at, self.content_hash = camera, taken_at, content_hash


def test_candidates_are_one_cameras_shots_close_in_time() -> None:
    shots = [
        _Shot("D3200", "2024:06:01 10:00:00", "a"),
        _Shot("D3200", "2024:06:01 10:00:09", "b"),  # 9 s later: a candidate
        _Shot("D3200", "2024:06:01 10:00:25", "c"),  # 16 s after b: not
        _Shot("iPhone 8", "2024:06:01 10:00:01", "d"),  # another camera
        _Shot(None, "2024:06:01 10:00:01", "e"),  # no camera
        _Shot("D3200", None, "f"),  # no time
        _Shot("D3200", "2024:06:01 10:00:00", "a"),  # the same file twice: the hashes' business
        _Shot("D3200", "garbage", "g"),
    ]
    assert bursts.candidate_pairs(shots) == [(0, 1), (1, 6)]


def test_burst_links_hold_every_frame_of_a_chain_together() -> None:
    assert bursts.burst_links([(0, 1), (1, 2), (5, 6)]) == [(0, 1), (0, 2), (1, 2), (5, 6)]


def _grid(n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(20, 490, (n, 2))


def test_check_burst_takes_a_small_move_and_refuses_zoom_turn_parallax_and_little_overlap() -> None:
    pts = _grid()
    size = (512, 384)

    def moved(dx: float, dy: float, scale: float = 1.0, angle: float = 0.0) -> np.ndarray:
        c, s = scale * np.cos(np.radians(angle)), scale * np.sin(np.radians(angle))
        return np.array([[c, -s, dx], [s, c, dy]])

    def check(m: np.ndarray, jitter: float = 0.3) -> bool:
        pb = pts
        pa = pb @ m[:, :2].T + m[:, 2] + np.random.default_rng(2).normal(0, jitter, pts.shape)
        return bursts.check_burst(m, pa, pb, size, size)

    assert check(moved(25, 10))  # 5% across, 3% down
    assert not check(moved(25, 10, scale=1.25))  # zoomed in between the shots
    assert not check(moved(25, 10, angle=8))
    assert not check(moved(25, 10), jitter=4.0)  # parallax: another place, not the same view moved
    assert not check(moved(256, 0))  # half the frame across: a panorama's next frame
    assert not bursts.check_burst(moved(5, 5), pts[:5] + 5, pts[:5], size, size)  # too few pairs


def test_the_daemon_joins_frames_arriving_later_to_their_burst(tmp_path: Path) -> None:
    """Two blurred frames are in the library; the phone syncs the sharp frame and one more a
    day later: the daemon finds the older frames by camera and time, groups all four, and keeps
    the sharp one."""
    lib = tmp_path / "lib"
    shots = _frames(synth.scene(34, (1400, 1000)))
    names = [lib / "DCIM" / "100NIKON" / f"DSC_{k:04d}.JPG" for k in range(1, 5)]

    def put(k: int) -> Path:
        return synth.save(shots[k], names[k], 90, camera={**CAMERA, "datetime": f"2024:06:01 10:00:0{k}"})

    put(1), put(2)
    loner = synth.save(synth.scene(35, (1232, 880)), lib / "DCIM" / "100NIKON" / "DSC_0009.JPG", 90,
                       camera={**CAMERA, "datetime": "2024:06:01 10:00:05"})
    cfg = write_config(tmp_path, [lib])
    with Daemon(cfg):
        wait_for(lambda: (st := settled(cfg)) and len(st["sessions"]) == 1, 40, "the first scan to be clustered")
        put(0), put(3)
        wait_for(lambda: (st := settled(cfg)) and len(st["sessions"]) == 2, 40, "the new frames to be clustered")
        out = groups(cfg)
    # (The first session keeps its own group of the two older frames: each session is reviewed
    # on its own, as with copies.)
    holding = [c for c in out["clusters"] if str(names[0]) in c["members"]]
    assert len(holding) == 1, [[Path(m).name for m in c["members"]] for c in out["clusters"]]
    assert sorted(holding[0]["members"]) == sorted(str(p) for p in names)
    assert holding[0]["keep"] == [str(names[0])]
    assert not any(str(loner) in c["members"] for c in out["clusters"])
