"""Provenance: which copy was made from which, read from compression history, and the keeper's
reasons that say so with the very figures the review card shows."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from dupligoned.adapters.decode import decode_luma
from dupligoned.core import provenance as pv
from dupligoned.services.review import card_figures
from dupligoned.services.scan import scan

from . import synth

CAMERA = dict(synth.CAMERA, width=1024, height=768)


def _decoded(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_ijg_tables_match_what_pillow_writes() -> None:
    for q in (50, 75, 90, 98):
        with Image.open(io.BytesIO(_jpeg(synth.scene(1, (64, 64)), q))) as im:
            assert tuple(im.quantization[0]) == pv.ijg_table(q)


def test_lineage_reads_conversions_resaves_and_jpeg_ghosts(tmp_path: Path) -> None:
    scene = synth.scene(3, (640, 480))
    orig = synth.save(scene, tmp_path / "IMG_0001.JPG", quality=75)
    synth.save(_decoded(orig), tmp_path / "conv.png")
    synth.save(_decoded(orig), tmp_path / "resave.jpg", quality=95)
    synth.save(synth.noise(_decoded(orig), 6), tmp_path / "noisy.jpg", quality=95)
    other = synth.scene(4, (640, 480))
    synth.save(other, tmp_path / "master.png")  # a lossless master, and its JPEG export
    synth.save(other, tmp_path / "export.jpg", quality=70)
    names = ["IMG_0001.JPG", "conv.png", "resave.jpg", "noisy.jpg", "master.png", "export.jpg"]
    planes = [decode_luma(str(tmp_path / n)) for n in names]
    found = {(names[li.child], names[li.parent])
             for li in pv.quantiser_lineage([pv.block_dct(p.raw) for p in planes], [p.jpeg_table for p in planes])}
    assert ("conv.png", "IMG_0001.JPG") in found  # keeps the original's quantiser
    assert ("resave.jpg", "IMG_0001.JPG") in found  # double quantisation: 75 then 95
    assert ("export.jpg", "master.png") in found  # the master saved at the export's table
    # Never the other way round, and noise added after decoding erases the history it would carry.
    children = {c for c, _ in found}
    assert "IMG_0001.JPG" not in children and "master.png" not in children and "noisy.jpg" not in children
    assert pv.same_pixels(planes[1].raw, planes[0].raw)
    assert not pv.same_pixels(planes[3].raw, planes[0].raw)


def _library(root: Path) -> dict[str, Path]:
    """A camera JPEG at quality 78 with EXIF and what people make of it, each saved higher."""
    scene = synth.scene(11, (1024, 768))
    lib = {"original": synth.save(scene, root / "DCIM" / "IMG_0001.JPG", quality=78, camera=CAMERA)}
    pixels = _decoded(lib["original"])
    lib["png"] = synth.save(pixels, root / "Export" / "IMG_0001.png")
    lib["resave"] = synth.save(pixels, root / "Edited" / "IMG_0001-edited.jpg", quality=95)
    lib["noisy"] = synth.save(synth.noise(pixels, 7, seed=2), root / "Edited" / "grain.jpg", quality=96)
    lib["blurred"] = synth.save(synth.blur(pixels, 2.5), root / "Edited" / "soft.jpg", quality=97)
    lib["dark"] = synth.save(synth.brightness(pixels, 0.45), root / "Edited" / "dark.jpg", quality=95)
    lib["heic"] = synth.save(pixels, root / "Phone" / "IMG_0001.heic", quality=90)
    # Edits that make a copy look better by the old quality rules, each saved higher than 78.
    lib["sharpened"] = synth.save(pixels.filter(ImageFilter.UnsharpMask(2, 150, 0)), root / "Edited" / "crisp.jpg",
                                  quality=96)
    lib["gamma"] = synth.save(_gamma(pixels, 0.7), root / "Export" / "brighter.png")
    lib["chat"] = synth.save(synth.resize(pixels, 640), root / "WhatsApp" / "IMG-20210612-WA0001.jpg", quality=60)
    synth.photo(root / "DCIM" / "IMG_0002.JPG", 12, (1024, 768), quality=80)
    return lib


def _gamma(im: Image.Image, g: float) -> Image.Image:
    a = np.asarray(im, dtype=np.float64) / 255.0
    return Image.fromarray(np.clip(255.0 * a ** g + 0.5, 0, 255).astype(np.uint8))


_FIGURE = re.compile(r"\((sharpness|brightness|noise|quality score) ([\d.]+) vs ([\d.]+)\)")


def test_the_camera_original_is_kept_and_reasons_quote_the_cards_figures(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    proc = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "scan", str(tmp_path / "lib"), "--json",
                           "--reasons", "-q", "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (cluster,) = json.loads(proc.stdout)["clusters"]
    assert set(cluster["members"]) == {str(p) for p in lib.values()}
    assert cluster["keep"] == [str(lib["original"])]
    why = {Path(p).name: r for p, r in cluster["reasons"].items()}
    assert why["IMG_0001.png"] == "PNG conversion of IMG_0001.JPG (identical pixels; no camera data)"
    assert why["IMG_0001-edited.jpg"] == "re-saved from IMG_0001.JPG (first saved at JPEG quality 78, then 95)"
    assert why["IMG_0001.heic"].startswith("HEIC re-encode of IMG_0001.JPG")
    assert why["grain.jpg"].startswith("noisier copy of IMG_0001.JPG")
    # A gamma edit keeps the original's compression history (its lattice, or its quantisation
    # error once the edit is undone): made from it, whatever lossless format it was saved in.
    assert re.match(r"(PNG conversion|edited copy) of IMG_0001\.JPG \((it keeps|made from it)", why["brighter.png"]), \
        why["brighter.png"]
    # Sharper by the numbers, yet it holds nothing the original lacks: never the keeper.
    assert "IMG_0001.JPG" in why["crisp.jpg"], why["crisp.jpg"]
    assert why["crisp.jpg"].startswith(("sharpened copy of IMG_0001.JPG (sharpness", "edited copy of IMG_0001.JPG")), \
        why["crisp.jpg"]
    # The overview's filter has a word for each of these reasons, not "other".
    from dupligoned.services.review import reason_kind
    assert {n: reason_kind(r) for n, r in why.items() if n in ("crisp.jpg", "IMG_0001.heic", "IMG_0001.png")} == {
        "crisp.jpg": reason_kind(why["crisp.jpg"]), "IMG_0001.heic": "re-encoded", "IMG_0001.png": "re-encoded"}
    assert reason_kind(why["crisp.jpg"]) in ("sharpened", "edited")

    # The same scan in-process: every reason names a kept photo, and each figure it quotes is the
    # one the review card shows for that photo (card_figures is what the page renders).
    result = scan([str(tmp_path / "lib")], workers=1)
    cards = {p.path: card_figures(p) for p in result.photos}
    (group,) = result.groups
    kept = {Path(p).name for p in group.keep}
    by_name = {Path(p.path).name: p.path for p in result.photos}
    checked = 0
    for v in group.verdicts:
        if v.keep:
            continue
        named = [n for n in by_name if n in v.reason]
        assert any(n in kept for n in named), v.reason
        for label, mine, theirs in _FIGURE.findall(v.reason):
            key = {"quality score": "score"}.get(label, label)
            other = next(n for n in named if n != Path(v.path).name)
            shown = "{:.2f}" if key == "score" else "{}"  # the card: score "%.2f", the rest as they are
            assert mine == shown.format(cards[v.path][key]), (v.reason, cards[v.path])
            assert theirs == shown.format(cards[by_name[other]][key]), (v.reason, cards[by_name[other]])
            checked += 1
        for first, then in re.findall(r"JPEG quality (\d+), then (\d+)", v.reason):
            parent = next(n for n in named if n != Path(v.path).name)
            assert int(first) == cards[by_name[parent]]["jpeg_quality"]
            assert int(then) == cards[v.path]["jpeg_quality"]
            checked += 1
    assert checked >= 3


def test_same_pixels_allows_only_colour_rounding() -> None:
    a = (np.arange(64 * 64).reshape(64, 64) % 200).astype(np.uint8)
    b = a.copy()
    b[::7, ::5] += 1
    assert pv.same_pixels(a, b)
    b[::3, ::3] += 5
    assert not pv.same_pixels(a, b)


def _edited(seed: int) -> tuple[np.ndarray, Image.Image]:
    """A camera-like JPEG (quality 80) of a drawn scene: its luma plane and its decoded pixels."""
    buf = io.BytesIO(_jpeg(synth.noise(synth.scene(seed, (512, 384)), 1.5, seed=seed), 80))
    with Image.open(buf) as im:
        pixels = im.convert("RGB")
        im.draft("L", im.size)
        luma = np.asarray(im.convert("L"))
    return luma, pixels


def _luma(im: Image.Image, quality: int | None = None) -> np.ndarray:
    if quality is not None:
        im = Image.open(io.BytesIO(_jpeg(im, quality)))
    return np.asarray(im.convert("L"))


def test_a_copy_carries_its_sources_quantisation_error_one_way_only() -> None:
    parent, pixels = _edited(21)
    table = pv.ijg_table(80)
    edited = _luma(_gamma(pixels, 0.75))  # an exposure edit, saved lossless
    stat = pv.carried_error(parent, table, edited)
    assert stat is not None and stat < pv.DESCENT
    # Nothing made before the JPEG can predict its error: a source it was saved from, a sibling.
    source = np.asarray(synth.noise(synth.scene(21, (512, 384)), 1.5, seed=21).convert("L"))
    assert pv.carried_error(parent, table, source) > 2 * pv.DESCENT
    other, _ = _edited(22)
    assert pv.carried_error(parent, table, other) > 2 * pv.DESCENT
    # Added noise cannot be undone: no evidence either way (the noise rule decides).
    assert pv.carried_error(parent, table, _luma(synth.noise(pixels, 6, seed=3), 95)) > pv.DESCENT


def test_a_sharpening_undone_keeps_a_floor_a_blur_does_not() -> None:
    _, pixels = _edited(23)
    base = _luma(pixels)
    sharp = _luma(pixels.filter(ImageFilter.UnsharpMask(2, 120, 0)), 96)
    soft = _luma(pixels.filter(ImageFilter.GaussianBlur(1.5)), 96)
    undone = pv.band_gains(base, sharp)[4:]  # the original, seen from its sharpened copy
    blurred = pv.band_gains(soft, base)[4:]
    assert undone.min() > 0.3 and undone.max() < 0.8 and undone.max() < 1.4 * undone.min()
    assert blurred.min() < 0.15
    # What each holds that the other cannot predict: a blur loses detail for good.
    assert pv.unexplained(base, soft) > 2 * pv.unexplained(soft, base)
    assert pv.unexplained(sharp, base) < 2 * pv.unexplained(base, sharp)


def test_added_noise_is_spread_evenly_a_denoiser_takes_detail() -> None:
    from dupligoned.core.keeper import texture_bias

    _, pixels = _edited(24)
    base = _luma(pixels)
    noisy = _luma(synth.noise(pixels, 6, seed=4))
    denoised = _luma(pixels.filter(ImageFilter.MedianFilter(5)))
    assert texture_bias(noisy, base) < 1.6
    assert texture_bias(base, denoised) > 3.0


def test_a_copy_clipped_where_another_shows_detail_is_not_the_original() -> None:
    _, pixels = _edited(11)  # a bright sky
    base = _luma(pixels)
    bright = _luma(synth.brightness(pixels, 1.7), 95)  # an exposure gain: the highlights go white
    got = pv.clipped_detail(base, bright)
    assert got is not None and got[1] == "white" and got[0] >= pv.CLIP_DETAIL
    assert pv.clipped_detail(bright, base) is None  # nothing is clipped in the original
    # A darkened copy of a photo whose highlights are white already shows nothing there either
    # (a lower ceiling): it says nothing about which came first.
    dimmed = _luma(synth.brightness(synth.brightness(pixels, 1.7), 0.6), 95)
    assert pv.clipped_detail(dimmed, bright) is None and pv.clipped_detail(bright, dimmed) is None
    # A blurred copy spreads the edges of a white area into it, not its detail.
    blown = synth.brightness(pixels, 1.7)
    soft = _luma(synth.blur(blown, 1.5), 95)
    assert pv.clipped_detail(soft, bright) is None
    # A vignette or a graduated filter laid over a copy of a photo with a white sky makes a smooth
    # ramp there, not detail: the photo with the white sky may well be the original.
    a = np.asarray(blown, dtype=np.float32)
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    r2 = (((yy - a.shape[0] / 2) / a.shape[0]) ** 2 + ((xx - a.shape[1] / 2) / a.shape[1]) ** 2) * 2
    for shade in (1 - 0.5 * r2, 1 - 0.5 * (1 - yy / a.shape[0])):
        ramp = Image.fromarray(np.clip(a * shade[..., None] + 0.5, 0, 255).astype(np.uint8))
        assert pv.clipped_detail(_luma(ramp, 95), bright) is None
    # Nor does a caption or a watermark written over the white sky of a copy.
    captioned = blown.copy()
    from PIL import ImageDraw
    draw = ImageDraw.Draw(captioned)
    for row in (12, 40):
        draw.text((10, row), "Holiday 2021 - Holiday 2021 - Holiday 2021 - Holiday 2021", fill=(60, 60, 60))
    assert pv.clipped_detail(_luma(captioned, 95), bright) is None


def test_a_dim_camera_heic_is_kept_over_its_brightened_copies(tmp_path: Path) -> None:
    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(11)
    original = synth.save(pixels, tmp_path / "DCIM" / "IMG_0001.HEIC", quality=80, camera=CAMERA)
    bright = synth.brightness(pixels, 1.7)
    copies = [synth.save(bright, tmp_path / "Edited" / "IMG_0001-edited.jpg", quality=95),
              synth.save(synth.contrast(bright, 1.1), tmp_path / "Export" / "IMG_0001.png")]
    decision = decide_group([analyse_file(str(p)) for p in [original, *copies]])
    assert decision.keep == [str(original)]
    why = {Path(v.path).name: v.reason for v in decision.verdicts}
    assert any("clipped to white where IMG_0001.HEIC still shows detail" in r for r in why.values()), why


def test_a_copy_converted_losslessly_is_not_taken_for_the_source(tmp_path: Path) -> None:
    """A lossless conversion with a copy's very pixels proves only that the copy came before
    the conversion: any file can be converted. It does not make the copy earlier than the camera
    file the copy was made from."""
    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(26)
    original = synth.save(pixels, tmp_path / "DCIM" / "DSC01234.JPG", quality=90, camera=CAMERA)
    soft = synth.blur(pixels, 1.2).filter(ImageFilter.MedianFilter(3))
    copy = synth.save(soft, tmp_path / "Pictures" / "DSC01234_3.jpg", quality=95, camera=CAMERA)
    webp = tmp_path / "Backup" / "DSC01234.webp"
    webp.parent.mkdir(parents=True)
    with Image.open(copy) as im:
        im.convert("RGB").save(webp, lossless=True)
    decision = decide_group([analyse_file(str(p)) for p in (original, copy, webp)])
    assert decision.keep == [str(original)], {Path(v.path).name: v.reason for v in decision.verdicts}


def test_the_frames_of_an_exposure_bracket_are_not_read_as_a_copy_and_its_source(tmp_path: Path) -> None:
    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(11)
    frames = [synth.save(synth.brightness(pixels, f), tmp_path / "DCIM" / f"DSC_000{n}.JPG", quality=92, camera=CAMERA)
              for n, f in ((1, 1.0), (2, 1.7))]
    decision = decide_group([analyse_file(str(p)) for p in frames])
    assert not any("clipped" in v.reason for v in decision.verdicts), decision.verdicts
    # The same two pictures as a file and its edited copy: the brightened one is clipped.
    copy = synth.save(synth.brightness(pixels, 1.7), tmp_path / "Edited" / "DSC_0001-edited.jpg", quality=95)
    decision = decide_group([analyse_file(str(p)) for p in (frames[0], copy)])
    assert decision.keep == [str(frames[0])]
    assert any("clipped to white" in v.reason for v in decision.verdicts), decision.verdicts



def test_a_mildly_softened_copy_never_makes_its_source_a_sharpened_copy(tmp_path: Path) -> None:
    """A mild blur or a 3×3 median changes little more than the files' own compression, like a
    mild sharpening does: the camera file must stay the keeper (relaxing the sharpening test's
    fit to catch mild sharpenings took 23 of 96 such originals for sharpened copies)."""
    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(23)
    for ext, quality in ((".HEIC", 75), (".JPG", 85)):
        original = synth.save(pixels, tmp_path / ext[1:] / "DCIM" / f"IMG_0001{ext}", quality=quality, camera=CAMERA)
        with Image.open(original) as im:
            decoded = im.convert("RGB")
        for n, soften in enumerate((ImageFilter.GaussianBlur(1.0), ImageFilter.MedianFilter(3))):
            copy = synth.save(decoded.filter(soften), tmp_path / ext[1:] / "Desktop" / f"soft{n}.jpg", quality=95)
            decision = decide_group([analyse_file(str(p)) for p in (original, copy)])
            assert decision.keep == [str(original)], [v.reason for v in decision.verdicts]


def test_a_caption_added_to_a_copy_does_not_make_the_original_blurrier(tmp_path: Path) -> None:
    """The edges of a caption or a watermark lift a copy's sharpness figure; a blur softens the
    whole picture, the caption sharpens only the tiles it covers."""
    from PIL import ImageDraw

    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(21)
    original = synth.save(pixels, tmp_path / "DCIM" / "IMG_0001.HEIC", quality=75, camera=CAMERA)
    with Image.open(original) as im:
        captioned = im.convert("RGB")
    ImageDraw.Draw(captioned).text((10, 10), "Summer 2021 - best day ever", fill=(250, 250, 250))
    copy = synth.save(captioned, tmp_path / "Edited" / "IMG_0001-edited.jpg", quality=95)
    decision = decide_group([analyse_file(str(p)) for p in (original, copy)])
    assert decision.keep == [str(original)], [v.reason for v in decision.verdicts]
    # A blurred copy is still the blurrier one.
    blurred = synth.save(synth.blur(pixels, 1.5), tmp_path / "Edited" / "soft.jpg", quality=95)
    decision = decide_group([analyse_file(str(p)) for p in (original, blurred)])
    assert [v.reason for v in decision.verdicts if not v.keep][0].startswith("blurrier copy of IMG_0001.HEIC")


def test_a_brightened_copy_is_not_taken_for_the_sharper_one(tmp_path: Path) -> None:
    """Brightening scales the Laplacian with the contrast; where it clips, the copy's contrast
    falls, and its sharpness per contrast rises. Tile by tile, relative to each tile's own
    contrast, it is no sharper: the original is not called blurrier."""
    from dupligoned.services.analyse import analyse_file
    from dupligoned.services.decide import decide_group

    _, pixels = _edited(11)
    root = tmp_path
    original = synth.save(synth.brightness(pixels, 1.5), root / "DCIM" / "IMG_0001.JPG", quality=85, camera=CAMERA)
    with Image.open(original) as im:
        decoded = im.convert("RGB")
    copy = synth.save(synth.brightness(decoded, 1.8), root / "Edited" / "IMG_0001-edited.jpg", quality=95)
    decision = decide_group([analyse_file(str(p)) for p in (original, copy)])
    assert decision.keep == [str(original)], [v.reason for v in decision.verdicts]


def test_a_re_save_at_a_slightly_finer_quality_is_never_read_as_the_source(tmp_path: Path) -> None:
    """A JPEG re-saved a few quality points higher sits about a third of a step off the
    original's lattice, as far as an original at that quality would, so the quantiser tests
    cannot tell the direction there and must say nothing. The JPEG-ghost test read such pairs
    backwards ("re-saved from" the copy: the original made from its own re-save), keeping the
    copy: a 255 x 252 Redmi photo at q82 and its q88 export in a hard set of ours, and 1 of 384
    synthetic pairs (q76-86, +3 to +8), the one below."""
    im = synth.noise(synth.scene(34, (480, 360)), 1.5, 34)
    orig = tmp_path / "IMG_0001.jpg"
    im.save(orig, quality=76)
    with Image.open(orig) as o:
        copy = tmp_path / "IMG_0001-export.jpg"
        o.convert("RGB").save(copy, quality=84)
    planes = [decode_luma(str(orig)), decode_luma(str(copy))]
    found = pv.quantiser_lineage([pv.block_dct(p.raw) for p in planes], [p.jpeg_table for p in planes])
    assert not [li for li in found if li.child == 0], found
