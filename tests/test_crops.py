"""Heavy crops (issue 4): features, candidates, the geometric check, grouping and the keeper.

Photo-like scenes drawn by ``tests/synth.py`` are cropped, stamped and shifted into ``tmp_path``;
the real decode, ORB, index, verification, grouping and keeper run on them.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from dupligoned.adapters import orb
from dupligoned.core.crop_index import CropIndex
from dupligoned.core.crops import CropParams, LocalFeatures, check_crop, crop_links, originals_of, quantise
from dupligoned.core.keeper import decide
from dupligoned.core.model import PhotoInfo
from dupligoned.services.analyse import analyse_file
from dupligoned.services.crops import CropLibrary, find_crops, mark_crops
from dupligoned.services.grouping import group_photos
from tests import synth

# Unrelated photos drawn by tests/synth.py at the sizes of typical library photos: two wide
# 1080p frames, 4:3 and 3:2 camera pictures. Like the real photos these replace (picked from the
# dev corpus), they are scenes whose quarter crop ORB finds directly: of 16 real dev photos
# >= 1024 px, 4 had all four crops grouped; of 24 synth scenes, 15.
SOURCES = [(13, (1920, 1080)), (14, (1920, 1080)), (16, (1024, 768)), (12, (1024, 683)), (17, (1024, 683)),
           (11, (1024, 768))]


def _src(k: int) -> Image.Image:
    seed, size = SOURCES[k]
    return synth.scene(seed, size)


_aspect = synth.aspect
_frac = synth.frac


def make_crop_family(folder: Path, im: Image.Image, name: str) -> dict[str, Path]:
    """An original and the four crops the issue names, as JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"original": folder / f"{name}.jpg"}
    im.save(out["original"], quality=95)
    crops = {kind: cut(im) for kind, cut in synth.CROPS.items()}  # 16x9, square, quarter, shared
    for kind, c in crops.items():
        out[kind] = folder / f"{name}_{kind}.jpg"
        c.save(out[kind], quality=85)
    return out


def _work(path: str):  # the working image the analysis extracts features from
    from dupligoned.adapters.decode import decode_photo

    return decode_photo(path).work


def _analyse(paths: list[Path]) -> list[PhotoInfo]:
    return [analyse_file(str(p)) for p in paths]


def _groups(photos: list[PhotoInfo], with_crops: bool = True) -> list[set[str]]:
    found = find_crops(photos) if with_crops else None
    marked = mark_crops(photos, found.crop_of) if found else photos
    g = group_photos(marked, verified=found.verified if found else None)
    return [{marked[k].path for k in grp} for grp in g.groups]


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Path]], list[PhotoInfo]]:
    root = tmp_path_factory.mktemp("families")
    fams = [make_crop_family(root / f"f{k}", _src(k), f"photo{k}") for k in range(3)]
    photos = _analyse([p for f in fams for p in f.values()])
    return fams, photos


# --- the pipeline on real photos ----------------------------------------------------------


def test_each_crop_is_grouped_with_its_original_and_the_original_kept(families):
    fams, photos = families
    found = find_crops(photos)
    marked = mark_crops(photos, found.crop_of)
    groups = group_photos(marked, verified=found.verified).groups
    by_path = {p.path: p for p in marked}
    for fam in fams:
        want = {str(p) for p in fam.values()}
        grp = [g for g in groups if str(fam["original"]) in {marked[k].path for k in g}]
        assert len(grp) == 1 and {marked[k].path for k in grp[0]} == want
        decision = decide([by_path[p] for p in sorted(want)])
        assert decision.keep == [str(fam["original"])]
        reasons = {v.path: v.reason for v in decision.verdicts}
        for kind in ("16x9", "square", "quarter", "shared"):
            assert reasons[str(fam[kind])] == f"cropped copy of {fam['original'].name}"


def test_without_the_crop_stage_the_crops_stay_apart(families):
    """The stage is what groups them: hashes alone see heavy crops as unrelated."""
    fams, photos = families
    groups = _groups(photos, with_crops=False)
    for fam in fams:
        assert not any(str(fam["quarter"]) in g and str(fam["original"]) in g for g in groups)


def test_result_does_not_depend_on_input_order(families):
    _, photos = families
    first = find_crops(photos)
    base = sorted(map(sorted, _groups(photos)))
    for seed in (1, 2):
        shuffled = list(photos)
        random.Random(seed).shuffle(shuffled)
        assert find_crops(shuffled).crop_of == first.crop_of
        assert sorted(map(sorted, _groups(shuffled))) == base


