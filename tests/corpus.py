"""A small labelled photo library drawn by ``tests/synth.py``, built once per machine and code.

It stands in for the shared dev corpus (which stays for benchmarks): groups of every kind the
engine must find (exact copies, re-encodes, resizes, edits, degraded copies, EXIF-rotated copies,
crops, bursts) and unrelated photos, in folders named like a real library, with a ``truth()`` in
the dev corpus's format::

    {"groups": [{"id": "g001", "kind": "resize", "members": [rel, ...]}, ...],
     "singletons": [rel, ...]}

Members are paths relative to :data:`PHOTOS`; the first member of a group is its original.
The library is built on first use into the system temp directory under a name that hashes this
file and ``synth.py`` (so a change rebuilds it), under a lock so parallel test workers build it
once, and published with an atomic rename. Building takes about 15 s on one core.

Named files: :data:`ORIGINAL` (a pristine camera JPEG), :data:`RESIZED` (a photo and two smaller copies, the last one a
few kB), :data:`IDENTICAL` (two byte-identical WebP files over 100 kB), :data:`WITH_GPS` (a JPEG
with a capture date and GPS EXIF at latitude 32.67394), :data:`SINGLE` (a unique photo).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests import synth

_HERE = Path(__file__).resolve().parent
_DIGEST = hashlib.sha256(b"".join((_HERE / f).read_bytes() for f in ("synth.py", "corpus.py"))).hexdigest()[:12]
ROOT = Path(tempfile.gettempdir()) / f"dupligone-test-corpus-{os.getuid()}-{_DIGEST}"
PHOTOS = ROOT / "photos"

SIZES = [(1024, 768), (1024, 683), (768, 1024), (1024, 576)]  # as the dev corpus: ~1024 px long edge
GROUPS_PER_KIND = {"exact": 3, "reencode": 3, "resize": 3, "edit": 3, "degrade": 3, "orient": 3, "crop": 3,
                   "burst": 4}
N_SINGLETONS = 30
FOLDERS = ["Phone/DCIM/Camera", "2019/Holiday", "Backup/Old laptop/Pictures", "WhatsApp Images", "Nikon/DCIM/100D3200",
           "Downloads", "2021/Hiking", "iPhone/DCIM/101APPLE"]

RESIZED = ["Web/IMG_4450.JPG", "Edited/IMG_0895.JPG", "Telegram Images/photo_2013-04-30_04-27-04.jpg"]
IDENTICAL = ["Downloads/img1128.webp", "OneDrive/Pictures/Camera Roll/IMG_7795.WEBP"]
WITH_GPS = "Dropbox/Camera Uploads/2017-09-11 12.05.36.jpg"
SINGLE = "WhatsApp Images/IMG-20140415-WA0038.jpg"
ORIGINAL = "2017/Hiking/IMG_4161.JPG"  # a pristine 1024x768 camera JPEG (q95, camera EXIF), in no group


def _build(out: Path) -> dict[str, Any]:
    seed = 500  # scenes 500.. are this library's; the tests' own scenes use lower seeds
    groups: list[dict[str, Any]] = []
    for kind, n in GROUPS_PER_KIND.items():
        for k in range(n):
            folder = out / FOLDERS[(seed + k) % len(FOLDERS)]
            paths = synth.group(kind, seed, folder, f"IMG_{seed:04d}", size=SIZES[seed % len(SIZES)])
            groups.append({"id": f"g{len(groups) + 1:03d}", "kind": kind,
                           "members": [str(p.relative_to(out)) for p in paths]})
            seed += 1
    singletons = []
    for k in range(N_SINGLETONS):
        suffix = ".webp" if k % 5 == 4 else ".jpg"
        p = synth.photo(out / FOLDERS[k % len(FOLDERS)] / f"DSC_{seed:04d}{suffix}", seed, SIZES[k % len(SIZES)],
                        quality=90)
        singletons.append(str(p.relative_to(out)))
        seed += 1
    # The web tests' named files.
    im = synth.scene(seed, (1024, 768))
    synth.save(im, out / RESIZED[0], 92)
    synth.save(synth.resize(im, 480), out / RESIZED[2], 85)
    synth.save(synth.resize(im, 96), out / RESIZED[1], 75)  # a few kB
    groups.append({"id": "web1", "kind": "resize", "members": list(RESIZED)})
    synth.save(synth.scene(seed + 1, (1920, 1080)), out / IDENTICAL[0], 92)  # > 100 kB: the upload limit test
    (out / IDENTICAL[1]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / IDENTICAL[0], out / IDENTICAL[1])
    groups.append({"id": "web2", "kind": "exact", "members": list(IDENTICAL)})
    synth.save(synth.scene(seed + 2, (1024, 768)), out / WITH_GPS, 90,
               camera={**synth.CAMERA, "gps": (32.67394, -117.23906)})
    synth.save(synth.scene(seed + 3, (1024, 768)), out / SINGLE, 88)
    synth.save(synth.scene(seed + 4, (1024, 768)), out / ORIGINAL, 95, camera=synth.CAMERA)
    return {"version": 1, "name": "dupligone synth test corpus", "groups": groups,
            "singletons": singletons + [WITH_GPS, SINGLE, ORIGINAL]}


def build() -> Path:
    """The corpus directory (``ROOT``), built if missing. Safe to call from parallel processes."""
    if (ROOT / "truth.json").exists():
        return ROOT
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{ROOT}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (ROOT / "truth.json").exists():
            return ROOT
        work = Path(tempfile.mkdtemp(prefix=ROOT.name + ".", dir=ROOT.parent))
        try:
            truth = _build(work / "photos")
            (work / "truth.json").write_text(json.dumps(truth, indent=1))
            os.rename(work, ROOT)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return ROOT


def truth() -> dict[str, Any]:
    return json.loads((build() / "truth.json").read_text())


def groups_of(kind: str, n: int) -> list[list[str]]:
    """The first ``n`` labelled groups of ``kind`` (member paths relative to :data:`PHOTOS`)."""
    found = [g["members"] for g in truth()["groups"] if g["kind"] == kind and not g["id"].startswith("web")][:n]
    assert len(found) == n, f"the test corpus has {len(found)} {kind} groups, not {n}"
    return found


def singletons(n: int) -> list[str]:
    found = list(truth()["singletons"])[:n]
    assert len(found) == n, f"the test corpus has {len(found)} unique photos, not {n}"
    return found


def path(rel: str) -> Path:
    """The corpus file ``rel`` (built if needed)."""
    return build() / "photos" / rel


def copy(rel: str, dest: Path) -> Path:
    """Copy corpus file ``rel`` to ``dest`` (its folder made) and return ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path(rel), dest)
    return dest


def files() -> list[Path]:
    """Every photo of the corpus, sorted."""
    build()
    return sorted(p for p in PHOTOS.rglob("*") if p.is_file())
