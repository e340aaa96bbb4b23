"""Camera RAW files through libraw (``rawpy``): the picture and the capture facts.

Part of the decoding adapter (``decode.py`` calls ``open_raw`` for RAW extensions). A RAW is
read in one of two ways:

* its **embedded preview** (the JPEG the camera rendered and stored inside the RAW), when it is
  at least as large as the analysis needs: a JPEG decode, ~10x faster than developing the RAW;
* otherwise the **demosaiced image** (libraw at half size when that is still large enough,
  camera white balance, no auto-brightening, so that a RAW and the JPEG made from it look alike).

Sizes are those of the developed image (the sensor's visible area, after the camera's
rotation). The capture facts (date, camera, GPS) come from the RAW's own TIFF/EXIF structure
where it has one, else from the preview's EXIF, else from libraw's timestamp.

Raises ``CorruptImage``, ``NotAnImage`` or ``TooManyPixels`` (``errors.py``); never writes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dupligoned.errors import CorruptImage, NotAnImage, TooManyPixels

# The extensions of the RAW formats libraw reads that cameras people own write.
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"})

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


@dataclass(frozen=True)
class RawPicture:
    """A RAW opened for analysis: the picture (RGB, rotated) and the full developed size."""

    image: Image.Image
    width: int  # full size, after rotation
    height: int
    source: str  # "preview" or "demosaic"
    exif: Image.Exif | None  # the RAW's own EXIF (or its preview's), when readable


def raw_format(path: str) -> str:
    """The format name stored for a RAW (``"DNG"``, ``"CR2"``…): its extension, upper case."""
    return path.rsplit(".", 1)[-1].upper()


def _tiff_exif(data: bytes) -> Image.Exif | None:
    """EXIF of a TIFF-structured RAW (DNG, CR2, NEF, ARW, PEF, SRW; ORF and RW2 only differ in
    the magic number) without decoding any pixel."""
    head = data[:4]
    if head in (b"II*\x00", b"MM\x00*"):
        tiff = data  # no copy of a RAW's megabytes for the common case
    elif head[:2] == b"II" and head[2:4] in (b"RO", b"RS", b"U\x00"):
        tiff = b"II*\x00" + data[4:]
    elif head == b"MMOR":
        tiff = b"MM\x00*" + data[4:]
    else:
        return None
    try:
        exif = Image.Exif()
        exif.load(tiff)
        return exif if len(exif) else None
    except Exception:  # a broken IFD is not a broken photo
        return None


def _flip(im: Image.Image, flip: int) -> Image.Image:
    """libraw's ``flip`` (0 none, 3 180°, 5 90° anticlockwise, 6 90° clockwise)."""
    if flip == 3:
        return im.transpose(Image.Transpose.ROTATE_180)
    if flip == 5:
        return im.transpose(Image.Transpose.ROTATE_90)
    if flip == 6:
        return im.transpose(Image.Transpose.ROTATE_270)
    return im


def looks_raw(head: bytes) -> bool:
    """Do a file's first bytes start like a camera RAW container (TIFF and its ORF/RW2
    variants, Fujifilm's RAF, Canon's CR3)?"""
    return (head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
            or head.startswith(b"FUJIFILMCCD-RAW") or head[4:12] == b"ftypcrx ")


def open_raw(path: str, data: bytes, *, need_px: int, max_pixels: int) -> RawPicture:
    """The picture of a RAW file's bytes, at least ``need_px`` on its long edge where the RAW
    is that large. Raises ``CorruptImage``, ``NotAnImage`` or ``TooManyPixels``."""
    try:
        import rawpy
    except ImportError:  # pragma: no cover - rawpy is a dependency; kept for a clear message
        raise NotAnImage(path, "RAW support needs rawpy (pip install rawpy)") from None
    if not looks_raw(data[:16]):
        raise NotAnImage(path, "not a camera RAW (its content is no RAW format)")
    try:
        raw = rawpy.imread(io.BytesIO(data))
    except rawpy.LibRawFileUnsupportedError:
        raise NotAnImage(path, "not a RAW libraw can read (format not recognised)") from None
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise CorruptImage(path, f"corrupt RAW: {exc}") from None
    with raw:
        s = raw.sizes
        w0, h0 = int(s.width), int(s.height)
        if w0 <= 0 or h0 <= 0:
            raise CorruptImage(path, f"corrupt RAW: size {w0}×{h0}")
        if w0 * h0 > max_pixels:
            raise TooManyPixels(path, f"too many pixels: {w0}×{h0} = {w0 * h0:,} > limit {max_pixels:,}")
        flip = int(s.flip)
        width, height = (h0, w0) if flip in (5, 6) else (w0, h0)
        exif = _tiff_exif(data)
        preview = _preview(raw, need_px, (w0, h0), flip)
        if preview is not None:
            im, pexif = preview
            return RawPicture(im, width, height, "preview", exif or pexif)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = raw.postprocess(
                    half_size=max(w0, h0) // 2 >= need_px,
                    use_camera_wb=True, no_auto_bright=True, output_bps=8,
                )
        except (rawpy.LibRawError, ValueError, MemoryError) as exc:
            raise CorruptImage(path, f"corrupt RAW (cannot develop it): {exc}") from None
        stamp = raw.other.timestamp if exif is None else None
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")  # postprocess applies the rotation
    if exif is None and stamp is not None:
        exif = Image.Exif()
        exif[0x0132] = stamp.strftime("%Y:%m:%d %H:%M:%S")
    return RawPicture(im, width, height, "demosaic", exif)


def _preview(raw: Any, need_px: int, raw_size: tuple[int, int], flip: int) -> tuple[Image.Image, Image.Exif | None] | None:
    """The embedded preview, rotated like the RAW, if it is large enough and shows the whole
    frame (its aspect ratio is the sensor's); None otherwise."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, ValueError):
        return None
    try:
        im: Image.Image
        if thumb.format == rawpy.ThumbFormat.JPEG:
            im = Image.open(io.BytesIO(thumb.data), formats=("JPEG",))
            pexif = im.getexif()
        elif thumb.format == rawpy.ThumbFormat.BITMAP:
            im, pexif = Image.fromarray(np.ascontiguousarray(thumb.data)), None
        else:
            return None
        pw, ph = im.size
        if max(pw, ph) < need_px:
            return None
        w0, h0 = raw_size
        same = abs(pw / ph - w0 / h0) < 0.02
        turned = abs(pw / ph - h0 / w0) < 0.02
        if not (same or turned):
            return None  # a letterboxed or cropped preview would hash as another picture
        if im.format == "JPEG":
            scale = 1
            while scale < 8 and max(pw, ph) / (scale * 2) >= need_px:
                scale *= 2
            im.draft("RGB", (max(1, pw // scale), max(1, ph // scale)))
        im.load()
        im = im.convert("RGB")
        if same:
            im = _flip(im, flip)  # stored as the sensor sees, like the RAW: turn it the same way
        return im, (pexif if pexif else None)
    except Exception:  # a broken preview: develop the RAW instead
        return None