def test_incremental_matching_finds_crops_of_library_photos(families):
    """New photos matched against an existing library through the same code."""
    fams, photos = families
    by_path = {p.path: p for p in photos}
    lib = CropLibrary()
    originals = [str(f["original"]) for f in fams]
    assert lib.match_new([orb.features_of(by_path[p].extra) for p in originals], originals) == []
    new = [str(f["quarter"]) for f in fams]
    found = lib.match_new([orb.features_of(by_path[p].extra) for p in new], new)
    pairs = {(lib.keys[a], lib.keys[b], m.inner) for a, b, m in found}
    got = {(lib.keys[a] if m.inner == 0 else lib.keys[b]) for a, b, m in found}
    assert len(pairs) == len(fams) and got == set(new)


# --- photos that must stay apart -----------------------------------------------------------


def _no_crops(paths: list[Path]) -> None:
    photos = _analyse(paths)
    found = find_crops(photos)
    assert found.crop_of == {} and len(found.verified) == 0
    assert _groups(photos) == []


def test_two_shots_of_one_scene_seconds_apart_stay_apart(tmp_path):
    """Shifted and zoomed views of one scene: they overlap, but neither lies inside the other."""
    im = _src(0)
    views = [_frac(im, 0.0, 0.0, 0.72, 0.85), _frac(im, 0.22, 0.12, 0.94, 0.97), _frac(im, 0.3, 0.0, 0.98, 0.6)]
    paths = []
    for k, v in enumerate(views):
        paths.append(tmp_path / f"IMG_{100 + k}.jpg")
        v.resize((1600, round(1600 * v.height / v.width)), Image.Resampling.LANCZOS).save(paths[-1], quality=90)
    _no_crops(paths)


def test_a_zoomed_second_shot_is_not_a_crop_of_the_wide_one(tmp_path):
    """The wide shot, then the same scene zoomed 2× at full size: the geometry says "inside",
    but the zoomed photo has twice the pixels for what it shows, so it was not cut from the
    wide one and is never offered for deletion as its crop. (Made here by enlarging the middle
    of a photo: a real zoomed shot also has the detail this one lacks.)"""
    im = _src(0)
    wide = tmp_path / "IMG_200.jpg"
    zoom = tmp_path / "IMG_201.jpg"
    small = im.resize((2000, round(2000 * im.height / im.width)), Image.Resampling.LANCZOS)
    small.save(wide, quality=92)
    _frac(small, 0.25, 0.25, 0.75, 0.75).resize(small.size, Image.Resampling.LANCZOS).save(zoom, quality=92)
    photos = _analyse([wide, zoom])
    feats = [orb.features_of(p.extra) for p in photos]
    m = orb.match(feats[0], feats[1])
    assert m is not None and m.inner == 1  # the geometry alone would call it a crop
    _no_crops([wide, zoom])
    # The same middle cut out at the wide shot's resolution is a crop.
    cut = tmp_path / "IMG_200_crop.jpg"
    _frac(small, 0.25, 0.25, 0.75, 0.75).save(cut, quality=92)
    assert any({str(wide), str(cut)} <= g for g in _groups(_analyse([wide, cut])))


