"""Test photos made at run time: procedurally drawn, photo-like scenes and their derivatives.

The suite needs nothing outside the repository, so the photos the tests group, crop and rank are
drawn here. A scene is a landscape a camera could have taken: a sky with a gradient and clouds, a
fractal ridge of hills, a textured ground, houses with windows, trees, rocks and a few man-made
shapes, lit by a vignette, softened by a lens and grained by a sensor. That gives what real photos
give the pipeline: hundreds of ORB corners at every scale (window corners, branches, rock edges,
texture), a low-frequency layout that differs from seed to seed (so perceptual hashes of unrelated
scenes sit as far apart as real photos' do), and fine texture that JPEG, resizing and blurring
change a little but not the structure.

The API is small and stable; every function is deterministic for its arguments.

    scene(seed, size=(1600, 1200))  -> RGB Image   an unrelated photo per seed
    burst(seed, frame, size)        -> RGB Image   near shot ``frame`` of the burst of scene ``seed``
    aspect(im, ratio, at)           -> Image       the largest crop of ``ratio`` (w/h), slid by ``at``
    frac(im, x0, y0, x1, y1)        -> Image       a crop by fractions of width and height
    CROPS: dict[str, callable]                     the crop kinds the crop tests use (16x9, square,
                                                   quarter off each side, shared at 1080 px)
    resize(im, long_edge)           -> Image       a Lanczos downscale
    brightness(im, f) / contrast(im, f) / blur(im, r) / noise(im, sigma, seed) / greyscale(im)
    save(im, path, quality=92, exif=None, orientation=None, camera=None) -> Path
                                                   by suffix: .jpg/.jpeg, .png, .webp, .heic/.heif,
                                                   .tif; ``orientation`` (2..8) stores the pixels
                                                   transformed so an EXIF-aware viewer shows ``im``;
                                                   ``camera`` writes EXIF Make/Model/DateTime... fields
    photo(path, seed, size=..., **save_kw) -> Path scene(seed) saved to path
    group(kind, seed, folder, name)   -> list[Path]  a labelled group like the dev corpus's kinds:
                                                   exact, reencode, resize, edit, degrade, orient,
                                                   crop, burst (the first path is the original)

Seeds 0..999 are scenes; different seeds are unrelated photos.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

DEFAULT_SIZE = (1600, 1200)

# --- noise ------------------------------------------------------------------------------------


def _value_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random grid of ``cells`` across, upsampled bicubically."""
    gw = max(2, cells)
    gh = max(2, round(cells * h / w))
    grid = rng.random((gh, gw), dtype=np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _fractal(rng: np.random.Generator, w: int, h: int, base: int = 3, octaves: int = 7, gain: float = 0.55) -> np.ndarray:
    """1/f-like noise in about [0, 1], the texture statistics of natural scenes."""
    out = np.zeros((h, w), np.float32)
    amp, total, cells = 1.0, 0.0, base
    for _ in range(octaves):
        out += amp * _value_noise(rng, w, h, min(cells, w // 2))
        total += amp
        amp *= gain
        cells *= 2
    return out / total


def _ridge(rng: np.random.Generator, n: int, rough: float = 0.55) -> np.ndarray:
    """A 1-D fractal line of ``n`` points in about [-1, 1] (midpoint displacement)."""
    size = 1
    while size < n:
        size *= 2
    pts = np.zeros(size + 1)
    pts[0], pts[-1] = rng.uniform(-1, 1, 2)
    step, scale = size, 1.0
    while step > 1:
        half = step // 2
        mids = (pts[0:-1:step] + pts[step::step]) / 2 + rng.uniform(-scale, scale, len(pts[0:-1:step]))
        pts[half::step] = mids
        step, scale = half, scale * rough
    return pts[:n]


# --- the scene --------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, c: tuple[int, int, int], amount: int = 30) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(x + rng.integers(-amount, amount + 1), 0, 255)) for x in c)
    return r, g, b


def _draw_scene(seed: int, w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0x5EED])
    # Sky: a vertical gradient of a random hue, with fractal clouds.
    horizon = int(h * rng.uniform(0.25, 0.7))
    sky_top = np.array(_hsv(rng.uniform(0.5, 0.7), rng.uniform(0.3, 0.8), rng.uniform(0.45, 0.95)), np.float32)
    sky_low = np.array(_hsv(rng.uniform(0.0, 0.7), rng.uniform(0.05, 0.4), rng.uniform(0.75, 1.0)), np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(sky_top * (1 - t) + sky_low * t, (h, w, 3)).astype(np.float32)
    clouds = np.clip((_fractal(rng, w, h, base=2, octaves=6) - np.float32(rng.uniform(0.45, 0.6))) * 3.0, 0, 1)
    cl = (clouds * 0.8)[..., None]
    img = img * (1 - cl) + 245 * cl

    # Ground below the horizon: a textured field of one of a few palettes (grass, sand, snow, water).
    ground_hue = rng.choice([0.25, 0.3, 0.1, 0.08, 0.55, 0.0])
    g_col = np.array(_hsv(ground_hue, rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.7)), np.float32)
    tex = _fractal(rng, w, h, base=6, octaves=8, gain=0.65)
    img[horizon:] = g_col * (0.55 + 0.9 * tex[horizon:, :, None])

    # Two ridges of hills across the horizon, the far one paler.
    for layer, (amp, pale) in enumerate(((rng.uniform(0.08, 0.25), 0.45), (rng.uniform(0.04, 0.15), 0.0))):
        line = horizon - (0.5 + 0.5 * _ridge(rng, w)) * amp * h - (1 - layer) * 0.02 * h
        top, bottom = max(0, int(line.min())), min(h, int(horizon + layer * 0.05 * h))
        yy = np.arange(top, bottom)[:, None]
        hill = (yy >= line[None, :])[..., None]
        col = np.array(_hsv(rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5)), np.float32)
        col = col * (1 - pale) + sky_low * pale
        htex = _fractal(rng, w, bottom - top, base=8, octaves=6, gain=0.6)
        img[top:bottom] = np.where(hill, col * (0.6 + 0.8 * htex[..., None]), img[top:bottom])

    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    scale = w / 1600

    # Ground detail at every distance: stones, tufts and flowers, larger nearer the camera.
    for _ in range(int(rng.integers(250, 450))):
        d = rng.random()
        gy = horizon + d * (h - horizon)
        gx = rng.uniform(0, w)
        s = (3 + 40 * d ** 1.3) * scale * rng.uniform(0.5, 1.5)
        what = rng.random()
        if what < 0.45:  # a stone
            n = int(rng.integers(4, 7))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            pts = [(gx + math.cos(a) * s * rng.uniform(0.6, 1.2), gy + math.sin(a) * s * 0.6) for a in ang]
            draw.polygon(pts, fill=_jitter(rng, (int(g_col[0]), int(g_col[1]), int(g_col[2])), 70))
        elif what < 0.8:  # a tuft of grass
            c = _jitter(rng, (int(g_col[0] * 0.6), int(g_col[1] * 0.8), int(g_col[2] * 0.5)), 35)
            for _ in range(int(rng.integers(3, 7))):
                a = rng.uniform(-2.4, -0.7)
                draw.line((gx, gy, gx + math.cos(a) * s * 1.5, gy + math.sin(a) * s * 1.5), fill=c, width=max(1, int(s / 8)))
        else:  # a flower
            c = _hsv(rng.uniform(0, 1), rng.uniform(0.5, 1), rng.uniform(0.7, 1))
            r = max(1.5, s * 0.35)
            draw.ellipse((gx - r, gy - r, gx + r, gy + r), fill=c, outline=_jitter(rng, (60, 50, 20), 20))

    # Objects, far (small, near the horizon) to near (large, low in the frame).
    n_obj = int(rng.integers(14, 30))
    depths = np.sort(rng.random(n_obj))
    for d in depths:
        base_y = horizon + d * (h - horizon) * 0.95 + 4
        size = (30 + 260 * d ** 1.5) * scale * rng.uniform(0.6, 1.4)
        cx = rng.uniform(-0.05, 1.05) * w
        kind = rng.choice(["house", "tree", "tree", "rock", "pole", "car"])
        if kind == "house":
            bw, bh = size * rng.uniform(1.0, 2.0), size * rng.uniform(0.8, 1.6)
            wall = _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.4, 0.95))
            x0, y0 = cx - bw / 2, base_y - bh
            draw.rectangle((x0, y0, x0 + bw, base_y), fill=wall, outline=_jitter(rng, (40, 40, 40), 20))
            roof = _hsv(rng.uniform(0, 0.1), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
            draw.polygon([(x0 - bw * 0.08, y0), (cx + rng.uniform(-0.1, 0.1) * bw, y0 - bh * rng.uniform(0.3, 0.7)),
                          (x0 + bw * 1.08, y0)], fill=roof)
            nx, ny = int(rng.integers(2, 6)), int(rng.integers(1, 4))
            glass = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.55))
            for i in range(nx):
                for j in range(ny):
                    wx = x0 + bw * (i + 0.25) / nx
                    wy = y0 + bh * (j + 0.2) / (ny + 0.4)
                    ww, wh = bw * 0.5 / nx, bh * 0.45 / (ny + 0.4)
                    draw.rectangle((wx, wy, wx + ww, wy + wh), fill=_jitter(rng, glass, 25), outline=(235, 235, 225))
                    draw.line((wx + ww / 2, wy, wx + ww / 2, wy + wh), fill=(235, 235, 225))
            door_w = bw * 0.14
            dx = x0 + bw * rng.uniform(0.1, 0.75)
            draw.rectangle((dx, base_y - bh * 0.35, dx + door_w, base_y), fill=_jitter(rng, (90, 60, 40), 30))
        elif kind == "tree":
            trunk = _jitter(rng, (80, 55, 35), 20)
            th = size * rng.uniform(1.2, 2.2)
            draw.rectangle((cx - size * 0.06, base_y - th * 0.45, cx + size * 0.06, base_y), fill=trunk)
            leaf = _hsv(rng.uniform(0.2, 0.38), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.6))
            for _ in range(int(rng.integers(6, 16))):
                r = size * rng.uniform(0.18, 0.4)
                bx = cx + rng.normal(0, size * 0.25)
                by = base_y - th * rng.uniform(0.45, 1.0)
                draw.ellipse((bx - r, by - r, bx + r, by + r), fill=_jitter(rng, leaf, 30))
            for _ in range(int(rng.integers(3, 8))):  # branches
                a = rng.uniform(-2.4, -0.7)
                y = base_y - th * rng.uniform(0.3, 0.6)
                ln = size * rng.uniform(0.3, 0.6)
                draw.line((cx, y, cx + math.cos(a) * ln, y + math.sin(a) * ln), fill=trunk, width=max(1, int(size * 0.03)))
        elif kind == "rock":
            n = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rr = size * 0.5 * rng.uniform(0.5, 1.0, n)
            pts = [(cx + math.cos(a) * r * 1.4, base_y - size * 0.3 + math.sin(a) * r * 0.7) for a, r in zip(ang, rr, strict=True)]
            draw.polygon(pts, fill=_jitter(rng, (120, 115, 105), 40), outline=_jitter(rng, (60, 60, 55), 20))
        elif kind == "pole":
            ph = size * rng.uniform(2.0, 3.5)
            draw.rectangle((cx - size * 0.04, base_y - ph, cx + size * 0.04, base_y), fill=_jitter(rng, (70, 70, 75), 20))
            draw.rectangle((cx - size * 0.4, base_y - ph, cx + size * 0.4, base_y - ph + size * 0.3),
                           fill=_hsv(rng.uniform(0, 1), 0.8, 0.85), outline=(250, 250, 250), width=max(1, int(size * 0.03)))
        else:  # car
            cw, ch = size * 1.6, size * 0.5
            body = _hsv(rng.uniform(0, 1), rng.uniform(0.5, 0.95), rng.uniform(0.4, 0.95))
            draw.rounded_rectangle((cx - cw / 2, base_y - ch, cx + cw / 2, base_y - ch * 0.2), radius=ch * 0.2, fill=body)
            draw.polygon([(cx - cw * 0.3, base_y - ch), (cx - cw * 0.18, base_y - ch * 1.6), (cx + cw * 0.2, base_y - ch * 1.6),
                          (cx + cw * 0.32, base_y - ch)], fill=_jitter(rng, (60, 80, 100), 20))
            for wx in (cx - cw * 0.3, cx + cw * 0.3):
                r = ch * 0.3
                draw.ellipse((wx - r, base_y - ch * 0.2 - r, wx + r, base_y - ch * 0.2 + r), fill=(25, 25, 25))

    arr = np.asarray(canvas, np.float32)
    # Light: fine texture over everything (surfaces are never flat), a vignette, a little haze.
    grain = _fractal(rng, w, h, base=40, octaves=4, gain=0.6)
    yy = ((np.arange(h, dtype=np.float32) - h / 2) / (h / 2)) ** 2
    xx = ((np.arange(w, dtype=np.float32) - w / 2) / (w / 2)) ** 2
    light = (0.82 + 0.36 * grain) * (1 - 0.18 * (yy[:, None] + xx[None, :])) * np.float32(rng.uniform(0.85, 1.1))
    arr *= light[..., None]
    return np.clip(arr, 0, 255).astype(np.uint8)


