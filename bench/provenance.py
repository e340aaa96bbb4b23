#!/usr/bin/env python3
"""Labelled unseen sets built the way real libraries come about, and the keeper's score on each.

Unlike the dev corpus, whose originals are the cleanest copy, here the original is a camera file
(JPEG at quality 70-98, or HEIC) with camera EXIF, and its copies are what people and their apps
make of it, usually saved at a HIGHER quality than their source:

- ``chains``:  copies made by one to three edits (noise, blur, exposure, gamma, denoise, sharpen,
  colour filters, contrast) in a chain or a tree (a copy of a copy), each saved as JPEG at a
  higher quality, PNG, lossless WebP or HEIC, EXIF kept (an editor) or stripped.
- ``formats``: conversions and re-encodes of the original: PNG, lossless WebP, HEIC, AVIF, WebP,
  JPEG re-saved higher (generation loss), messenger downscales; HEIC originals converted to JPEG.
- ``bursts``:  distinct frames of one scene (shifted a few pixels), one sharp, the others with
  motion blur or defocus, some with a converted copy of a frame.
- ``holdout``: all of the above with other sources, another seed and other parameter ranges. Not
  to be tuned on: it stands in for the hidden set.
- ``hard``, ``hard2``: built unlike the others (``HardBuilder``): other cameras and sizes, originals
  at quality 65-98, copies saved higher or lower than their source, captions, vignettes, local
  contrast, a small share blown up again, light crops, shadow lifts in chains of up to four
  edits, bursts within one second. ``hard2`` (another seed) is measured, never looked into.

Sources: the dev corpus's unique photos, re-rendered (rescaled by a non-integer factor, given
sensor-like grain) so that their own JPEG history is gone before the "camera" saves them. The
photos are made at run time under ``--out`` (never committed). Each set is scanned with
``dupligone scan --json --reasons`` and scored with ``../shared/eval/score.py``.

    python bench/provenance.py [--out /tmp/dupligone-provenance] [--sets chains,formats,bursts,holdout]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageEnhance, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, dupligone_command, load_score  # noqa: E402

pillow_heif.register_heif_opener()

DEV = SHARED / "datasets" / "dev"
CAMERAS = [  # make, model, file name pattern
    ("Apple", "iPhone 8", "IMG_{n:04d}.JPG"),
    ("Canon", "Canon PowerShot A480", "IMG_{n:04d}.JPG"),
    ("NIKON CORPORATION", "NIKON D3200", "DSC_{n:04d}.JPG"),
    ("SONY", "DSC-W800", "DSC{n:05d}.JPG"),
    ("samsung", "SM-G930F", "{t:%Y%m%d_%H%M%S}.jpg"),
    ("OLYMPUS IMAGING CORP.", "VG-120", "P{n:07d}.JPG"),
    ("HUAWEI", "P20 lite", "IMG_{t:%Y%m%d_%H%M%S}.jpg"),
]
Img = Image.Image


# --- sources -----------------------------------------------------------------------------------

def dev_sources() -> list[Path]:
    truth = json.loads((DEV / "truth.json").read_text())
    picks = list(truth["singletons"])
    for g in truth["groups"]:
        if g["kind"] in ("degrade", "exact", "reencode", "edit") and g["best"]:
            picks.append(sorted(g["best"])[0])
    return [DEV / "photos" / p for p in sorted(set(picks))]


def render(path: Path, rng: random.Random, long_edge: int) -> Img:
    """A "sensor" image: the source rescaled by a non-integer factor (its JPEG grid gone) with grain."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    f = min(1.0, long_edge / max(im.size)) * rng.uniform(0.78, 0.93)
    im = im.resize((max(64, round(im.width * f)), max(64, round(im.height * f))), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.float32)
    g = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(0.8, 2.2), arr.shape[:2])
    return Image.fromarray(np.clip(arr + g[..., None] + 0.5, 0, 255).astype(np.uint8))