def _logo(size: int) -> Image.Image:
    """A busy, corner-rich patch: a piece of another photo with a bold frame."""
    patch = _frac(_src(3), 0.3, 0.3, 0.6, 0.7).resize((size, size), Image.Resampling.LANCZOS)
    ImageDraw.Draw(patch).rectangle((0, 0, size - 1, size - 1), outline=(255, 255, 255), width=size // 20)
    return patch


def test_two_photos_with_the_same_logo_stay_apart(tmp_path):
    paths = []
    for k, (src, scale, at) in enumerate([(1, 0.45, (0.5, 0.5)), (2, 0.30, (0.5, 0.5)), (4, 0.45, (0.3, 0.4))]):
        im = _aspect(_src(src), 4 / 3).resize((1600, 1200), Image.Resampling.LANCZOS)
        logo = _logo(int(scale * im.width))
        im.paste(logo, (int(at[0] * im.width - logo.width / 2), int(at[1] * im.height - logo.height / 2)))
        paths.append(tmp_path / f"logo{k}.jpg")
        im.save(paths[-1], quality=90)
    _no_crops(paths)


def test_two_photos_with_the_same_large_text_stay_apart(tmp_path):
    font_path = Path(__file__).resolve().parent / "DejaVuSans-Bold.ttf"
    paths = []
    for k, (src, size) in enumerate([(1, 220), (2, 150), (5, 220)]):
        im = _aspect(_src(src), 4 / 3).resize((1600, 1200), Image.Resampling.LANCZOS)
        try:
            font = ImageFont.truetype(str(font_path) if font_path.exists() else "DejaVuSans-Bold.ttf", size)
        except OSError:
            font = ImageFont.load_default(size)
        draw = ImageDraw.Draw(im)
        draw.text((800, 600), "SALE 50%", font=font, fill=(255, 255, 0), anchor="mm", stroke_width=6, stroke_fill=(0, 0, 0))
        paths.append(tmp_path / f"text{k}.jpg")
        im.save(paths[-1], quality=90)
    _no_crops(paths)


def test_two_plain_skies_stay_apart(tmp_path):
    paths = []
    for k in range(3):
        rng = np.random.default_rng(k)
        y = np.linspace(0, 1, 900)[:, None, None]
        top, bottom = np.array([40, 90 + 20 * k, 200]), np.array([150, 190, 240 - 10 * k])
        sky = top + (bottom - top) * y + rng.normal(0, 2.0, (900, 1200, 3))
        paths.append(tmp_path / f"sky{k}.jpg")
        Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)).save(paths[-1], quality=88)
    _no_crops(paths)


# --- the pure parts ------------------------------------------------------------------------