def _finish(arr: np.ndarray, seed: int) -> Image.Image:
    """The camera: the sensor's grain, softened with the picture by demosaicing and the lens (so
    the grain is not white per-pixel noise, which no camera JPEG has and re-encoding erases)."""
    rng = np.random.default_rng([seed, 0x9A1])
    a = arr.astype(np.float32) + rng.standard_normal((arr.shape[0], arr.shape[1], 1), np.float32) * 3.0
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


@lru_cache(maxsize=32)
def _scene_cached(seed: int, w: int, h: int) -> Image.Image:
    return _finish(_draw_scene(seed, w, h), seed)


def scene(seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Unrelated photo number ``seed`` at ``size`` (w, h): a new RGB image the caller may change.

    A portrait size draws a portrait scene; the same seed at another size is the same layout
    drawn again (not a resize of it), so use :func:`resize` for resized copies."""
    w, h = size
    return _scene_cached(int(seed), int(w), int(h)).copy()


PAN = 0.01  # of the width, each shot of a burst: the camera follows the subject


@lru_cache(maxsize=8)
def _burst_canvas(seed: int, w: int, h: int) -> Image.Image:
    # The scene drawn a little larger than the frame: each shot is a window on it.
    return Image.fromarray(_draw_scene(seed, int(w * 1.1), int(h * 1.1)))


def burst(seed: int, frame: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Shot ``frame`` (0, 1, 2...) of a burst of scene ``seed``: the hand moved the camera a few
    pixels and a little round, a subject walked across, and each shot has its own grain."""
    w, h = size
    canvas = _burst_canvas(int(seed), int(w), int(h))
    rng = np.random.default_rng([seed, frame, 0xB0B])
    dx, dy = (frame * PAN * w + rng.normal(0, 0.006 * w)), rng.normal(0, 0.006 * h)
    angle = rng.normal(0, 0.6)
    cx, cy = canvas.width / 2 + dx, canvas.height / 2 + dy
    shot = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    shot = shot.crop((int(cx - w / 2), int(cy - h / 2), int(cx - w / 2) + w, int(cy - h / 2) + h))
    draw = ImageDraw.Draw(shot)
    srng = np.random.default_rng([seed, 0x5B])  # the subject: the same person, a step further each shot
    sx = w * (srng.uniform(0.2, 0.4) + 0.06 * frame)
    sy = h * srng.uniform(0.75, 0.9)
    s = h * 0.2
    colour = _hsv(srng.uniform(0, 1), 0.8, 0.8)
    draw.ellipse((sx - s * 0.15, sy - s * 1.3, sx + s * 0.15, sy - s * 1.0), fill=(225, 190, 160))
    draw.rectangle((sx - s * 0.2, sy - s, sx + s * 0.2, sy - s * 0.35), fill=colour)
    draw.line((sx - s * 0.1, sy - s * 0.35, sx - s * 0.2 + (frame % 2) * s * 0.2, sy), fill=(40, 40, 60), width=int(s * 0.1))
    draw.line((sx + s * 0.1, sy - s * 0.35, sx + s * 0.2 - (frame % 2) * s * 0.2, sy), fill=(40, 40, 60), width=int(s * 0.1))
    return _finish(np.asarray(shot), seed * 1000 + frame)


# --- derivatives ------------------------------------------------------------------------------


def aspect(im: Image.Image, ratio: float, at: float = 0.5) -> Image.Image:
    """The largest crop of ``im`` with aspect ``ratio`` (w/h), ``at`` 0..1 along the cut axis."""
    w, h = im.size
    if w / h > ratio:
        nw = int(h * ratio)
        x = int((w - nw) * at)
        return im.crop((x, 0, x + nw, h))
    nh = int(w / ratio)
    y = int((h - nh) * at)
    return im.crop((0, y, w, y + nh))


def frac(im: Image.Image, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
    """The crop from (x0, y0) to (x1, y1) in fractions of width and height."""
    w, h = im.size
    return im.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))