def camera_exif(cam: tuple[str, str, str], when: dt.datetime, size: tuple[int, int]) -> bytes:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = cam[0], cam[1]
    ex[0x0132] = when.strftime("%Y:%m:%d %H:%M:%S")
    sub = ex.get_ifd(ExifTags.IFD.Exif)
    sub[0x9003] = sub[0x9004] = when.strftime("%Y:%m:%d %H:%M:%S")
    sub[0xA002], sub[0xA003] = size
    return ex.tobytes()


def editor_exif(when: dt.datetime, cam: tuple[str, str, str] | None) -> bytes:
    """What an editor writes: the camera fields kept (or not), its own software, a new date."""
    ex = Image.Exif()
    if cam:
        ex[0x010F], ex[0x0110] = cam[0], cam[1]
        sub = ex.get_ifd(ExifTags.IFD.Exif)
        sub[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
    ex[0x0131] = "Adobe Photoshop Lightroom Classic 12.0 (Windows)"
    ex[0x0132] = (when + dt.timedelta(days=400)).strftime("%Y:%m:%d %H:%M:%S")
    return ex.tobytes()


def save(im: Img, path: Path, fmt: str, quality: int = 0, exif: bytes | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {}
    if exif:
        kw["exif"] = exif
    if fmt == "JPEG":
        im.save(path, "JPEG", quality=quality, **kw)
    elif fmt == "PNG":
        im.save(path, "PNG", **kw)
    elif fmt == "WEBPL":
        im.save(path, "WEBP", lossless=True, **kw)
    elif fmt == "WEBP":
        im.save(path, "WEBP", quality=quality, **kw)
    elif fmt == "HEIF":
        im.save(path, "HEIF", quality=quality, **kw)
    elif fmt == "AVIF":
        im.save(path, "AVIF", quality=quality, **kw)
    else:
        raise ValueError(fmt)


def reload(im: Img, fmt: str, quality: int) -> Img:
    """``im`` as it comes back from a file of that format (what the next edit starts from)."""
    b = io.BytesIO()
    if fmt in ("PNG", "WEBPL"):
        return im
    {"JPEG": lambda: im.save(b, "JPEG", quality=quality), "HEIF": lambda: im.save(b, "HEIF", quality=quality),
     "WEBP": lambda: im.save(b, "WEBP", quality=quality), "AVIF": lambda: im.save(b, "AVIF", quality=quality)}[fmt]()
    b.seek(0)
    out = Image.open(b)
    out.load()
    return out.convert("RGB")


EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBPL": ".webp", "WEBP": ".webp", "HEIF": ".heic", "AVIF": ".avif"}


# --- edits -------------------------------------------------------------------------------------

def _arr(im: Img) -> np.ndarray:
    return np.asarray(im, dtype=np.float32)


def _img(a: np.ndarray) -> Img:
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def edit_noise(im: Img, r: random.Random, wide: bool) -> Img:
    s = r.uniform(3, 12) if wide else r.uniform(4, 9)
    g = np.random.default_rng(r.randrange(1 << 30))
    if r.random() < 0.5:
        n = g.normal(0, s, im.size[::-1])[..., None]
    else:
        n = g.normal(0, s, (*im.size[::-1], 3))
    return _img(_arr(im) + n)


def edit_blur(im: Img, r: random.Random, wide: bool) -> Img:
    if r.random() < 0.3:
        return im.filter(ImageFilter.BoxBlur(r.choice([1, 2])))
    return im.filter(ImageFilter.GaussianBlur(r.uniform(0.8, 2.6) if wide else r.uniform(1.0, 2.0)))


def edit_exposure(im: Img, r: random.Random, wide: bool) -> Img:
    k = r.random()
    if k < 0.4:
        return _img(_arr(im) * r.choice([r.uniform(0.55, 0.8), r.uniform(1.25, 1.7)]))
    if k < 0.8:
        gam = r.choice([r.uniform(0.55, 0.8), r.uniform(1.3, 1.8)])
        return _img(255.0 * (_arr(im) / 255.0) ** gam)
    return ImageEnhance.Brightness(im).enhance(r.uniform(1.2, 1.5))


def edit_denoise(im: Img, r: random.Random, wide: bool) -> Img:
    k = r.random()
    if k < 0.35:
        return im.filter(ImageFilter.MedianFilter(3))
    import cv2
    a = np.asarray(im)
    if k < 0.7:
        return Image.fromarray(cv2.bilateralFilter(a, 7, r.uniform(25, 50), 5))
    return Image.fromarray(cv2.fastNlMeansDenoisingColored(a, None, r.uniform(5, 10), 5, 7, 21))


def edit_sharpen(im: Img, r: random.Random, wide: bool) -> Img:
    if r.random() < 0.3:
        return im.filter(ImageFilter.SHARPEN)
    return im.filter(ImageFilter.UnsharpMask(r.uniform(1.0, 3.0), r.randint(60, 200), r.randint(0, 3)))


def edit_filter(im: Img, r: random.Random, wide: bool) -> Img:
    k = r.random()
    if k < 0.3:
        return ImageEnhance.Color(im).enhance(r.choice([r.uniform(0.0, 0.6), r.uniform(1.3, 1.8)]))
    if k < 0.55:
        return ImageEnhance.Contrast(im).enhance(r.choice([r.uniform(0.6, 0.8), r.uniform(1.2, 1.6)]))
    if k < 0.8:  # a warm "vintage" look: tint, lifted blacks
        a = _arr(im) * np.array([1.08, 1.0, 0.85], dtype=np.float32) * 0.9 + 20
        return _img(a)
    return ImageOps.autocontrast(im, cutoff=r.uniform(0.5, 2.0))


EDITS: dict[str, Callable[[Img, random.Random, bool], Img]] = {
    "noise": edit_noise, "blur": edit_blur, "exposure": edit_exposure, "denoise": edit_denoise,
    "sharpen": edit_sharpen, "filter": edit_filter,
}


# --- sets --------------------------------------------------------------------------------------

class Builder:
    def __init__(self, out: Path, name: str, seed: int, sources: list[Path], wide: bool) -> None:
        self.root = out / name / "photos"
        self.out = out / name
        self.r = random.Random(seed)
        self.sources = list(sources)
        self.r.shuffle(self.sources)
        self.wide = wide
        self.groups: list[dict[str, Any]] = []
        self.singles: list[str] = []
        self.n = 0
        self.when = dt.datetime(2016, 5, 1, 10, 0, 0) + dt.timedelta(days=self.r.randrange(2000))

    def next_source(self) -> Path:
        self.n += 1
        return self.sources[self.n % len(self.sources)]

    def original(self, long_edge: int = 1400, heic: bool = False) -> tuple[Img, str, str, int, tuple[str, str, str]]:
        """A camera original: (pixels as decoded, relative path, format, quality, camera)."""
        r = self.r
        im = render(self.next_source(), r, long_edge)
        cam = r.choice(CAMERAS)
        self.when += dt.timedelta(hours=r.randint(3, 90), seconds=r.randrange(3600))
        exif = camera_exif(cam, self.when, im.size)
        folder = r.choice(["DCIM/100CAMERA", "Camera", f"{self.when.year}/{self.when:%m}", "Phone/DCIM/Camera"])
        if heic:
            name = f"IMG_{r.randint(1000, 9999)}.HEIC"
            q, fmt = r.randint(60, 90), "HEIF"
        else:
            name = cam[2].format(n=r.randint(10, 99999), t=self.when)
            q, fmt = (r.randint(70, 98) if self.wide else r.choice([r.randint(70, 85), r.randint(86, 98)])), "JPEG"
        rel = f"{folder}/{name}"
        while (self.root / rel).exists():
            rel = rel.replace(".", "1.", 1)
        save(im, self.root / rel, fmt, q, exif)
        return reload(im, fmt, q), rel, fmt, q, cam

    def copy_name(self, orig_rel: str, ext: str, kind: str) -> str:
        r = self.r
        stem = orig_rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        choices = [
            f"Edited/{stem}-edited{ext}", f"Export/{stem}{ext}", f"Pictures/{stem}_{r.randint(1, 3)}{ext}",
            f"Downloads/image ({r.randint(1, 99)}){ext}", f"Desktop/{r.getrandbits(40):010x}{ext}",
            f"Lightroom/{stem}-{r.randint(1, 9)}{ext}", f"Backup/photos/{stem}{ext}",
        ]
        if kind == "messenger":
            choices = [f"WhatsApp Images/IMG-{self.when:%Y%m%d}-WA{r.randint(0, 999):04d}{ext}",
                       f"Telegram/photo_{self.when:%Y-%m-%d_%H-%M-%S}{ext}"]
        rel = r.choice(choices)
        while (self.root / rel).exists():
            rel = rel.replace(".", "x.", 1)
        return rel

    def save_copy(self, im: Img, orig_rel: str, src_q: int, cam: tuple[str, str, str], fmts: list[str],
                  kind: str = "edit") -> tuple[str, Img, str, int]:
        r = self.r
        fmt = r.choice(fmts)
        q = {"JPEG": r.randint(min(98, max(src_q + 3, 85)), 98), "HEIF": r.randint(75, 95),
             "WEBP": r.randint(85, 98), "AVIF": r.randint(75, 95)}.get(fmt, 0)
        exif = editor_exif(self.when, cam if r.random() < 0.5 else None) if r.random() < 0.5 else None
        if fmt in ("PNG", "WEBPL") and r.random() < 0.6:
            exif = None
        rel = self.copy_name(orig_rel, EXT[fmt], kind)
        save(im, self.root / rel, fmt, q, exif)
        return rel, reload(im, fmt, q), fmt, q

    def add_group(self, kind: str, members: list[str], best: list[str]) -> None:
        self.groups.append({"id": f"{kind[:2]}{len(self.groups):03d}", "kind": kind, "members": members,
                            "best": best})

    # What a chain is made of (``HardBuilder`` changes these).
    edits = EDITS
    edit_counts: tuple[int, ...] = (1, 1, 2, 2, 3)
    heic_share = 0.15  # of chain originals
    from_original = 0.6  # share of copies made from the original (the rest from any member)
    copy_formats: tuple[str, ...] = ("JPEG", "JPEG", "JPEG", "PNG", "WEBPL", "HEIF")

    def chain_group(self) -> None:
        r = self.r
        base, rel, fmt, q, cam = self.original(heic=r.random() < self.heic_share)
        members = [rel]
        nodes = [(base, q)]
        history = {rel: f"original {fmt} q{q}"}
        for _ in range(r.randint(2, 4)):
            pick = 0 if r.random() < self.from_original else r.randrange(len(nodes))
            im, pq = nodes[pick]
            edits = r.sample(sorted(self.edits), r.choice(self.edit_counts))
            for e in edits:
                im = self.edits[e](im, r, self.wide)
            crel, back, cfmt, cq = self.save_copy(im, rel, pq, cam, list(self.copy_formats))
            members.append(crel)
            nodes.append((back, cq or 100))
            history[crel] = f"from {members[pick]}: {'+'.join(edits)} -> {cfmt} q{cq}"
        self.add_group("chain", members, [rel])
        self.groups[-1]["history"] = history

    def format_group(self) -> None:
        r = self.r
        heic = r.random() < 0.25
        base, rel, fmt, q, cam = self.original(heic=heic)
        members = [rel]
        kinds = r.sample(["PNG", "WEBPL", "HEIF", "AVIF", "WEBP", "JPEG", "JPEG2", "messenger"], r.randint(2, 4))
        if heic:
            kinds = [k if k != "HEIF" else "JPEG" for k in kinds]
        prev = base
        for k in kinds:
            if k == "messenger":
                f = r.uniform(0.45, 0.75)
                small = base.resize((round(base.width * f), round(base.height * f)), Image.Resampling.BILINEAR)
                crel = self.copy_name(rel, ".jpg", "messenger")
                save(small, self.root / crel, "JPEG", r.randint(70, 85))
            elif k == "JPEG2":  # generation loss: a re-save of a re-save
                crel, prev, _, _ = self.save_copy(prev, rel, q, cam, ["JPEG"])
            else:
                crel, _, _, _ = self.save_copy(base, rel, q if fmt == "JPEG" else 80, cam, [k])
            members.append(crel)
        self.add_group("format", members, [rel])

    def burst_group(self) -> None:
        r = self.r
        src = render(self.next_source(), r, 1500)
        cam = r.choice(CAMERAS)
        n = r.randint(3, 5)
        w, h = round(src.width * 0.94), round(src.height * 0.94)
        sharp = r.randrange(n)
        q = r.randint(80, 96)
        members, best = [], []
        n0 = r.randint(1000, 9000)
        for k in range(n):
            dx, dy = r.randint(0, src.width - w), r.randint(0, src.height - h)
            fr = src.crop((dx, dy, dx + w, dy + h))
            if k != sharp:
                if r.random() < 0.5:
                    fr = fr.filter(ImageFilter.GaussianBlur(r.uniform(1.2, 3.0)))
                else:
                    import cv2
                    ks = r.choice([7, 9, 13])
                    kern = np.zeros((ks, ks), np.float32)
                    kern[ks // 2, :] = 1.0 / ks  # a horizontal motion blur
                    fr = Image.fromarray(cv2.filter2D(np.asarray(fr), -1, kern))
            self.when += dt.timedelta(seconds=1)
            rel = f"DCIM/BURST/{cam[2].format(n=n0 + k, t=self.when)}"
            save(fr, self.root / rel, "JPEG", q, camera_exif(cam, self.when, fr.size))
            members.append(rel)
            if k == sharp:
                best.append(rel)
                if r.random() < 0.4:  # and someone converted the sharp frame
                    back = reload(fr, "JPEG", q)
                    crel, _, _, _ = self.save_copy(back, rel, q, cam, ["PNG", "HEIF", "JPEG"])
                    members.append(crel)
        self.add_group("burst", members, best)

    def single(self) -> None:
        _, rel, _, _, _ = self.original(heic=self.r.random() < 0.1)
        self.singles.append(rel)

    def write(self) -> None:
        (self.out / "truth.json").write_text(json.dumps(
            {"version": 1, "name": self.out.name, "groups": self.groups, "singletons": self.singles,
             "ambiguous": []}, indent=1))


# --- hard: built unlike the other sets, to be measured, never tuned on -------------------------

HARD_CAMERAS = [
    ("FUJIFILM", "X-T3", "DSCF{n:04d}.JPG"),
    ("Google", "Pixel 7", "PXL_{t:%Y%m%d_%H%M%S}{ms:03d}.jpg"),
    ("GoPro", "HERO9 Black", "GOPR{n:04d}.JPG"),
    ("Canon", "Canon EOS R6", "_MG_{n:04d}.JPG"),
    ("Xiaomi", "Redmi Note 8 Pro", "IMG_{t:%Y%m%d_%H%M%S}.jpg"),
]


def edit_caption(im: Img, r: random.Random, wide: bool) -> Img:
    from PIL import ImageDraw, ImageFont
    out = im.copy()
    d = ImageDraw.Draw(out)
    size = max(12, im.height // r.randint(12, 22))
    font = ImageFont.load_default(size=size)
    y = r.choice([im.height - 2 * size, size // 2])
    d.text((size, y), r.choice(["Summer 2019", "best day ever", "© J. Doe", "Happy birthday!"]),
           fill=r.choice([(255, 255, 255), (20, 20, 20), (255, 220, 0)]), font=font)
    return out


def edit_vignette(im: Img, r: random.Random, wide: bool) -> Img:
    w, h = im.size
    yy, xx = np.mgrid[0:h, 0:w]
    rr = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    k = r.uniform(0.25, 0.5)
    return _img(_arr(im) * (1 - k * np.clip(rr / 2, 0, 1))[..., None])


def edit_clahe(im: Img, r: random.Random, wide: bool) -> Img:
    import cv2
    lab = cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=r.uniform(1.5, 3.0), tileGridSize=(8, 8)).apply(lab[..., 0])
    return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def edit_roundtrip(im: Img, r: random.Random, wide: bool) -> Img:
    f = r.uniform(0.4, 0.7)  # shared small, then blown up again to fill a screen
    small = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BILINEAR)
    return small.resize(im.size, Image.Resampling.BICUBIC)


def edit_crop_light(im: Img, r: random.Random, wide: bool) -> Img:
    w, h = im.size
    a, b = r.uniform(0.01, 0.04), r.uniform(0.01, 0.04)
    return im.crop((round(w * a), round(h * b), round(w * (1 - a)), round(h * (1 - b))))


def edit_shadows(im: Img, r: random.Random, wide: bool) -> Img:
    a = _arr(im) / 255.0
    lift = r.uniform(0.15, 0.35)
    return _img(255.0 * (a + lift * a * (1 - a) ** 2 * 4))


HARD_EDITS: dict[str, Callable[[Img, random.Random, bool], Img]] = {
    **EDITS, "caption": edit_caption, "vignette": edit_vignette, "clahe": edit_clahe,
    "roundtrip": edit_roundtrip, "crop": edit_crop_light, "shadows": edit_shadows,
}


class HardBuilder(Builder):
    """Other cameras and sizes, originals at quality 65-98, copies saved higher or LOWER than
    their source, more edits (captions, vignettes, local contrast, a small share blown up
    again, light crops, shadow lifts) in chains of up to four, and bursts shot within one
    second (equal capture times) or with a frame barely softer than the sharp one."""

    def original(self, long_edge: int = 1400, heic: bool = False) -> tuple[Img, str, str, int, tuple[str, str, str]]:
        r = self.r
        im = render(self.next_source(), r, r.randint(900, 2200))
        cam = r.choice(CAMERAS + HARD_CAMERAS)
        self.when += dt.timedelta(hours=r.randint(3, 90), seconds=r.randrange(3600))
        exif = camera_exif(cam, self.when, im.size)
        folder = r.choice(["DCIM/100MEDIA", "DCIM/Camera", f"Photos/{self.when.year}", "SD card/DCIM/101CANON"])
        if heic:
            name, q, fmt = f"IMG_{r.randint(1000, 9999)}.HEIC", r.randint(55, 92), "HEIF"
        else:
            name = cam[2].format(n=r.randint(10, 9999), t=self.when, ms=r.randrange(1000))
            q, fmt = r.randint(65, 98), "JPEG"
        rel = f"{folder}/{name}"
        while (self.root / rel).exists():
            rel = rel.replace(".", "1.", 1)
        save(im, self.root / rel, fmt, q, exif)
        return reload(im, fmt, q), rel, fmt, q, cam

    def save_copy(self, im: Img, orig_rel: str, src_q: int, cam: tuple[str, str, str], fmts: list[str],
                  kind: str = "edit") -> tuple[str, Img, str, int]:
        r = self.r
        if "JPEG" in fmts and r.random() < 0.3:  # shared smaller: saved LOWER than its source
            q = r.randint(55, max(56, min(90, src_q - 3)))
            rel = self.copy_name(orig_rel, ".jpg", kind)
            exif = editor_exif(self.when, cam if r.random() < 0.5 else None) if r.random() < 0.4 else None
            save(im, self.root / rel, "JPEG", q, exif)
            return rel, reload(im, "JPEG", q), "JPEG", q
        return super().save_copy(im, orig_rel, src_q, cam, fmts + ["WEBP"], kind)

    edits = HARD_EDITS
    edit_counts = (1, 2, 2, 3, 4)
    heic_share = 0.25
    from_original = 0.5
    copy_formats = ("JPEG", "JPEG", "PNG", "WEBPL", "HEIF")

    def burst_group(self) -> None:
        import cv2
        r = self.r
        src = render(self.next_source(), r, r.randint(1200, 2000))
        cam = r.choice(CAMERAS + HARD_CAMERAS)
        n = r.randint(3, 6)
        share = r.uniform(0.9, 0.95)
        w, h = round(src.width * share), round(src.height * share)
        sharp = r.randrange(n)
        q = r.randint(75, 96)
        one_second = r.random() < 0.5  # a phone's burst: every frame in the same second
        members: list[str] = []
        best: list[str] = []
        n0 = r.randint(100, 9000)
        self.when += dt.timedelta(hours=r.randint(3, 90))
        for k in range(n):
            dx, dy = r.randint(0, src.width - w), r.randint(0, src.height - h)
            fr = src.crop((dx, dy, dx + w, dy + h))
            if k != sharp:
                v = r.random()
                if v < 0.35:
                    fr = fr.filter(ImageFilter.GaussianBlur(r.uniform(0.9, 3.0)))
                elif v < 0.7:
                    ks = r.choice([5, 7, 9, 13])
                    kern = np.zeros((ks, ks), np.float32)
                    if r.random() < 0.5:
                        kern[ks // 2, :] = 1.0 / ks
                    else:
                        kern[:, ks // 2] = 1.0 / ks
                    fr = Image.fromarray(cv2.filter2D(np.asarray(fr), -1, kern))
                else:  # under-exposed and noisy: a frame taken as the light changed
                    fr = _img(_arr(fr) * r.uniform(0.55, 0.75) + np.random.default_rng(r.randrange(1 << 30)).normal(
                        0, r.uniform(4, 8), (fr.height, fr.width, 1)))
            if not one_second:
                self.when += dt.timedelta(seconds=r.randint(1, 2))
            rel = f"DCIM/Camera/{cam[2].format(n=n0 + k, t=self.when, ms=r.randrange(1000))}"
            while (self.root / rel).exists():
                rel = rel.replace(".", "b.", 1)
            save(fr, self.root / rel, "JPEG", q, camera_exif(cam, self.when, fr.size))
            members.append(rel)
            if k == sharp:
                best.append(rel)
                if r.random() < 0.4:
                    crel, _, _, _ = self.save_copy(reload(fr, "JPEG", q), rel, q, cam, ["PNG", "HEIF", "JPEG"],
                                                   "messenger" if r.random() < 0.5 else "edit")
                    members.append(crel)
        self.add_group("burst", members, best)


def build(out: Path, name: str, n: int) -> Path:
    srcs = dev_sources()
    tune, held = srcs[0::2], srcs[1::2]
    seeds = {"chains": 101, "formats": 202, "bursts": 303, "holdout": 909, "hard": 5151, "hard2": 6262}
    if name.startswith("hard"):
        b: Builder = HardBuilder(out, name, seeds[name], srcs, wide=True)
    else:
        b = Builder(out, name, seeds[name], held if name == "holdout" else tune, wide=name == "holdout")
    for i in range(n):
        if name == "chains":
            b.chain_group()
        elif name == "formats":
            b.format_group()
        elif name == "bursts":
            b.burst_group()
        else:
            [b.chain_group, b.format_group, b.chain_group, b.burst_group][i % 4]()
        if i % 3 == 0:
            b.single()
    b.write()
    return b.out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/dupligone-provenance")
    ap.add_argument("--sets", default="chains,formats,bursts,holdout,hard,hard2")
    ap.add_argument("--n", type=int, default=40, help="groups per set")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    score = load_score()
    for name in args.sets.split(","):
        corpus = Path(args.out) / name
        if args.rebuild or not (corpus / "truth.json").exists():
            shutil.rmtree(corpus, ignore_errors=True)  # a half-built or older set must not mix in
            t0 = time.perf_counter()
            build(Path(args.out), name, args.n)
            print(f"built {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        t0 = time.perf_counter()
        proc = subprocess.run([*dupligone_command(), "scan", str(corpus / "photos"), "--json", "-q", "--reasons"],
                              capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        secs = time.perf_counter() - t0
        (corpus / "result.json").write_text(proc.stdout)
        s = score(str(corpus), json.loads(proc.stdout))
        print(f"{name:8} photos {s['photos']:4}  P {s['pair_precision']:.3f}  R {s['pair_recall']:.3f}  "
              f"lost {s['lost']}  best {s['best_accuracy']:.3f} ({s['best_groups']} groups)  {secs:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