def _crop_geometry(
    rect: tuple[float, float, float, float], size: tuple[int, int] = (512, 384), n: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Points spread over a crop of ``size`` at ``rect`` and their places in the crop's frame."""
    rng = np.random.default_rng(seed)
    w, h = size
    x0, y0, x1, y1 = rect[0] * w, rect[1] * h, rect[2] * w, rect[3] * h
    s = 512 / max(x1 - x0, y1 - y0)
    crop_size = (round((x1 - x0) * s), round((y1 - y0) * s))
    po = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    pc = (po - [x0, y0]) * s
    m = np.array([[1 / s, 0, x0], [0, 1 / s, y0]])  # crop → original
    return m, po, pc, crop_size


def _sharp_subject_on_soft_ground(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1024×768 grey photo: a soft, blurred ground, and in the middle band (70% of the width,
    35% of the height, where a 16:9 crop is cut) a sharp black-and-white blocky subject, as the
    wing of a butterfly on a blurred leaf. Returns it and the band (x0, y0, w, h)."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = 1024, 768
    ground = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 60)
    img = 90 + 60 * (ground - ground.min()) / (ground.max() - ground.min())
    ch, cw = int(h * 0.35), int(w * 0.7)
    x0, y0 = (w - cw) // 3, (h - ch) // 2
    cell = ch // int(rng.integers(5, 9))
    blocks = np.kron(rng.random((ch // cell + 1, cw // cell + 1)) > 0.5, np.ones((cell, cell)))[: ch // 2, : cw // 2]
    img[y0 : y0 + blocks.shape[0], x0 : x0 + blocks.shape[1]] = np.where(blocks > 0, 240, 15)
    return img.astype(np.uint8), (x0, y0, cw, ch)


def test_the_appearance_check_reads_crop_and_original_at_one_resolution():
    """A 16:9 crop keeping 35% of the height spans under 6 rows of its original's 16-px
    thumbnail; read at its own, sharper resolution, the crop of a sharp subject on a soft
    ground correlated 0.82 with its own place in the original (under the 0.85 bar) and was
    missed. Averaged over what one pixel of the original's thumbnail covers, it reads as its
    original does; another photo's same place still does not correlate."""
    import cv2

    from dupligoned.core.crops import appearance_ncc

    def thumb(g: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA), np.uint8)

    img, (x0, y0, cw, ch) = _sharp_subject_on_soft_ground(7)
    inner = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (512, round(ch * 512 / cw)), interpolation=cv2.INTER_AREA)
    s = cw / 1024  # outer working pixels (512 × 384) per inner working pixel
    m = np.array([[s, 0, x0 / 2 + s / 2 - 0.5], [0, s, y0 / 2 + s / 2 - 0.5]])
    size_in = (inner.shape[1], inner.shape[0])
    outer = cv2.resize(img, (512, 384), interpolation=cv2.INTER_AREA)
    assert appearance_ncc(m, thumb(inner), thumb(outer), size_in, (512, 384)) >= CropParams().min_appearance_ncc
    for other in range(8, 14):
        stranger = cv2.resize(_sharp_subject_on_soft_ground(other)[0], (512, 384), interpolation=cv2.INTER_AREA)
        assert appearance_ncc(m, thumb(inner), thumb(stranger), size_in, (512, 384)) < 0.5


@pytest.mark.parametrize("seed,rect", [(8, (0.15, 0.3, 0.85, 0.6)), (15, (0.25, 0.25, 0.75, 0.75)),
                                       (24, (0.25, 0.25, 0.75, 0.75))])
def test_a_heavy_crop_is_found_though_its_keypoints_sit_a_quantisation_step_off(tmp_path, seed, rect):
    """A crop kept at its original's pixels and shown 2× larger is matched with its coarse
    pyramid levels, whose keypoints sit a pixel or two off their partners after both photos'
    positions are kept to 2-px steps. These three crops (a 16:9 band, quarters off each side)
    kept too few pairs within 1.5 px of the similarity and were missed; each is found, as a
    crop of its original, from the features the index stores."""
    im = synth.scene(seed, (1024, 683))
    po = synth.save(im, tmp_path / "original.jpg", quality=92)
    pc = synth.save(synth.frac(im, *rect), tmp_path / "crop.jpg", quality=88)
    fo, fc = (LocalFeatures.from_bytes(orb.extract(_work(str(p))).to_bytes()) for p in (po, pc))
    got = orb.match(fc, fo)
    assert got is not None and got.inner == 0
    assert np.allclose(got.rect, rect, atol=0.03)


def test_check_crop_accepts_an_exact_crop_and_finds_its_frame():
    m, po, pc, csize = _crop_geometry((0.25, 0.25, 0.75, 0.75))
    got = check_crop(m, po, pc, (512, 384), csize, CropParams())
    assert got is not None and got.inner == 1
    assert np.allclose(got.rect, (0.25, 0.25, 0.75, 0.75), atol=0.01)
    # The same pair the other way round: the transform is inverted, the crop is still found.
    inv = np.array([[1 / m[0, 0], 0, -m[0, 2] / m[0, 0]], [0, 1 / m[1, 1], -m[1, 2] / m[1, 1]]])
    back = check_crop(inv, pc, po, csize, (512, 384), CropParams())
    assert back is not None and back.inner == 0


def test_check_crop_accepts_a_crop_whose_detail_sits_in_one_small_patch():
    """A 16:9 band keeping the whole width of a portrait photo, its only detail in a patch
    covering 0.9% of it (the rest sky): the similarity fitted there is a few percent off in
    scale, so the band's far corners stick out 4-5% of the original's width (the make_crops set
    had such a pair). It is a crop: accepted, the frame within tolerance."""
    rng = np.random.default_rng(5)
    outer, inner = (288, 512), (512, 288)
    s = 288 / 512  # the band's working pixels onto the original's: the whole width
    pc = np.column_stack([rng.uniform(380, 416, 12), rng.uniform(120, 156, 12)])  # the patch
    c = pc.mean(axis=0)
    err = 1.07  # the scale as fitted on the patch alone, about its centre
    m = np.array([[s * err, 0, 0], [0, s * err, 0]])
    m[:, 2] = np.array([c[0] * s, 180 + c[1] * s]) - m[:, :2] @ c  # the patch lands where it is
    po = pc @ m[:, :2].T + m[:, 2]
    corner = m[:, :2] @ [0, 0] + m[:, 2]
    assert -0.06 * 288 < corner[0] < -0.04 * 288  # sticks out 4-6% of the original's width
    got = check_crop(m, po, pc, outer, inner, CropParams(), po, pc)
    assert got is not None and got.inner == 1


@pytest.mark.parametrize("what", ["rotated", "outside", "whole", "clustered", "few", "parallax"])
def test_check_crop_rejects_what_is_not_a_crop(what):
    params = CropParams()
    m, po, pc, csize = _crop_geometry((0.25, 0.25, 0.75, 0.75))
    if what == "rotated":
        a = np.radians(8)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        m = np.hstack([rot @ m[:, :2], m[:, 2:]])
        po = pc @ m[:, :2].T + m[:, 2]
    elif what == "outside":  # a shifted view: its frame sticks out of the other photo
        m, po, pc, csize = _crop_geometry((0.4, 0.1, 0.9, 0.6))
        m[0, 2] += 0.2 * 512
        po = pc @ m[:, :2].T + m[:, 2]
    elif what == "whole":
        m, po, pc, csize = _crop_geometry((0.01, 0.01, 0.99, 0.99))
    elif what == "clustered":  # every match on one small logo, the rest of each photo unmatched
        keep = (pc[:, 0] < 100) & (pc[:, 1] < 100)
        m2, po2, pc2, _ = _crop_geometry((0.25, 0.25, 0.75, 0.75), n=400, seed=1)
        keep = (pc2[:, 0] < 120) & (pc2[:, 1] < 120)
        assert check_crop(m2, po2[keep], pc2[keep], (512, 384), csize, params, po2, pc2) is None
        return
    elif what == "few":
        po, pc = po[: params.min_inliers - 1], pc[: params.min_inliers - 1]
    elif what == "parallax":
        po = po + np.random.default_rng(3).normal(0, 3.0, po.shape)
    assert check_crop(m, po, pc, (512, 384), csize, params) is None


def test_features_are_compact_and_survive_storage(families):
    _, photos = families
    with_alt = CropParams(alt_scales=(1.2**-0.5, 1.2**0.5))  # off by default (bench/README)
    for p in photos:
        base = orb.features_of(p.extra)
        assert base is not None and base.alt.shape[0] == 0 and base.nbytes <= 3072  # the default: no alternates
        f = orb.extract(_work(p.path), with_alt)
        assert 8 <= len(f) <= CropParams().max_keypoints
        # What stays once searched: 150 keypoints × 18 B + a 256 B thumbnail; until then the
        # alternates (two more descriptors a keypoint).
        assert f.base_nbytes <= 3072 and f.alt.shape == (2, len(f), 16) and f.nbytes <= 8192
        # Searches look with the alternates of the coarse levels' keypoints only (the fine
        # levels' are the base descriptors again, and not looked with twice).
        d, kp = f.query_desc()
        assert len(f) < len(d) < 2.5 * len(f) and np.array_equal(d[: len(f)], f.desc)
        assert not any(np.array_equal(d[r], f.desc[kp[r]]) for r in range(len(f), len(d)))
        g = LocalFeatures.from_bytes(f.to_bytes())
        assert (g.width, g.height) == (f.width, f.height)
        assert np.array_equal(g.desc, f.desc) and np.array_equal(g.pos, f.pos) and np.array_equal(g.alt, f.alt)
        h = LocalFeatures.from_bytes(f.to_bytes()[: f.base_nbytes])  # searched: the head alone
        assert np.array_equal(h.desc, f.desc) and h.alt.shape[0] == 0 and h.to_bytes() == f.without_alt().to_bytes()
        with pytest.raises(ValueError):
            LocalFeatures.from_bytes(f.to_bytes()[:-1])
    q = quantise(np.array([[0.0, 0.0], [511.0, 383.0]]), np.zeros((2, 32), np.uint8), 512, 384)
    assert np.allclose(q.points(), [[0, 0], [511, 383]])


def test_the_index_caps_candidates_per_photo():
    rng = np.random.default_rng(0)
    params = CropParams(candidates_per_photo=3, min_votes=2)
    base = rng.integers(0, 256, (40, 16), dtype=np.uint8)
    # Ten photos sharing the same descriptors: each may propose only three others.
    feats = [quantise(rng.uniform(0, 500, (40, 2)), base, 512, 384) for _ in range(10)]
    idx = CropIndex(params)
    ids = idx.add(feats)
    cand = idx.candidates(feats, query_ids=ids, rank_key=ids)
    assert np.bincount(cand.i).max() == 3 and not np.any(cand.i == cand.j)
    # Unrelated random descriptors propose nothing.
    other = [quantise(rng.uniform(0, 500, (40, 2)), rng.integers(0, 256, (40, 16), dtype=np.uint8), 512, 384)
             for _ in range(5)]
    assert len(idx.candidates(other)) == 0


def test_two_keypoints_found_in_the_index_are_enough_to_check_a_pair():
    """The hash tables find a heavy crop's keypoints in its original rarely (their descriptors
    lie 15-30 bits apart): of the 150 crops bench/library_scale.py plants, 12 that verification
    accepts had 0-2 keypoints found. A pair with two is checked; one is not."""
    rng = np.random.default_rng(1)
    lib = [quantise(rng.uniform(0, 500, (60, 2)), rng.integers(0, 256, (60, 16), dtype=np.uint8), 512, 384)
           for _ in range(20)]
    idx = CropIndex(CropParams())
    idx.add(lib)
    for shared, proposed in ((2, True), (1, False)):
        desc = rng.integers(0, 256, (60, 16), dtype=np.uint8)
        desc[:shared] = lib[7].desc[:shared]
        cand = idx.candidates([quantise(rng.uniform(0, 500, (60, 2)), desc, 512, 384)])
        assert (7 in cand.j.tolist()) is proposed


def test_crop_links_and_originals():
    assert crop_links([(1, 0), (2, 0), (3, 2)]) == [(0, 1), (0, 2), (1, 2), (2, 3)]
    assert originals_of({"c": "b", "b": "a", "x": "elsewhere"}, ["a", "b", "c", "x"]) == {"c": "a", "b": "a"}


def test_keeper_keeps_the_original_even_when_a_crop_has_more_pixels(families):
    """An upscaled crop is still a crop: the photo that contains it is kept."""
    fams, photos = families
    by_path = {p.path: p for p in photos}
    orig, crop = by_path[str(fams[0]["original"])], by_path[str(fams[0]["quarter"])]
    big_crop = replace(crop, width=orig.width * 2, height=orig.height * 2, size_bytes=orig.size_bytes * 4)
    d = decide([orig, big_crop], crops={crop.path: orig.path})
    assert d.keep == [orig.path]
    assert d.verdicts[[v.path for v in d.verdicts].index(crop.path)].reason.startswith("cropped copy of")
    assert decide([orig, big_crop]).keep == [crop.path]  # without the crop relation: the bigger


def test_the_index_answers_alike_however_photos_were_added():
    """One batch, or many small ones (merged segments on the way): the same candidates."""
    rng = np.random.default_rng(5)
    base = [rng.integers(0, 256, (60, 16), dtype=np.uint8) for _ in range(6)]
    feats = []
    for k in range(40):  # photos sharing descriptors in pairs (bits flipped), others unrelated
        d = base[k % 6].copy()
        d[:, 0] ^= np.uint8(k)
        feats.append(quantise(rng.uniform(0, 500, (60, 2)), d, 512, 384))
    one = CropIndex()
    ids = one.add(feats)
    many = CropIndex()
    for k in range(0, 40, 2):
        many.add(feats[k : k + 2])
    a = one.candidates(feats, query_ids=ids, rank_key=ids)
    b = many.candidates(feats, query_ids=ids, rank_key=ids)
    assert len(a) > 0
    assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j) and np.array_equal(a.dist, b.dist)


def test_kept_keypoints_carry_the_descriptors_detect_and_compute_gives_them(tmp_path):
    """``extract`` describes only the keypoints it keeps; each must keep its own descriptor
    (OpenCV returns described keypoints regrouped by pyramid level)."""
    from dupligoned.adapters.decode import decode_photo
    from dupligoned.core.crops import DESC_BYTES, POS_LEVELS

    params = CropParams()
    for k in range(len(SOURCES)):
        work = decode_photo(str(synth.save(_src(k), tmp_path / f"src{k}.jpg"))).work
        h, w = work.shape
        feats = orb.extract(work, params)
        kps, desc = orb._orb(params.detect_keypoints, len(params.level_weights)).detectAndCompute(work, None)
        where: dict[bytes, set[tuple[int, int]]] = {}
        for kp, d in zip(kps, desc, strict=True):
            q = (int(np.clip(np.rint(kp.pt[0] / max(1, w - 1) * POS_LEVELS), 0, POS_LEVELS)),
                 int(np.clip(np.rint(kp.pt[1] / max(1, h - 1) * POS_LEVELS), 0, POS_LEVELS)))
            where.setdefault(bytes(d[:DESC_BYTES]), set()).add(q)
        levels = {kp.octave for kp in kps}
        assert len(feats) > params.max_keypoints // 2 and len(levels) > 2  # keypoints from many levels
        for pos, d in zip(feats.pos, feats.desc, strict=True):
            assert (int(pos[0]), int(pos[1])) in where[bytes(d)]