def _shared(im: Image.Image) -> Image.Image:
    c = frac(im, 0.12, 0.2, 0.85, 0.9)
    c.thumbnail((1080, 1080), Image.Resampling.LANCZOS)  # as messengers share it
    return c


CROPS: dict[str, Callable[[Image.Image], Image.Image]] = {
    # 16:9 from a 4:3 photo (or 4:3 from a wider one), the top part
    "16x9": lambda im: aspect(im, 16 / 9, 0.3) if im.width / im.height < 16 / 9 else aspect(im, 4 / 3, 0.6),
    "square": lambda im: aspect(im, 1.0, 0.7),
    "quarter": lambda im: frac(im, 0.25, 0.25, 0.75, 0.75),  # 25% off each side
    "shared": _shared,  # a crop, then downscaled to 1080 px long edge
}


def resize(im: Image.Image, long_edge: int) -> Image.Image:
    """A Lanczos resize to ``long_edge`` pixels on the longer side."""
    w, h = im.size
    f = long_edge / max(w, h)
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)


def brightness(im: Image.Image, f: float) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(f)


def contrast(im: Image.Image, f: float) -> Image.Image:
    return ImageEnhance.Contrast(im).enhance(f)


def blur(im: Image.Image, radius: float) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius))


def noise(im: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng([seed, 0x4015E])
    a = np.asarray(im.convert("RGB"), np.float32) + rng.normal(0, sigma, (im.height, im.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def greyscale(im: Image.Image) -> Image.Image:
    return ImageOps.grayscale(im).convert("RGB")


def reencode(im: Image.Image, quality: int) -> Image.Image:
    """``im`` as it looks after a JPEG round trip at ``quality``."""
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# --- files ------------------------------------------------------------------------------------

# What EXIF Orientation n asks a viewer to do, and so what the stored pixels must be: the inverse.
_STORE_FOR_ORIENTATION: dict[int, Callable[[Image.Image], Image.Image]] = {
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}

CAMERA = {"make": "Canon", "model": "Canon EOS 80D", "datetime": "2021:06:12 14:03:27"}


def exif(orientation: int | None = None, camera: dict[str, Any] | None = None) -> Image.Exif:
    """An EXIF block with ``orientation`` and camera fields: make, model, datetime ("YYYY:MM:DD
    HH:MM:SS"), software, width/height, exposure, iso, gps (lat, lon) in degrees."""
    ex = Image.Exif()
    if orientation is not None:
        ex[0x0112] = orientation
    if camera:
        if "make" in camera:
            ex[0x010F] = camera["make"]
        if "model" in camera:
            ex[0x0110] = camera["model"]
        if "software" in camera:
            ex[0x0131] = camera["software"]
        if "datetime" in camera:
            ex[0x0132] = camera["datetime"]
        sub = ex.get_ifd(0x8769)
        if "datetime" in camera:
            sub[0x9003] = camera["datetime"]  # DateTimeOriginal
            sub[0x9004] = camera["datetime"]
        if "iso" in camera:
            sub[0x8827] = int(camera["iso"])
        if "exposure" in camera:
            sub[0x829A] = float(camera["exposure"])
        if "width" in camera and "height" in camera:
            sub[0xA002], sub[0xA003] = int(camera["width"]), int(camera["height"])
        if "gps" in camera:
            lat, lon = camera["gps"]
            gps = ex.get_ifd(0x8825)

            def dms(v: float) -> tuple[float, float, float]:
                v = abs(v)
                d = int(v)
                m = int((v - d) * 60)
                return (float(d), float(m), round(((v - d) * 60 - m) * 60, 4))

            gps[1], gps[2] = ("N" if lat >= 0 else "S"), dms(lat)
            gps[3], gps[4] = ("E" if lon >= 0 else "W"), dms(lon)
    return ex


def save(im: Image.Image, path: str | Path, quality: int = 92, *, exif_block: Image.Exif | None = None,
         orientation: int | None = None, camera: dict[str, Any] | None = None) -> Path:
    """Write ``im`` to ``path`` in the format its suffix names and return the path.

    ``orientation`` (2..8) stores the pixels transformed and sets EXIF Orientation, so an
    EXIF-aware decoder shows ``im``; ``camera`` adds EXIF camera fields (see :func:`exif`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = im.convert("RGB")
    if orientation is not None and orientation != 1:
        stored = _STORE_FOR_ORIENTATION[orientation](stored)
    ex = exif_block if exif_block is not None else (exif(orientation, camera) if (orientation or camera) else None)
    kw: dict[str, Any] = {}
    if ex is not None:
        kw["exif"] = ex.tobytes()
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        stored.save(path, "JPEG", quality=quality, **kw)
    elif suffix == ".png":
        stored.save(path, "PNG", **kw)
    elif suffix == ".webp":
        stored.save(path, "WEBP", quality=quality, **kw)
    elif suffix in (".heic", ".heif"):
        import pillow_heif

        pillow_heif.register_heif_opener()
        stored.save(path, "HEIF", quality=quality, **kw)
    elif suffix in (".tif", ".tiff"):
        stored.save(path, "TIFF", **kw)
    else:
        raise ValueError(f"synth.save: no format for suffix {suffix!r} of {path}")
    return path


def photo(path: str | Path, seed: int, size: tuple[int, int] = DEFAULT_SIZE, **save_kw: Any) -> Path:
    """Scene ``seed`` saved to ``path`` (a unique photo)."""
    return save(scene(seed, size), path, **save_kw)


# --- labelled groups like the dev corpus's -----------------------------------------------------

KINDS = ("exact", "reencode", "resize", "edit", "degrade", "orient", "crop", "burst")


def group(kind: str, seed: int, folder: str | Path, name: str | None = None,
          size: tuple[int, int] = DEFAULT_SIZE) -> list[Path]:
    """Write a group of ``kind`` made from scene ``seed`` into ``folder``; the original first.

    exact: the original and a byte-identical copy in a subfolder; reencode: JPEG q70, PNG, WebP
    q80; resize: JPEGs at 60% and 30% of the long edge; edit: +30% brightness, -20% contrast, greyscale;
    degrade: blur 2.5 px, noise sigma 12, JPEG q20 (the original is the one to keep); orient:
    EXIF Orientation 6, 8 and 3 with rotated pixels; crop: the four :data:`CROPS`; burst: four
    shots, the third blurred."""
    folder = Path(folder)
    name = name or f"IMG_{seed:04d}"
    if kind == "burst":
        shots = [burst(seed, k, size) for k in range(4)]
        shots[2] = blur(shots[2], 3.0)
        return [save(s, folder / f"{name}_{k}.jpg", 92) for k, s in enumerate(shots)]
    im = scene(seed, size)
    orig = save(im, folder / f"{name}.jpg", 95, camera=CAMERA)
    out = [orig]
    if kind == "exact":
        copy = folder / "copy" / f"{name}.jpg"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(orig.read_bytes())
        out.append(copy)
    elif kind == "reencode":
        out += [save(im, folder / f"{name}_q70.jpg", 70), save(im, folder / f"{name}.png"),
                save(im, folder / f"{name}.webp", 80)]
    elif kind == "resize":
        big, small = round(max(im.size) * 0.6), round(max(im.size) * 0.3)
        out += [save(resize(im, big), folder / f"{name}_{big}.jpg", 88), save(resize(im, small), folder / f"{name}_{small}.jpg", 85)]
    elif kind == "edit":
        out += [save(brightness(im, 1.3), folder / f"{name}_bright.jpg", 90),
                save(contrast(im, 0.8), folder / f"{name}_flat.jpg", 90),
                save(greyscale(im), folder / f"{name}_bw.jpg", 90)]
    elif kind == "degrade":
        out += [save(blur(im, 2.5), folder / f"{name}_blur.jpg", 92), save(noise(im, 12, seed), folder / f"{name}_noise.jpg", 92),
                save(im, folder / f"{name}_q20.jpg", 20)]
    elif kind == "orient":
        out += [save(im, folder / f"{name}_o{o}.jpg", 92, orientation=o) for o in (6, 8, 3)]
    elif kind == "crop":
        out += [save(crop(im), folder / f"{name}_{k}.jpg", 85) for k, crop in CROPS.items()]
    else:
        raise ValueError(f"synth.group: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return out
