"""The one module that opens image files.

``decode_photo`` reads a file once, hashes its bytes, decodes it at the smallest scale the
caller needs (JPEG DCT scaling through ``Image.draft``), applies the EXIF orientation, and returns
the small arrays the core measures. It never writes to the file. Every way a file can fail is a
typed ``PhotoError`` with a short reason.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import warnings
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from dupligoned.adapters.raw import RAW_EXTENSIONS, open_raw, raw_format
from dupligoned.core.hashing import DHASH_SHAPE, PHASH_SIZE
from dupligoned.core.originals import capture_seconds
from dupligoned.errors import CorruptImage, EmptyFile, NotAnImage, TooManyPixels, UnreadableFile

try:  # HEIC/HEIF (and AVIF on older Pillow) through libheif
    import pillow_heif

    pillow_heif.register_heif_opener()
    HAVE_HEIF = True
except ImportError:  # pragma: no cover - pillow-heif is a hard dependency; kept for clarity
    HAVE_HEIF = False

try:  # JPEG XL through libjxl (registers the "JXL" format with Pillow)
    import pillow_jxl  # noqa: F401

    HAVE_JXL = True
except ImportError:  # pragma: no cover - pillow-jxl-plugin is a hard dependency
    HAVE_JXL = False

# Extensions DupliGone looks at. Everything else in a folder is not a photo and is not reported.
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".mpo",
     ".heic", ".heif", ".avif", ".jxl"}
) | RAW_EXTENSIONS
_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF", "JXL")  # JPEG also opens MPO
_LOSSLESS_FORMATS = frozenset({"PNG", "TIFF", "BMP", "GIF"})

# The memory budget of one decode: most pixels decoded at full size. Pillow holds ~4 bytes a
# pixel, so 64 MP is ~256 MB over a worker's ~60 MB: a small NAS's two workers stay well under
# 1 GB, and every camera and phone (61-MP full frame, 48-MP phones) fits. JPEG counts after DCT
# scaling (a 200-MP phone JPEG decodes at 1/8 = 3 MP); PNG, TIFF, WebP and HEIC cannot be decoded
# reduced and are refused above it, from their header, before a pixel is decoded.
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_WORK_PX = 512
# A JPEG may be decoded (DCT-scaled) this much below the size asked for, and then scaled up.
# Measured on 12-MP camera JPEGs: 1/8 instead of 1/4 scale cuts decode + resizes from ~41 to
# ~32 ms; the working image's Laplacian variance reads ~10% lower (≈1% of the quality score),
# and hashes move by 0.2 on average (max 1) — far inside any grouping threshold.
DRAFT_SLACK = 0.05

# A truncated file must be an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own limit is checked from the header before any pixel is decoded; Pillow's global guard
# would otherwise warn (or raise at 2×) with a message that names no file.
Image.MAX_IMAGE_PIXELS = None

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_TAG_MAKE, _TAG_MODEL, _TAG_DATETIME, _TAG_SOFTWARE = 0x010F, 0x0110, 0x0132, 0x0131
# Editors that name themselves in EXIF Software (a camera writes its firmware there: "Ver.1.00",
# "Firmware Version 1.0.2", "HDR+ 1.0", "14.4.2").
_EDITORS = re.compile(
    r"photoshop|lightroom|gimp|snapseed|picasa|darktable|rawtherapee|capture one|luminar|affinity|pixelmator|"
    r"acdsee|paint\.net|photoscape|vsco|picsart|instagram|polarr|faststone|irfanview|xnview|digikam|shotwell|"
    r"dxo|on1 photo|photo ?editor|windows photo|canva|fotor", re.IGNORECASE)
SAVED_AGAIN_S = 120  # a file saved this long after its capture time was written again (an edit)
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DecodedPhoto:
    """What one decode yields. Sizes are after EXIF orientation, at full resolution."""

    width: int
    height: int
    format: str
    lossless: bool
    jpeg_quality: int | None
    size_bytes: int
    content_hash: str
    grey32: npt.NDArray[np.uint8]  # imagehash's pHash input
    grey9x8: npt.NDArray[np.uint8]  # imagehash's dHash input
    work: npt.NDArray[np.uint8]  # greyscale, long edge ``work_px`` (the fixed working size)
    colour: Image.Image | None  # RGB at reduced size, when asked for (thumbnails)
    taken_at: str | None
    camera: str | None
    has_gps: bool
    edited_by: str | None = None  # ``_exif_of``: an editor's name, or "saved again after capture"


def is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def hash_file(path: str) -> str:
    """``content_hash`` of a file's bytes, read in blocks. Raises ``UnreadableFile``."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from None
    return h.hexdigest()


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _estimate_jpeg_quality(im: Image.Image) -> int | None:
    """libjpeg quality (1–100) from the luminance quantisation table, as ImageMagick estimates it."""
    tables = getattr(im, "quantization", None)
    if not tables or 0 not in tables:
        return None
    std = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40,
           57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35,
           55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100,
           103, 99)
    q = list(tables[0])
    # Order does not matter for a sum; Pillow gives the table in zig-zag order.
    scale = 100.0 * sum(q) / sum(std)
    if scale <= 0:
        return 100
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(round(min(100.0, max(1.0, quality))))


