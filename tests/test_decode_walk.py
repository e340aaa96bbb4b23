"""The decoder refuses bad files with a typed reason and never touches them; the walker stays
inside the library and skips junk."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dupligoned.adapters.decode import decode_photo
from dupligoned.adapters.walk import walk_photos
from dupligoned.core import hashing
from dupligoned.errors import CorruptImage, EmptyFile, NotAnImage, TooManyPixels
from tests import corpus

PHOTO = corpus.ORIGINAL  # a pristine 1024x768 camera JPEG drawn by tests/synth.py


def _hash(path: Path) -> tuple[int, int]:
    dec = decode_photo(str(path))
    return hashing.phash(dec.grey32), hashing.dhash(dec.grey9x8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size but holds one tiny compressed row: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _png_with_a_silent_bit_flip(source: Path) -> bytes:
    """A PNG with one flipped bit in its image data that Pillow decodes without a word, to
    wrong pixels (it stops inflating once it has every row, before zlib's own checksum)."""
    buf = io.BytesIO()
    src = Image.open(source).convert("RGB").resize((400, 300))
    src.save(buf, "PNG")
    png, ref = buf.getvalue(), np.asarray(src)
    last_data = png.index(b"IEND") - 8  # the last IDAT's data ends before its CRC
    for at in range(last_data - 16, last_data - 4000, -7):
        flipped = bytearray(png)
        flipped[at] ^= 0x80
        try:
            with Image.open(io.BytesIO(bytes(flipped))) as im:
                im.load()
                if not np.array_equal(np.asarray(im.convert("RGB")), ref):
                    return bytes(flipped)
        except Exception:
            continue
    raise AssertionError("no silently damaging bit flip found")


def test_bad_files_get_typed_errors_with_reasons_and_stay_unchanged(tmp_path: Path) -> None:
    good = corpus.copy(PHOTO, tmp_path / "good.jpg").read_bytes()
    # A JPEG start marker and then noise: recognised as a JPEG, unreadable as one.
    damaged = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
    png = _png_with_a_silent_bit_flip(tmp_path / "good.jpg")
    cases = {
        "empty.jpg": (b"", EmptyFile, "empty"),
        "notes.jpg": (b"these are my holiday notes\n" * 20, NotAnImage, "not an image"),
        "truncated.jpg": (good[: len(good) // 2], CorruptImage, "truncated"),
        "bomb.png": (_png_header_only(40_000, 40_000), TooManyPixels, "too many pixels"),
        "damaged.jpg": (damaged, CorruptImage, "corrupt"),
        "bitflip.png": (png, CorruptImage, "idat chunk fails its checksum"),
    }
    for name, (data, error, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        os.utime(path, (1_600_000_000, 1_600_000_000))
        with pytest.raises(error) as info:
            decode_photo(str(path))
        assert words in info.value.reason.lower(), (name, info.value.reason)
        assert info.value.path == str(path)
        assert path.read_bytes() == data and path.stat().st_mtime == 1_600_000_000  # untouched


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = corpus.copy(PHOTO, tmp_path / "a.jpg")
    with pytest.raises(TooManyPixels):
        decode_photo(str(path), max_pixels=1000)
    assert decode_photo(str(path)).width == Image.open(path).width


@pytest.mark.parametrize("orientation,transpose", [
    (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
    (3, Image.Transpose.ROTATE_180), (2, Image.Transpose.FLIP_LEFT_RIGHT),
])
def test_exif_orientation_is_applied_before_hashing(tmp_path: Path, orientation: int, transpose: Image.Transpose) -> None:
    src = Image.open(corpus.path(PHOTO))
    original = tmp_path / "original.png"
    src.save(original)
    stored = src.transpose(transpose)  # pixels stored turned; EXIF says how to show them
    exif = Image.Exif()
    exif[0x0112] = orientation
    rotated = tmp_path / "rotated.jpg"
    stored.save(rotated, quality=95, exif=exif.tobytes())
    p1, d1 = _hash(original)
    p2, d2 = _hash(rotated)
    assert hashing.distance(p1, d1, p2, d2) <= 2
    dec = decode_photo(str(rotated))
    assert (dec.width, dec.height) == src.size


def test_formats_decode_with_their_facts(tmp_path: Path) -> None:
    src = Image.open(corpus.path(PHOTO)).convert("RGB")
    src.save(tmp_path / "a.png")
    src.save(tmp_path / "a.webp", lossless=True)
    src.save(tmp_path / "b.webp", quality=80)
    src.save(tmp_path / "a.tiff")
    src.save(tmp_path / "q60.jpg", quality=60)
    import pillow_heif

    pillow_heif.from_pillow(src).save(tmp_path / "a.heic", quality=70)
    src.save(tmp_path / "a.mpo", format="MPO", save_all=True, append_images=[src.rotate(180)])
    facts = {p.name: decode_photo(str(p)) for p in sorted(tmp_path.iterdir())}
    assert facts["a.png"].lossless and facts["a.webp"].lossless and facts["a.tiff"].lossless
    assert not facts["b.webp"].lossless and not facts["a.heic"].lossless
    assert facts["a.heic"].format == "HEIF"
    assert abs((facts["q60.jpg"].jpeg_quality or 0) - 60) <= 3
    base = facts["a.png"]
    for name, dec in facts.items():
        d = hashing.distance(hashing.phash(base.grey32), hashing.dhash(base.grey9x8),
                             hashing.phash(dec.grey32), hashing.dhash(dec.grey9x8))
        assert d <= 3, name  # the MPO's first frame is the photo, not the rotated second one
        assert (dec.width, dec.height) == src.size


def test_avif_where_pillow_has_it(tmp_path: Path) -> None:
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF: pip install -U 'Pillow>=11.3'")
    Image.open(corpus.path(PHOTO)).save(tmp_path / "a.avif", quality=60)
    assert decode_photo(str(tmp_path / "a.avif")).format == "AVIF"


def test_colour_image_comes_from_the_same_decode(tmp_path: Path) -> None:
    dec = decode_photo(str(corpus.path(PHOTO)), colour_px=256)
    assert dec.colour is not None and dec.colour.mode == "RGB" and max(dec.colour.size) >= 256
    assert dec.work.ndim == 2


def test_walk_skips_junk_and_never_leaves_or_loops(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    outside = tmp_path / "outside"
    for d in (lib / "a" / "b", lib / "@eaDir", lib / "#recycle", lib / ".hidden", outside):
        d.mkdir(parents=True)
    data = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data, "PNG")
    for rel in ("a/one.jpg", "a/b/two.PNG", "three.heic", "@eaDir/thumb.jpg", "#recycle/old.jpg",
                ".hidden/x.jpg", ".dot.jpg", "a/partial.jpg.part", "a/dl.crdownload", "a/x.tmp",
                "Thumbs.db", ".DS_Store", "notes.txt"):
        (lib / rel).write_bytes(data.getvalue())
    (outside / "secret.jpg").write_bytes(data.getvalue())
    os.symlink(lib, lib / "a" / "loop")  # a loop back to the root
    os.symlink(outside, lib / "escape")  # a link out of the library
    os.symlink(outside / "secret.jpg", lib / "secret-link.jpg")
    found = sorted(os.path.relpath(p, lib) for p in walk_photos([str(lib)]))
    assert found == ["a/b/two.PNG", "a/one.jpg", "three.heic"]


def test_an_editors_mark_is_read_from_the_exif(tmp_path: Path) -> None:
    """What an editor leaves in a file: its name in Software, or a file date later than the
    capture time. A camera's firmware name and a date equal to the capture time are not marks."""
    from tests import synth

    im = synth.scene(5, (320, 240))

    def saved(name: str, software: str | None, modified: str) -> str | None:
        ex = synth.exif(camera={"make": "Canon", "model": "Canon EOS R6", "datetime": "2021:05:02 17:20:11"})
        ex[0x0132] = modified
        if software:
            ex[0x0131] = software
        return decode_photo(str(synth.save(im, tmp_path / name, 90, exif_block=ex))).edited_by

    assert saved("camera.jpg", "Firmware Version 1.6.0", "2021:05:02 17:20:11") is None
    assert saved("phone.jpg", "HDR+ 1.0.345", "2021:05:02 17:20:14") is None  # processed seconds later
    assert saved("lr.jpg", "Adobe Photoshop Lightroom Classic 12.0 (Windows)", "2022:06:07 10:00:00") == \
        "Adobe Photoshop Lightroom Classic 12.0 (Windows)"
    assert saved("snapseed.jpg", "Snapseed 2.0", "2021:05:02 17:20:11") == "Snapseed 2.0"
    assert saved("later.jpg", None, "2021:05:09 08:00:00") == "saved again after capture"
    plain = synth.save(im, tmp_path / "plain.png")
    assert decode_photo(str(plain)).edited_by is None
