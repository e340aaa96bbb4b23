"""The keeper keeps what a person would keep, and says why the others can go."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dupligoned.core.keeper import decide
from dupligoned.core.model import PhotoInfo
from dupligoned.core.quality import Quality
from dupligoned.services.analyse import analyse_file
from dupligoned.services.decide import decide_group
from tests import corpus, synth

SOURCE = corpus.ORIGINAL  # 1024×768 JPEG, a pristine original drawn by tests/synth.py


def _variants(folder: Path) -> dict[str, Path]:
    src = Image.open(corpus.path(SOURCE)).convert("RGB")
    out = {"original": folder / "DSC_0001.jpg"}
    src.save(out["original"], quality=95)
    rng = np.random.default_rng(0)
    arr = np.asarray(src).astype(np.float32)
    made = {
        "blurred": src.filter(ImageFilter.GaussianBlur(2.5)),
        "noisy": Image.fromarray(np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)),
        "dark": Image.fromarray((arr * 0.35).astype(np.uint8)),
    }
    for name, im in made.items():
        out[name] = folder / f"{name}.jpg"
        im.save(out[name], quality=88)
    out["whatsapp"] = folder / "IMG-20190301-WA0013.jpg"
    src.save(out["whatsapp"], quality=20)
    out["resized"] = folder / "small.jpg"
    src.resize((512, 384), Image.Resampling.LANCZOS).save(out["resized"], quality=90)
    return out


def test_the_pristine_original_is_kept_over_degraded_copies(tmp_path: Path) -> None:
    v = _variants(tmp_path)
    photos = [analyse_file(str(p)) for p in v.values()]
    decision = decide_group(photos)
    assert decision.keep == [str(v["original"])]
    why = {Path(x.path).stem: x.reason for x in decision.verdicts}
    assert why["small"].startswith("lower resolution 512×384 vs 1024×768")
    assert "heavily compressed" in why["IMG-20190301-WA0013"]
    assert "darker" in why["dark"]
    assert "blurrier" in why["blurred"]
    assert "noisier" in why["noisy"]


def test_keeper_does_not_depend_on_member_order(tmp_path: Path) -> None:
    v = _variants(tmp_path)
    photos = [analyse_file(str(p)) for p in v.values()]
    first = decide_group(photos)
    again = decide_group(list(reversed(photos)))
    assert first == again


def test_lossless_copy_of_the_original_is_an_acceptable_keeper(tmp_path: Path) -> None:
    src = Image.open(corpus.path(SOURCE)).convert("RGB")
    src.save(tmp_path / "a.png")
    src.save(tmp_path / "b.jpg", quality=70)
    src.save(tmp_path / "c.webp", quality=75)
    decision = decide_group([analyse_file(str(tmp_path / n)) for n in ("a.png", "b.jpg", "c.webp")])
    assert decision.keep == [str(tmp_path / "a.png")]
    why = {Path(v.path).name: v.reason for v in decision.verdicts}
    # The JPEG is a.png compressed (saving a.png at its table gives its very coefficients).
    assert why["b.jpg"].startswith("JPEG copy of lossless a.png (saving a.png at JPEG quality 70")
    assert why["c.webp"] == "lossy copy of lossless a.png"


def _info(path: str, w: int = 4000, h: int = 3000, content: str | None = None, **kw: object) -> PhotoInfo:
    base = PhotoInfo(path=path, size_bytes=w * h // 4, width=w, height=h, format="JPEG", lossless=False,
                     jpeg_quality=92, content_hash=content or path, phash=0, dhash=0,
                     quality=Quality(sharpness=300, brightness=120, contrast=50, noise=2))
    return replace(base, **kw)  # type: ignore[arg-type]


def test_protected_photos_are_never_deleted_and_win_among_equals() -> None:
    photos = [_info("/lib/a/IMG_1.jpg"), _info("/archive/IMG_1.jpg", protected=True)]
    decision = decide(photos)
    assert decision.keep == ["/archive/IMG_1.jpg"]
    bigger_elsewhere = [_info("/lib/big.jpg"), _info("/archive/small.jpg", 1000, 750, protected=True)]
    d2 = decide(bigger_elsewhere)
    assert sorted(d2.keep) == ["/archive/small.jpg", "/lib/big.jpg"]  # protection deletes nothing
    assert d2.delete == []


def test_identical_files_keep_the_one_that_does_not_look_like_a_copy() -> None:
    photos = [_info("/p/IMG_2000 (1).jpg", content="x"), _info("/p/Copy of IMG_2000.jpg", content="x"),
              _info("/p/IMG_2000.jpg", content="x")]
    decision = decide(photos)
    assert decision.keep == ["/p/IMG_2000.jpg"]
    assert all(v.reason == "identical copy of IMG_2000.jpg" for v in decision.verdicts if not v.keep)


def test_every_group_keeps_exactly_one_unprotected_photo_and_gives_reasons() -> None:
    photos = [_info(f"/p/{k}.jpg", 4000 - 500 * k, 3000 - 375 * k) for k in range(4)]
    decision = decide(photos)
    assert decision.keep == ["/p/0.jpg"]
    assert [v.reason for v in decision.verdicts if not v.keep] == [
        "lower resolution 3500×2625 vs 4000×3000 of 0.jpg", "lower resolution 3000×2250 vs 4000×3000 of 0.jpg",
        "lower resolution 2500×1875 vs 4000×3000 of 0.jpg"]


def test_burst_keeps_the_sharpest_frame(tmp_path: Path) -> None:
    # Consecutive frames of a burst (a hand-held camera, a walking subject); blur one of them.
    paths = [synth.save(synth.burst(60, k, (1024, 768)), tmp_path / f"frame{k}.jpg", 92) for k in range(3)]
    buf = io.BytesIO()
    Image.open(paths[1]).filter(ImageFilter.GaussianBlur(3)).save(buf, "JPEG", quality=92)
    paths[1].write_bytes(buf.getvalue())
    decision = decide_group([analyse_file(str(p)) for p in paths])
    assert str(paths[1]) in decision.delete


def test_a_proven_source_is_not_dropped_for_a_quality_figure() -> None:
    """The original was provably the source of one copy (it carries the original's compression);
    another copy reads twice as sharp with a structured difference: the blur rule alone would call
    the original the blurrier copy. Provenance outranks a quality figure."""
    from dupligoned.core.keeper import Comparison, KeeperParams
    from dupligoned.core.provenance import Lineage

    photos = [_info("/lib/DCIM/IMG_1.JPG", camera="Canon", quality=Quality(300, 120, 50, 2)),
              _info("/lib/Export/IMG_1.png", format="PNG", lossless=True, jpeg_quality=None,
                    quality=Quality(320, 121, 50, 2)),
              _info("/lib/Edited/crisp.jpg", camera="Canon", jpeg_quality=97, quality=Quality(900, 120, 50, 3))]
    n = len(photos)
    diff = np.full((n, n), 4.0)
    white = np.full((n, n), 3.0)  # structured differences: what a blur leaves
    np.fill_diagonal(diff, 0.0)
    comparison = Comparison(diff, white, lineage=(Lineage(1, 0, 0.9, "carried"),))
    decision = decide(photos, comparison)
    assert decision.keep == ["/lib/DCIM/IMG_1.JPG"]
    why = {v.path: v.reason for v in decision.verdicts}
    assert why["/lib/Export/IMG_1.png"].startswith("edited copy of IMG_1.JPG")
    # Without the history the same figures make the original the "blurrier copy": the test bites.
    plain = decide(photos, Comparison(diff, white), KeeperParams())
    assert plain.keep != ["/lib/DCIM/IMG_1.JPG"]


def test_a_member_gone_or_swapped_for_a_link_since_analysis_is_decided_without_it(tmp_path: Path) -> None:
    """A file deleted, or replaced by a link, between its analysis and its group's decision (a
    daemon started on a library changed while it was stopped): the closer look reads around it,
    never through the link, and the daemon goes on."""
    from dupligoned.adapters.decode import decode_luma
    from dupligoned.errors import NotAnImage, UnreadableFile

    v = _variants(tmp_path)
    photos = [analyse_file(str(p)) for p in v.values()]
    v["noisy"].unlink()
    v["blurred"].unlink()
    v["blurred"].symlink_to(v["original"])
    with pytest.raises(UnreadableFile):
        decode_luma(str(v["noisy"]))
    with pytest.raises(NotAnImage, match="link"):
        decode_luma(str(v["blurred"]))
    decision = decide_group(photos)
    assert decision.keep == [str(v["original"])]
    assert len(decision.verdicts) == len(photos)


def test_frames_of_a_burst_are_chosen_by_quality_not_as_copies() -> None:
    """Three frames a camera named and timed apart, as alike in hashes as copies: the sharp one
    stays, whatever JPEG quality or medoid says (each frame is an original). A copy a phone saved
    under a new camera-style name, with no capture time of its own, is still a copy."""
    frame = dict(camera="NIKON D3200", quality=Quality(40, 120, 50, 2))
    photos = [_info("/lib/DCIM/BURST/DSC_8456.JPG", taken_at="2024:06:01 10:00:00", **frame),
              _info("/lib/DCIM/BURST/DSC_8457.JPG", taken_at="2024:06:01 10:00:01", camera="NIKON D3200",
                    jpeg_quality=90, quality=Quality(600, 120, 50, 2)),
              _info("/lib/DCIM/BURST/DSC_8458.JPG", taken_at="2024:06:01 10:00:02", jpeg_quality=97, **frame)]
    decision = decide(photos)
    assert decision.keep == ["/lib/DCIM/BURST/DSC_8457.JPG"]
    why = {v.path.rsplit("/", 1)[1]: v.reason for v in decision.verdicts}
    assert why["DSC_8458.JPG"].startswith("weaker shot than DSC_8457.JPG")
    saved = [_info("/lib/Pictures/IMG_8760.JPG", taken_at="2023:12:08 19:06:04", camera="Canon EOS 600D", jpeg_quality=89),
             _info("/lib/DCIM/Camera/IMG_7172.JPG", jpeg_quality=79, quality=Quality(320, 120, 50, 2))]
    d2 = decide(saved)
    assert d2.keep == ["/lib/Pictures/IMG_8760.JPG"]
    assert not any(v.reason.startswith("weaker shot") for v in d2.verdicts)


def test_a_heavily_edited_copy_far_in_hashes_does_not_outrank_the_cameras_file(tmp_path: Path) -> None:
    """A caption, local contrast and a vignette move a copy as far from its original in hashes
    as another shot, so the group is ranked as distinct shots, by quality score: the edit, saved
    at a high quality with no camera data and a new name, scored higher than the camera's JPEG
    at quality 72 and was kept. The camera's file now comes first, and the copy's reason says
    what is known (an edit or another shot) and names it; the group is flagged for a look."""
    from PIL import ImageDraw

    from dupligoned.core import keeper

    im = synth.scene(77, (1024, 768))
    orig = synth.save(im, tmp_path / "DCIM" / "100CANON" / "IMG_4821.JPG", 72,
                      camera={"make": "Canon", "model": "Canon EOS R6", "datetime": "2021:05:02 17:20:11"})
    a = np.asarray(im, np.float32)
    yy, xx = np.mgrid[0:768, 0:1024]
    fall = 1 - 0.45 * np.clip((((xx - 512) / 512) ** 2 + ((yy - 384) / 384) ** 2) / 2, 0, 1)
    edit = Image.fromarray(np.clip((a - a.mean()) * 1.5 + a.mean() + 10, 0, 255).astype(np.uint8))
    edit = Image.fromarray(np.clip(np.asarray(edit, np.float32) * fall[..., None], 0, 255).astype(np.uint8))
    ImageDraw.Draw(edit).rectangle((0, 660, 1024, 768), fill=(250, 250, 250))  # a caption band
    copy = synth.save(edit, tmp_path / "Desktop" / "9c5e0261d8.jpg", 96)
    photos = [analyse_file(str(orig)), analyse_file(str(copy))]
    assert keeper.pair_distances(photos)[0] > keeper.KeeperParams().shot_distance  # ranked as shots
    decision = decide_group(photos)
    assert decision.keep == [str(orig)]
    why = {Path(v.path).name: v.reason for v in decision.verdicts}
    assert why["9c5e0261d8.jpg"].startswith("edited copy or another shot of IMG_4821.JPG, the camera's file")
    assert decision.uncertain


def test_names_cameras_write_are_told_from_names_copies_get() -> None:
    from dupligoned.core.keeper import name_evidence

    in_dcim = ["DCIM/100CANON/IMG_0497.JPG", "DCIM/100OLYMP/PC065609.JPG", "DCIM/100_PANA/P1050907.JPG",
               "DCIM/Camera/PXL_20180325_175115130.jpg", "DCIM/Camera/20191029_093421.jpg", "DCIM/100GOPRO/GOPR0042.JPG",
               "DCIM/100NIKON/DSC_0041.JPG", "DCIM/100MSDCF/DSC01234.JPG", "DCIM/Camera/IMG_20190415_170047.jpg"]
    assert [name_evidence(p) for p in in_dcim] == [0] * len(in_dcim)
    assert name_evidence("2016/Holiday/DSCF2504.JPG") == 1
    copies = ["Edited/IMG_0497-edited.jpg", "Pictures/IMG_0497_2.jpg", "Downloads/image (72).heic",
              "WhatsApp Images/IMG-20190301-WA0013.jpg", "Desktop/3f87673c67.jpg", "DCIM/Camera/IMG_0497 (1).JPG",
              "Telegram/photo_2013-12-11_01-12-37.jpg", "DCIM/PC06560.JPG"]
    assert [name_evidence(p) for p in copies] == [2] * len(copies)


def test_a_light_crop_with_noise_added_is_not_the_sharper_original(tmp_path: Path) -> None:
    """A copy cropped by a few per cent and given grain, stretched back to its source's frame
    for the pixel comparison, no longer lines up with it: its grain read as detail the original
    lacked, and the camera's file was dropped as the "blurrier copy". Pixel rules now compare
    only members that frame the picture alike (one aspect ratio). Not covered: a crop that
    keeps the aspect ratio lines up as badly and cannot be told this way."""
    wrong = []
    for seed in (11, 12, 13):
        im = synth.scene(seed, (1024, 768))
        d = tmp_path / str(seed)
        orig = synth.save(im, d / "DCIM" / "Camera" / "IMG_2766.JPG", 70,
                          camera={"make": "Apple", "model": "iPhone 8", "datetime": "2020:08:02 08:18:04"})
        with Image.open(orig) as o:
            back = o.convert("RGB")
        cut = synth.noise(back.crop((60, 8, 1024 - 40, 768 - 8)), 7, seed)  # 10% off the width, 2% off the height
        copy = synth.save(cut, d / "Backup" / "photos" / "IMG_2766.png")
        decision = decide_group([analyse_file(str(orig)), analyse_file(str(copy))])
        if decision.keep != [str(orig)]:
            wrong.append((seed, [v.reason for v in decision.verdicts]))
    assert not wrong, wrong


def test_the_cameras_file_is_not_a_darker_copy_of_brightened_edits(tmp_path: Path) -> None:
    """Two edits brightened the photo (a shadow lift, a gain) and were saved high without camera
    data under new names: the camera's JPEG became the one "outlier" in brightness and was
    dropped as the "darker copy". A file with the camera's data and name cannot have been made
    from files that have neither (there was no camera data to give it)."""
    im = synth.scene(91, (1024, 768))
    orig = synth.save(im, tmp_path / "DCIM" / "100MEDIA" / "DSCF1098.JPG", 72,
                      camera={"make": "FUJIFILM", "model": "X-T3", "datetime": "2019:04:12 09:10:11"})
    with Image.open(orig) as o:
        a = np.asarray(o.convert("RGB"), np.float32) / 255.0
    lifted = Image.fromarray(np.clip(255 * (a + 0.3 * a * (1 - a) ** 2 * 4), 0, 255).astype(np.uint8))
    gained = Image.fromarray(np.clip(255 * a * 1.35, 0, 255).astype(np.uint8))
    # ... each cropped a little, so that no pixel-level history ties them to it.
    copies = [synth.save(lifted.crop((30, 10, 1004, 758)), tmp_path / "Desktop" / "a81c07e2f4.jpg", 94),
              synth.save(synth.noise(gained.crop((12, 40, 1000, 740)), 3, 91), tmp_path / "Downloads" / "image (12).jpg", 92)]
    decision = decide_group([analyse_file(str(p)) for p in [orig, *copies]])
    assert decision.keep == [str(orig)], [v.reason for v in decision.verdicts]


def test_an_editors_lossless_export_that_kept_the_exif_does_not_outrank_the_cameras_jpeg(tmp_path: Path) -> None:
    """An editor sharpened and denoised the camera's JPEG and exported a PNG that keeps the
    camera's EXIF with its own name in Software: "camera data" on both sides, and the lossless
    PNG ranked first. Camera data with an editor's mark no longer counts as the camera's."""
    camera = {"make": "Apple", "model": "iPhone 8", "datetime": "2020:07:01 12:00:00"}
    wrong = []
    for seed in (41, 42):
        im = synth.scene(seed, (900, 700))
        orig = synth.save(im, tmp_path / str(seed) / "Photos" / "2020" / "IMG_7283.JPG", 78, camera=camera)
        with Image.open(orig) as o:
            edited = o.convert("RGB").filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.UnsharpMask(2, 150, 2))
        ex = synth.exif(camera=camera)
        ex[0x0131], ex[0x0132] = "Adobe Photoshop Lightroom Classic 12.0 (Windows)", "2021:08:14 19:00:00"
        png = synth.save(edited, tmp_path / str(seed) / "Downloads" / "image (97).png", exif_block=ex)
        decision = decide_group([analyse_file(str(orig)), analyse_file(str(png))])
        if decision.keep != [str(orig)]:
            wrong.append((seed, [v.reason for v in decision.verdicts]))
    assert not wrong, wrong