def sniff_format(head: bytes) -> str | None:
    """The photo format a file's first bytes announce (``JPEG``, ``PNG``, ``WebP``, ``TIFF``,
    ``AVIF``, ``HEIF``, ``JXL``, ``RAW``), or None. Sixteen bytes are enough."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00") or head.startswith(b"FUJIFILM") or head[4:12] == b"ftypcrx ":
        return "RAW"  # Olympus, Panasonic, Fujifilm, Canon CR3 (the TIFF-based RAWs say "TIFF")
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JXL"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    return None


def png_damage(data: bytes) -> str | None:
    """Why a PNG's critical chunks (IHDR, PLTE, IDAT, IEND) cannot be trusted, or None.

    Pillow checks the CRC of the chunks it parses but not of the image data it inflates, so a
    flipped bit in IDAT decodes as silently wrong pixels. Checking every critical chunk's CRC
    costs a crc32 over the file (~1 ms for a 5 MB PNG). Ancillary chunks (text, colour
    profiles) do not change the pixels and are left to Pillow.
    """
    view = memoryview(data)
    pos, n = 8, len(data)
    while pos + 12 <= n:
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        end = pos + 8 + length
        if end + 4 > n:
            return None  # runs past the end: Pillow reports the file as truncated
        if kind[:1].isupper() and zlib.crc32(view[pos + 4 : end]) != int.from_bytes(view[end : end + 4], "big"):
            return f"its {kind.decode('latin-1')} chunk fails its checksum"
        if kind == b"IEND":
            break
        pos = end + 4
    return None


def _is_lossless(im: Image.Image, fmt: str, data: bytes) -> bool:
    if fmt in _LOSSLESS_FORMATS:
        return not (fmt == "TIFF" and im.info.get("compression") in ("jpeg", "tiff_jpeg"))
    if fmt == "WEBP":
        return b"VP8L" in data[12:40]
    return False


def _exif_facts(im: Image.Image) -> tuple[str | None, str | None, bool, int, str | None]:
    try:
        exif = im.getexif()
    except Exception:  # a broken EXIF block is not a broken photo
        return None, None, False, 1, None
    return _exif_of(exif)


def _saved_again(original: Any, modified: Any) -> bool:
    t0, t1 = capture_seconds(str(original)), capture_seconds(str(modified))
    return t0 is not None and t1 is not None and t1 - t0 > SAVED_AGAIN_S


def _exif_of(exif: Image.Exif) -> tuple[str | None, str | None, bool, int, str | None]:
    """(capture date, camera, has GPS, orientation, edited by) of an EXIF block. "Edited by" is
    an editor's name from Software, or "saved again after capture" when the file's date is
    later than its capture time: what a camera writes has neither."""
    sub: Any = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    taken = sub.get(_TAG_DATETIME_ORIGINAL) or exif.get(_TAG_DATETIME)
    make = str(exif.get(_TAG_MAKE) or "").strip("\x00 ")
    model = str(exif.get(_TAG_MODEL) or "").strip("\x00 ")
    camera = (model if make and model.lower().startswith(make.lower()) else f"{make} {model}").strip()
    orientation = exif.get(_TAG_ORIENTATION, 1)
    try:
        orientation = int(orientation)
    except (TypeError, ValueError):
        orientation = 1
    software = str(exif.get(_TAG_SOFTWARE) or "").strip("\x00 ")
    edited_by = software[:60] if _EDITORS.search(software) else (
        "saved again after capture" if sub.get(_TAG_DATETIME_ORIGINAL) and exif.get(_TAG_DATETIME)
        and _saved_again(sub.get(_TAG_DATETIME_ORIGINAL), exif.get(_TAG_DATETIME)) else None)
    return ((str(taken).strip("\x00 ") or None) if taken else None, camera or None, _GPS_IFD in exif, orientation,
            edited_by)


def _resize_long_edge(im: Image.Image, long_edge: int) -> Image.Image:
    w, h = im.size
    scale = long_edge / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def decode_photo(
    path: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    work_px: int = DEFAULT_WORK_PX,
    colour_px: int = 0,
    hash_bytes: bool = True,
) -> DecodedPhoto:
    """Decode ``path`` for analysis.

    ``work_px`` is the long edge of the greyscale working image (the fixed size quality is
    measured at); ``colour_px`` > 0 also returns an RGB image at least that large (for
    thumbnails), decoded in the same pass. ``hash_bytes=False`` leaves ``content_hash`` empty
    (a one-shot scan hashes only files whose size another file shares: see ``hash_file``).

    Raises ``EmptyFile``, ``NotAnImage``, ``CorruptImage``, ``TooManyPixels`` or
    ``UnreadableFile``; never modifies the file.
    """
    data = _read_photo(path)
    try:
        dec = _decode_bytes(path, data, max_pixels=max_pixels, work_px=work_px, colour_px=colour_px)
        return replace(dec, content_hash=content_hash(data)) if hash_bytes else dec
    except (EmptyFile, NotAnImage, CorruptImage, TooManyPixels):
        raise
    except UnidentifiedImageError:
        kind = sniff_format(data)
        if kind:  # it starts like a known format, so it is a damaged photo, not some other file
            raise CorruptImage(path, f"corrupt {kind} (the header cannot be read)") from None
        raise NotAnImage(path, "not an image (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(path, str(exc)) from None
    except Exception as exc:  # any decoder failure is this file's problem, never the daemon's
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg:
            msg = "truncated file (image data ends early)"
        raise CorruptImage(path, f"corrupt image: {msg}") from None


def is_raw_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


def _decode_raw(path: str, data: bytes, *, max_pixels: int, work_px: int, colour_px: int) -> DecodedPhoto:
    """A RAW through libraw (``raw.py``): its preview or its demosaiced image, EXIF from the RAW.
    Stored as lossless (it is the sensor's data), format = its extension (``DNG``, ``CR2``…)."""
    pic = open_raw(path, data, need_px=max(work_px, colour_px), max_pixels=max_pixels)
    taken, camera, has_gps, edited_by = None, None, False, None
    if pic.exif is not None:
        taken, camera, has_gps, _, edited_by = _exif_of(pic.exif)
    return _finish(pic.image, pic.width, pic.height, raw_format(path), True, None, len(data),
                   work_px=work_px, colour_px=colour_px, taken=taken, camera=camera, has_gps=has_gps,
                   edited_by=edited_by)


def _decode_bytes(path: str, data: bytes, *, max_pixels: int, work_px: int, colour_px: int) -> DecodedPhoto:
    if is_raw_name(path):
        return _decode_raw(path, data, max_pixels=max_pixels, work_px=work_px, colour_px=colour_px)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's EXIF/ICC chatter is not the person's problem
        im: Image.Image = Image.open(io.BytesIO(data), formats=_FORMATS)
        fmt = im.format or "?"
        w0, h0 = im.size
        if w0 <= 0 or h0 <= 0:
            raise CorruptImage(path, f"corrupt image: size {w0}×{h0}")
        need = max(work_px, colour_px)
        scale = _jpeg_scale(max(w0, h0), need) if fmt in ("JPEG", "MPO") else 1
        decoded = (w0 // scale) * (h0 // scale)
        if decoded > max_pixels:
            how = f"decoded at 1/{scale}: {decoded:,}" if scale > 1 else (
                f"{fmt} cannot be decoded reduced" if fmt not in ("JPEG", "MPO") else "")
            raise TooManyPixels(
                path, f"too many pixels: {w0}×{h0} = {w0 * h0:,} ({how}) > the decode budget "
                      f"{max_pixels:,} ([analysis] max_pixels)".replace(" ()", "")
            )
        if fmt == "PNG" and (damage := png_damage(data)):
            raise CorruptImage(path, f"corrupt PNG: {damage}")
        taken, camera, has_gps, orientation, edited_by = _exif_facts(im)
        jpeg_q = _estimate_jpeg_quality(im) if fmt in ("JPEG", "MPO") else None
        lossless = _is_lossless(im, fmt, data)
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)  # MPO: the first frame is the photo; the rest are previews or depth maps
        if fmt in ("JPEG", "MPO"):
            mode = "RGB" if colour_px else "L"
            im.draft(mode, (max(1, w0 // scale), max(1, h0 // scale)))
        im.load()
        im = _reduce_early(im, need)
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
    width, height = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
    return _finish(im, width, height, fmt, lossless, jpeg_q, len(data), work_px=work_px, colour_px=colour_px,
                   taken=taken, camera=camera, has_gps=has_gps, edited_by=edited_by)


def _jpeg_scale(long0: int, need: int) -> int:
    """DCT scaling: decode at 1/2, 1/4 or 1/8 while the long edge stays ≥ what we need, less a
    small slack: a 4032-pixel camera photo at 1/8 is 504 pixels, and taking it (then a 1.6%
    upscale to 512) instead of 1/4 saves about a fifth of the analysis."""
    floor = need * (1.0 - DRAFT_SLACK)
    scale = 1
    while scale < 8 and long0 / (scale * 2) >= floor:
        scale *= 2
    return scale


def _reduce_early(im: Image.Image, need: int) -> Image.Image:
    """A large decode box-reduced at once (to ≥ 2× what is needed, as ``resize``'s reducing gap
    would do later) and the full-size pixels let go: the colour and grey copies, thumbnails and
    hashes are then made from the small one. Keeps a worker's memory near one full decode."""
    factor = max(im.size) // (2 * need) if need > 0 else 1
    if factor < 2:
        return im
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK"):  # palette, 1-bit: averaged as colours
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return im.reduce(factor)


def _finish(im: Image.Image, width: int, height: int, fmt: str, lossless: bool, jpeg_q: int | None,
            size_bytes: int, *, work_px: int, colour_px: int, taken: str | None, camera: str | None,
            has_gps: bool, edited_by: str | None = None) -> DecodedPhoto:
    """The arrays the core measures, from a decoded (and rotated) picture."""
    colour = None
    if colour_px:
        rgb = im.convert("RGB") if im.mode != "RGB" else im
        colour = rgb
        grey_img = rgb.convert("L")
    else:
        grey_img = _to_grey(im)
    grey32 = np.asarray(grey_img.resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS))
    grey9x8 = np.asarray(grey_img.resize((DHASH_SHAPE[1], DHASH_SHAPE[0]), Image.Resampling.LANCZOS))
    work = np.asarray(_resize_long_edge(grey_img, work_px))
    return DecodedPhoto(
        width=width, height=height, format=fmt, lossless=lossless, jpeg_quality=jpeg_q,
        size_bytes=size_bytes, content_hash="", grey32=grey32, grey9x8=grey9x8,
        work=work, colour=colour, taken_at=taken, camera=camera, has_gps=has_gps, edited_by=edited_by,
    )


def _to_grey(im: Image.Image) -> Image.Image:
    if im.mode == "L":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / max(top, 255.0))).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "P", "PA"):
        # Transparent areas count as white, as a viewer on a light page shows them.
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("L")
    return im.convert("L")


