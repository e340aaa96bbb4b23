"""Metadata a person cares about, read from a photo's headers, and XMP sidecars that keep it.

``read_metadata`` opens a file only far enough to read EXIF, IPTC and embedded XMP (no pixels are
decoded). ``write_sidecar`` writes an XMP sidecar *beside* a photo — never into it — so that
what a deleted copy carried (capture date, GPS, camera, keywords, rating) is not lost with it.

Sidecars are named ``<photo name>.xmp`` (``IMG_1.jpg.xmp``, as darktable and digiKam do, so
``IMG_1.jpg`` and ``IMG_1.png`` never share one). A sidecar DupliGone did not write is left
alone; ours then goes to ``<photo name>.dupligone.xmp``.

Sidecars other tools wrote beside a photo (``IMG_1.xmp``, ``IMG_1.JPG.xmp``) and Google Takeout's
JSON (``IMG_1.JPG.json``) count as the photo's metadata too (``adapters/companions.py``).

Raises nothing for unreadable or odd metadata: a field that cannot be read is simply absent.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image, IptcImagePlugin

from dupligoned.adapters import companions

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_TAG_DATETIME = 0x0132
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_RATING = 0x4746
_TAG_XP_KEYWORDS = 0x9C9E
XMP_TOOL = "DupliGone"
MAX_XMP_BYTES = 1 << 20  # larger packets are ignored (regexes over megabytes are a waste)

FIELDS = ("taken_at", "gps", "camera", "keywords", "rating")
FIELD_LABELS = {"taken_at": "capture date", "gps": "GPS position", "camera": "camera", "keywords": "keywords",
                "rating": "rating"}


@dataclass(frozen=True)
class PhotoMeta:
    """What a person would miss. ``gps`` is (latitude, longitude) in degrees, north/east positive."""

    taken_at: str | None = None  # "YYYY:MM:DD HH:MM:SS" as in EXIF
    gps: tuple[float, float] | None = None
    camera: str | None = None
    keywords: tuple[str, ...] = field(default=())
    rating: int | None = None

    def has(self, name: str) -> bool:
        v = getattr(self, name)
        return bool(v) if name == "keywords" else v is not None

    def display(self, name: str) -> str:
        v = getattr(self, name)
        if name == "gps" and v is not None:
            return f"{v[0]:.5f}, {v[1]:.5f}"
        if name == "keywords":
            return ", ".join(v)
        return "" if v is None else str(v)

    def to_json(self) -> dict[str, Any]:
        return {"taken_at": self.taken_at, "gps": list(self.gps) if self.gps else None, "camera": self.camera,
                "keywords": list(self.keywords), "rating": self.rating}


def _ratio(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


def _dms(values: Any, ref: Any) -> float | None:
    try:
        d, m, s = (_ratio(x) for x in values)
    except (TypeError, ValueError):
        return None
    deg = d + m / 60.0 + s / 3600.0
    if deg != deg:  # NaN
        return None
    if str(ref).strip("\x00 ").upper() in ("S", "W"):
        deg = -deg
    return deg


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    s = str(v).strip("\x00 ") if v is not None else ""
    return s or None


def _xmp_values(xmp: str, tag: str) -> list[str]:
    """Values of ``tag`` (``ns:Name``) in an XMP packet: as element text, list items or an attribute."""
    out: list[str] = []
    m = re.search(rf"<{tag}\b[^>]*>(.*?)</{tag}>", xmp, re.S)
    if m:
        items = re.findall(r"<rdf:li\b[^>]*>(.*?)</rdf:li>", m.group(1), re.S)
        out = items if items else [m.group(1)]
    else:
        a = re.search(rf'\b{tag}="([^"]*)"', xmp)
        if a:
            out = [a.group(1)]
    return [_unescape(x.strip()) for x in out if x.strip()]


def _unescape(s: str) -> str:
    return s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


def _xmp_gps(v: str) -> float | None:
    # XMP GPS coordinates are "DDD,MM.mmmmN" or "DDD,MM,SSN".
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?([NSEW])\s*", v)
    if not m:
        return None
    deg = float(m.group(1)) + float(m.group(2)) / 60.0 + (float(m.group(3)) / 3600.0 if m.group(3) else 0.0)
    return -deg if m.group(4) in "SW" else deg


def parse_xmp(xmp: str) -> PhotoMeta:
    """The fields DupliGone knows from an XMP packet (embedded, or a sidecar)."""
    taken = (_xmp_values(xmp, "exif:DateTimeOriginal") or _xmp_values(xmp, "photoshop:DateCreated")
             or _xmp_values(xmp, "xmp:CreateDate"))
    lat, lon = _xmp_values(xmp, "exif:GPSLatitude"), _xmp_values(xmp, "exif:GPSLongitude")
    gps = None
    if lat and lon:
        la, lo = _xmp_gps(lat[0]), _xmp_gps(lon[0])
        gps = (la, lo) if la is not None and lo is not None else None
    make, model = _xmp_values(xmp, "tiff:Make"), _xmp_values(xmp, "tiff:Model")
    camera = " ".join(x for x in (make[:1] + model[:1]) if x) or None
    rating = None
    r = _xmp_values(xmp, "xmp:Rating")
    if r:
        try:
            rating = int(float(r[0]))
        except ValueError:
            rating = None
    taken_at = taken[0].replace("-", ":", 2).replace("T", " ")[:19] if taken else None
    return PhotoMeta(taken_at=taken_at, gps=gps, camera=camera, keywords=tuple(_xmp_values(xmp, "dc:subject")),
                     rating=rating)


def _merge(a: PhotoMeta, b: PhotoMeta) -> PhotoMeta:
    """``a`` with what only ``b`` has (keywords: the union, in order)."""
    out = a
    for name in ("taken_at", "gps", "camera", "rating"):
        if not a.has(name) and b.has(name):
            out = replace(out, **{name: getattr(b, name)})
    kws = tuple(dict.fromkeys(a.keywords + b.keywords))
    return replace(out, keywords=kws)


def read_metadata(path: str) -> PhotoMeta:
    """EXIF, IPTC and embedded XMP of ``path``; the sidecar DupliGone wrote beside it, merged in.

    An unreadable file gives an empty ``PhotoMeta``.
    """
    meta = PhotoMeta()
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            taken = _text(sub.get(_TAG_DATETIME_ORIGINAL) or exif.get(_TAG_DATETIME))
            make, model = _text(exif.get(_TAG_MAKE)), _text(exif.get(_TAG_MODEL))
            camera = " ".join(x for x in (make, model) if x) or None
            if make and model and model.lower().startswith(make.lower()):
                camera = model
            gps = None
            g = exif.get_ifd(_GPS_IFD)
            if g and 2 in g and 4 in g:
                la, lo = _dms(g[2], g.get(1, "N")), _dms(g[4], g.get(3, "E"))
                gps = (la, lo) if la is not None and lo is not None else None
            rating = exif.get(_TAG_RATING)
            keywords: list[str] = []
            xpk = exif.get(_TAG_XP_KEYWORDS)
            if isinstance(xpk, bytes | tuple | list):
                raw = bytes(xpk).decode("utf-16-le", "replace").strip("\x00")
                keywords += [k.strip() for k in raw.split(";") if k.strip()]
            try:
                iptc = IptcImagePlugin.getiptcinfo(im) or {}
            except Exception:  # noqa: BLE001 - odd IPTC blocks are common and harmless
                iptc = {}
            kw = iptc.get((2, 25))
            if kw:
                for k in kw if isinstance(kw, list) else [kw]:
                    t = _text(k)
                    if t:
                        keywords.append(t)
            meta = PhotoMeta(taken_at=taken, gps=gps, camera=camera, keywords=tuple(dict.fromkeys(keywords)),
                             rating=int(rating) if isinstance(rating, int) else None)
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            if isinstance(xmp, bytes):
                xmp = xmp.decode("utf-8", "replace")
            if isinstance(xmp, str) and len(xmp) <= MAX_XMP_BYTES:
                meta = _merge(meta, parse_xmp(xmp))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        meta = PhotoMeta()
    for sidecar in sidecar_candidates(path):
        try:
            with open(sidecar, encoding="utf-8", errors="replace") as fh:
                text = fh.read(MAX_XMP_BYTES)
        except OSError:
            continue
        if _ours(text):
            meta = _merge(meta, parse_xmp(text))
    # Sidecars other tools wrote (darktable, Lightroom) and Google Takeout's JSON: what they hold
    # is the photo's too, and goes with it to the trash.
    for sidecar in companions.companions_of(path).all:
        low = sidecar.lower()
        if not low.endswith((".xmp", ".json")) or sidecar in sidecar_candidates(path)[1:]:
            continue
        try:
            with open(sidecar, encoding="utf-8", errors="replace") as fh:
                text = fh.read(MAX_XMP_BYTES)
        except OSError:
            continue
        if low.endswith(".json"):
            meta = _merge(meta, parse_takeout(text))
        elif not _ours(text):
            meta = _merge(meta, parse_xmp(text))
    return meta


def parse_takeout(text: str) -> PhotoMeta:
    """The fields of a Google Takeout metadata file (capture time in UTC, GPS; 0,0 is "none")."""
    import json
    import time

    try:
        data = json.loads(text)
    except ValueError:
        return PhotoMeta()
    if not isinstance(data, dict):
        return PhotoMeta()
    taken = None
    try:
        ts = int(data.get("photoTakenTime", {}).get("timestamp"))
        taken = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(ts))
    except (TypeError, ValueError, AttributeError, OverflowError, OSError):
        taken = None
    gps = None
    geo = data.get("geoData")
    if isinstance(geo, dict):
        try:
            lat, lon = float(geo.get("latitude", 0.0)), float(geo.get("longitude", 0.0))
            if (lat, lon) != (0.0, 0.0) and abs(lat) <= 90 and abs(lon) <= 180:
                gps = (lat, lon)
        except (TypeError, ValueError):
            gps = None
    return PhotoMeta(taken_at=taken, gps=gps)


def missing_from(keeper: PhotoMeta, others: list[PhotoMeta]) -> PhotoMeta:
    """What the ``others`` carry and ``keeper`` lacks (keywords: those it does not have)."""
    out = PhotoMeta()
    for o in others:
        for name in ("taken_at", "gps", "camera", "rating"):
            if not keeper.has(name) and not out.has(name) and o.has(name):
                out = replace(out, **{name: getattr(o, name)})
        new_kw = tuple(k for k in o.keywords if k not in keeper.keywords and k not in out.keywords)
        out = replace(out, keywords=out.keywords + new_kw)
    return out


def sidecar_candidates(path: str) -> list[str]:
    return [path + ".xmp", path + ".dupligone.xmp"]


def _ours(text: str) -> bool:
    return f'x:xmptk="{XMP_TOOL}' in text


def sidecar_path(path: str) -> str:
    """Where DupliGone's sidecar for ``path`` goes (a sidecar by another tool is never overwritten)."""
    main, alt = sidecar_candidates(path)
    if not os.path.exists(main):
        return main
    try:
        with open(main, encoding="utf-8", errors="replace") as fh:
            if _ours(fh.read(MAX_XMP_BYTES)):
                return main
    except OSError:
        pass
    return alt


