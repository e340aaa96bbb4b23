"""Where two copies of a photo differ: a picture of it for the compare view."""

from __future__ import annotations

import io

from PIL import Image, ImageChops

from dupligoned.adapters.decode import decode_photo

DIFF_PX = 1024  # long edge of the difference picture
GAIN = 4  # small differences (re-encoding, noise) made visible


def difference_png(path_a: str, path_b: str, *, max_pixels: int, long_edge: int = DIFF_PX) -> bytes:
    """A PNG of photo ``a`` darkened, with where ``b`` differs from it in red (brighter: more
    different). ``b`` is scaled to ``a``'s size first. Raises the decoder's ``PhotoError``."""
    def colour(path: str) -> Image.Image:
        dec = decode_photo(path, max_pixels=max_pixels, work_px=64, colour_px=long_edge, hash_bytes=False)
        assert dec.colour is not None
        return dec.colour.convert("RGB")

    a = colour(path_a)
    scale = min(1.0, long_edge / max(a.size))
    a = a.resize((max(1, round(a.width * scale)), max(1, round(a.height * scale))), Image.Resampling.LANCZOS)
    b = colour(path_b).resize(a.size, Image.Resampling.LANCZOS)
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: min(255, v * GAIN))
    base = a.convert("L").point(lambda v: v // 3).convert("RGB")
    red = Image.new("RGB", a.size, (255, 40, 40))
    out = Image.composite(red, base, diff)
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()
