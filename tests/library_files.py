"""Files of a real photo library, made by the tests: camera RAWs (DNG written by ``pidng`` from a
drawn photo, with or without an embedded JPEG preview), Live Photo videos (a small QuickTime
file), sidecars of each kind (XMP, AAE, Google Takeout JSON), JPEG XL and HEIC photos.

``scene`` draws a photo-like picture (gradients, overlapping shapes, fine texture, sensor
noise) so that hashes and quality figures behave as on a photo.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# XYZ -> linear sRGB: with it as the DNG's ColorMatrix1 the camera's colours are sRGB's, so
# libraw develops the picture we drew (and a RAW hashes like the JPEG made from it).
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def scene(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 picture that looks and measures like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0.5, 1.5, 2)
    base = np.stack([x / w * 180 * a + 30, y / h * 170 * b + 40, (x + y) / (w + h) * 150 + 50], -1)
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(22):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(max(2, w // 30), max(3, w // 6)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
        else:
            d.rectangle([x0 - r, y0 - r // 2, x0 + r, y0 + r // 2], fill=colour)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.line([x0, y0, x0 + int(rng.integers(-w // 4, w // 4)), y0 + int(rng.integers(-h // 4, h // 4))],
               fill=tuple(int(v) for v in rng.integers(0, 255, 3)), width=2)
    arr = np.asarray(im.filter(ImageFilter.GaussianBlur(0.8))).astype(np.float32)
    arr += rng.normal(0, 4, arr.shape)
    return arr.clip(0, 255).astype(np.uint8)


def _exif(taken: str | None, make: str = "Canon", model: str = "Canon EOS 5D Mark IV") -> bytes:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = make, model
    if taken:
        ex[0x0132] = taken
        ex.get_ifd(0x8769)[0x9003] = taken
    return ex.tobytes()


def save_jpeg(path: Path, rgb: np.ndarray, *, quality: int = 92, taken: str | None = None,
              camera: bool = True) -> Path:
    Image.fromarray(rgb).save(path, "JPEG", quality=quality, exif=_exif(taken) if camera else b"")
    return path


def save_heic(path: Path, rgb: np.ndarray, *, taken: str | None = None) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    Image.fromarray(rgb).save(path, "HEIF", quality=90, exif=_exif(taken, "Apple", "iPhone 13"))
    return path


def save_jxl(path: Path, rgb: np.ndarray, *, taken: str | None = None, orientation: int = 1,
             lossless: bool = False) -> Path:
    import pillow_jxl  # noqa: F401  (registers JXL)

    ex = Image.Exif()
    ex.load(_exif(taken))
    if orientation != 1:
        ex[0x0112] = orientation
    Image.fromarray(rgb).save(path, "JXL", quality=90, lossless=lossless, exif=ex.tobytes())
    return path


def _mosaic(rgb: np.ndarray, bpp: int) -> np.ndarray:
    """The RGGB Bayer mosaic a sensor would have recorded for ``rgb`` (linear light)."""
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2 * (2**bpp - 1)
    raw = np.zeros(rgb.shape[:2], np.uint16)
    raw[0::2, 0::2] = lin[0::2, 0::2, 0]
    raw[0::2, 1::2] = lin[0::2, 1::2, 1]
    raw[1::2, 0::2] = lin[1::2, 0::2, 1]
    raw[1::2, 1::2] = lin[1::2, 1::2, 2]
    return raw


def save_dng(path: Path, rgb: np.ndarray, *, taken: str | None = "2024:05:01 10:00:00", preview_px: int = 0,
             make: str = "Canon", model: str = "EOS 5D Mark IV") -> Path:
    """A DNG of ``rgb`` as a camera would write it (12-bit RGGB mosaic, camera, date), written
    with ``pidng``. ``preview_px`` > 0 embeds a JPEG preview of that long edge (IFD0, with the
    RAW in a SubIFD, as cameras and Adobe's converter lay it out)."""
    from pidng.dng import DNG, Type, dngIFD, dngTag
    from pidng.dng import Tag as T
    from pidng.packing import pack12

    bpp = 12
    h, w, _ = rgb.shape
    tile = pack12(_mosaic(rgb, bpp)).tobytes()
    colour = [dngTag(T.ColorMatrix1, [[int(round(v * 10000)), 10000] for v in _XYZ_TO_SRGB]),
              dngTag(T.CalibrationIlluminant1, [21]), dngTag(T.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
              dngTag(T.Make, make), dngTag(T.Model, model), dngTag(T.UniqueCameraModel, f"{make} {model}"),
              dngTag(T.DNGVersion, [1, 4, 0, 0]), dngTag(T.DNGBackwardVersion, [1, 2, 0, 0]),
              dngTag(T.Orientation, [1])]
    if taken:
        colour.append(dngTag(T.DateTime, taken))
    tile_offsets = dngTag(T.TileOffsets, [0])
    raw_tags = [dngTag(T.NewSubfileType, [0]), dngTag(T.ImageWidth, [w]), dngTag(T.ImageLength, [h]),
                dngTag(T.TileWidth, [w]), dngTag(T.TileLength, [h]), tile_offsets,
                dngTag(T.TileByteCounts, [len(tile)]), dngTag(T.Compression, [1]),
                dngTag(T.PhotometricInterpretation, [32803]), dngTag(T.SamplesPerPixel, [1]),
                dngTag(T.BitsPerSample, [bpp]), dngTag(T.CFARepeatPatternDim, [2, 2]),
                dngTag(T.CFAPattern, [0, 1, 1, 2]), dngTag(T.BlackLevel, [0]), dngTag(T.WhiteLevel, [2**bpp - 1])]
    dng = DNG()
    main = dngIFD()
    strip_offsets = None
    if preview_px:
        prev = Image.fromarray(rgb)
        prev.thumbnail((preview_px, preview_px))
        buf = io.BytesIO()
        prev.save(buf, "JPEG", quality=90)
        jpg = buf.getvalue()
        dng.ImageDataStrips += [tile, jpg]
        raw_ifd = dngIFD()
        raw_ifd.tags += raw_tags
        # pidng's own IFD-typed tag cannot be built (a str/bytes slip); a Long tag with the
        # sub-IFD attached is written the same way.
        sub = dngTag((330, Type.Long), [0])
        sub.subIFD = raw_ifd
        strip_offsets = dngTag(T.StripOffsets, [0])
        pw, ph = prev.size
        main.tags += [dngTag(T.NewSubfileType, [1]), dngTag(T.ImageWidth, [pw]), dngTag(T.ImageLength, [ph]),
                      dngTag(T.BitsPerSample, [8, 8, 8]), dngTag(T.Compression, [7]),
                      dngTag(T.PhotometricInterpretation, [6]), dngTag(T.SamplesPerPixel, [3]),
                      dngTag(T.RowsPerStrip, [ph]), strip_offsets, dngTag(T.StripByteCounts, [len(jpg)]),
                      sub] + colour
    else:
        dng.ImageDataStrips.append(tile)
        main.tags += raw_tags + colour
    dng.IFDs.append(main)
    total = dng.dataLen()
    tile_offsets.setValue([dng.StripOffsets[0]])
    if strip_offsets is not None:
        strip_offsets.setValue([dng.StripOffsets[1]])
    out = bytearray(total)
    dng.setBuffer(out)
    dng.write()
    path.write_bytes(bytes(out))
    return path


def _atom(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def save_mov(path: Path, seed: int = 0, seconds: int = 3) -> Path:
    """A small QuickTime file as an iPhone's Live Photo video is (ftyp, mdat, moov/mvhd)."""
    rng = np.random.default_rng(seed)
    mvhd = struct.pack(">B3xIIII", 0, 0, 0, 600, 600 * seconds) + b"\x00\x01\x00\x00\x01\x00" + b"\x00" * 70
    body = (_atom(b"ftyp", b"qt  \x00\x00\x02\x00qt  ") + _atom(b"wide", b"")
            + _atom(b"mdat", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
            + _atom(b"moov", _atom(b"mvhd", mvhd)))
    path.write_bytes(body)
    return path


def save_xmp(path: Path, *, keywords: tuple[str, ...] = (), rating: int | None = None, tool: str = "darktable") -> Path:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="{tool}">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        + (f"   <xmp:Rating>{rating}</xmp:Rating>\n" if rating is not None else "")
        + (f"   <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>\n" if keywords else "")
        + "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n", encoding="utf-8")
    return path


def save_aae(path: Path) -> Path:
    """An iOS edit record (a property list) as Photos writes it beside an edited photo."""
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
        "<key>adjustmentFormatIdentifier</key><string>com.apple.photo</string>"
        "<key>adjustmentFormatVersion</key><string>1.4</string></dict></plist>\n", encoding="utf-8")
    return path


def save_takeout_json(path: Path, title: str, *, taken_ts: int = 1714557600,
                      lat: float = 0.0, lon: float = 0.0, description: str = "") -> Path:
    """A Google Takeout metadata file (``IMG_1.JPG.json`` or ``….supplemental-metadata.json``)."""
    path.write_text(json.dumps({
        "title": title, "description": description,
        "photoTakenTime": {"timestamp": str(taken_ts), "formatted": ""},
        "geoData": {"latitude": lat, "longitude": lon, "altitude": 0.0},
    }), encoding="utf-8")
    return path


def _small(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.LANCZOS))


TAKEN = "2024:05:01 10:00:00"


def build_library(root: Path, size: tuple[int, int] = (720, 480)) -> dict[str, Path]:
    """A library as cameras, phones and exports leave it, by role:

    * ``raw1`` + ``jpg1``: a RAW+JPEG pair (DNG with an embedded preview), and ``msg1``, a
      messenger copy of the JPEG elsewhere (smaller, stripped, quality 70): a normal copy;
    * ``raw2`` + ``jpg2``: a pair whose DNG has no preview (developed by libraw), sharing the
      Lightroom sidecar ``xmp2`` (``IMG_0002.xmp``);
    * ``heic3`` with its Live Photo video ``mov3`` and iOS edits ``aae3``, and ``take3``, a Google
      Takeout copy (smaller JPEG) with ``json3`` and ``supp3``;
    * ``jxl4`` (JPEG XL) and ``small4``, a smaller JPEG copy whose darktable sidecar ``xmp4``
      holds keywords and a rating the JPEG XL has not;
    * ``heic5`` + ``mov5``, and ``dup5`` + ``dupmov5``: a byte-identical Live Photo elsewhere.
    """
    w, h = size
    for sub in ("DCIM/100CANON", "Exports", "iPhone", "Takeout/Photos", "JXL", "Copies"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}
    r1 = scene(w, h, 1)
    f["raw1"] = save_dng(root / "DCIM/100CANON/IMG_0001.DNG", r1, taken=TAKEN, preview_px=max(w, h))
    f["jpg1"] = save_jpeg(root / "DCIM/100CANON/IMG_0001.JPG", r1, taken=TAKEN)
    f["msg1"] = save_jpeg(root / "Exports/IMG_0001 (messenger).jpg", _small(r1, w // 2, h // 2), quality=70,
                          camera=False)
    r2 = scene(w, h, 2)
    f["raw2"] = save_dng(root / "DCIM/100CANON/IMG_0002.DNG", r2, taken="2024:05:01 10:00:05")
    f["jpg2"] = save_jpeg(root / "DCIM/100CANON/IMG_0002.JPG", r2, taken="2024:05:01 10:00:05")
    f["xmp2"] = save_xmp(root / "DCIM/100CANON/IMG_0002.xmp", keywords=("beach",), tool="Adobe XMP Core")
    r3 = scene(w, w * 3 // 4, 3)
    f["heic3"] = save_heic(root / "iPhone/IMG_0003.HEIC", r3, taken=TAKEN)
    f["mov3"] = save_mov(root / "iPhone/IMG_0003.MOV", seed=3)
    f["aae3"] = save_aae(root / "iPhone/IMG_0003.AAE")
    f["take3"] = save_jpeg(root / "Takeout/Photos/IMG_0003.JPG", _small(r3, w // 2, w * 3 // 8), quality=80, camera=False)
    f["json3"] = save_takeout_json(root / "Takeout/Photos/IMG_0003.JPG.json", "IMG_0003.JPG", lat=48.8584, lon=2.2945)
    f["supp3"] = save_takeout_json(root / "Takeout/Photos/IMG_0003.JPG.supplemental-metadata.json", "IMG_0003.JPG")
    r4 = scene(w, h, 4)
    f["jxl4"] = save_jxl(root / "JXL/IMG_0004.jxl", r4, taken=TAKEN)
    f["small4"] = save_jpeg(root / "JXL/IMG_0004_small.jpg", _small(r4, w // 2, h // 2), quality=85, camera=False)
    f["xmp4"] = save_xmp(root / "JXL/IMG_0004_small.jpg.xmp", keywords=("family", "grandma"), rating=5)
    r5 = scene(w, w * 3 // 4, 5)
    f["heic5"] = save_heic(root / "iPhone/IMG_0005.HEIC", r5, taken=TAKEN)
    f["mov5"] = save_mov(root / "iPhone/IMG_0005.MOV", seed=5)
    f["dup5"] = root / "Copies/IMG_0005 (1).HEIC"
    f["dup5"].write_bytes(f["heic5"].read_bytes())
    f["dupmov5"] = root / "Copies/IMG_0005 (1).MOV"
    f["dupmov5"].write_bytes(f["mov5"].read_bytes())
    return f


PHOTO_ROLES = ("raw1", "jpg1", "msg1", "raw2", "jpg2", "heic3", "take3", "jxl4", "small4", "heic5", "dup5")
# What must go to the trash by default, each with the companions that go with it.
EXPECTED_DELETE = {"msg1": (), "take3": ("json3", "supp3"), "small4": ("xmp4",), "dup5": ("dupmov5",)}