def decode_grey(path: str, *, long_edge: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """A greyscale array of ``path`` at the given long edge (EXIF orientation applied).

    Used to compare a group's members at one common size. Raises like ``decode_photo``.
    """
    return decode_photo(path, max_pixels=max_pixels, work_px=long_edge).work


@dataclass(frozen=True)
class LumaPlane:
    """A photo's full-resolution luma as stored (before EXIF orientation), for reading its
    compression history: JPEG blocks sit on the stored pixel grid."""

    raw: npt.NDArray[np.uint8]
    orientation: int
    jpeg_table: tuple[int, ...] | None  # the luminance quantisation table, row order (JPEG only)
    format: str

    def oriented(self) -> npt.NDArray[np.uint8]:
        """The plane as a viewer shows it (EXIF orientation applied)."""
        g, o = self.raw, self.orientation
        if o == 2:
            g = g[:, ::-1]
        elif o == 3:
            g = g[::-1, ::-1]
        elif o == 4:
            g = g[::-1, :]
        elif o == 5:
            g = g.T
        elif o == 6:
            g = np.rot90(g, -1)
        elif o == 7:
            g = g.T[::-1, ::-1]
        elif o == 8:
            g = np.rot90(g, 1)
        return np.ascontiguousarray(g)


def _read_photo(path: str) -> bytes:
    """A photo file's bytes. Raises ``NotAnImage`` (a directory or a link), ``UnreadableFile``
    (missing, no permission, an I/O error) or ``EmptyFile``."""
    try:
        # O_NOFOLLOW: a symbolic link is never read as a photo (it is no copy, and may lead
        # out of the libraries), even one swapped in after the file was queued.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise NotAnImage(path, "is a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAnImage(path, "a symbolic link (links are never analysed)") from None
        raise UnreadableFile(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise EmptyFile(path, "empty file (0 bytes)")
    return data


def decode_luma(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LumaPlane:
    """The full-resolution luma plane of ``path`` (a JPEG's Y channel as its decoder outputs it),
    its EXIF orientation and, for a JPEG, its luminance quantisation table. Raises like
    ``decode_photo`` (a file gone or swapped for a link since it was analysed included)."""
    data = _read_photo(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
                fmt = im.format or "?"
                if im.size[0] * im.size[1] > max_pixels:
                    raise TooManyPixels(path, f"too many pixels: {im.size[0]}×{im.size[1]}")
                table = None
                orientation = _exif_facts(im)[3]
                if fmt in ("JPEG", "MPO"):
                    tables = getattr(im, "quantization", None) or {}
                    table = tuple(int(v) for v in tables[0]) if 0 in tables and len(tables[0]) == 64 else None
                    im.draft("L", im.size)  # the Y plane itself, no colour conversion
                im.load()
                raw = np.asarray(_to_grey(im))
    except TooManyPixels:
        raise
    except OSError as exc:
        raise CorruptImage(path, f"corrupt image: {exc}") from None
    except Exception as exc:
        raise CorruptImage(path, f"corrupt image: {exc or type(exc).__name__}") from None
    return LumaPlane(raw, orientation, table, fmt)