def _gps_xmp(deg: float, pos: str, neg: str) -> str:
    ref = pos if deg >= 0 else neg
    deg = abs(deg)
    d = int(deg)
    return f"{d},{(deg - d) * 60:.6f}{ref}"


def render_xmp(meta: PhotoMeta) -> str:
    """An XMP packet holding ``meta``."""
    lines = []
    if meta.taken_at:
        iso = meta.taken_at.replace(":", "-", 2).replace(" ", "T")
        lines.append(f"   <exif:DateTimeOriginal>{escape(iso)}</exif:DateTimeOriginal>")
        lines.append(f"   <photoshop:DateCreated>{escape(iso)}</photoshop:DateCreated>")
    if meta.gps:
        lines.append(f"   <exif:GPSLatitude>{_gps_xmp(meta.gps[0], 'N', 'S')}</exif:GPSLatitude>")
        lines.append(f"   <exif:GPSLongitude>{_gps_xmp(meta.gps[1], 'E', 'W')}</exif:GPSLongitude>")
    if meta.camera:
        lines.append(f"   <tiff:Model>{escape(meta.camera)}</tiff:Model>")
    if meta.rating is not None:
        lines.append(f"   <xmp:Rating>{int(meta.rating)}</xmp:Rating>")
    if meta.keywords:
        items = "".join(f"<rdf:li>{escape(k)}</rdf:li>" for k in meta.keywords)
        lines.append(f"   <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")
    body = "\n".join(lines)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="{XMP_TOOL}">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">\n'
        f"{body}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    )


def write_sidecar(photo_path: str, meta: PhotoMeta) -> str:
    """Write (or extend) DupliGone's XMP sidecar beside ``photo_path``; returns its path.

    The photo itself is never opened for writing. Raises ``OSError`` when the folder is not writable.
    """
    dest = sidecar_path(photo_path)
    if os.path.exists(dest):
        with open(dest, encoding="utf-8", errors="replace") as fh:
            meta = _merge(parse_xmp(fh.read(MAX_XMP_BYTES)), meta)
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(render_xmp(meta))
    os.replace(tmp, dest)
    return dest
