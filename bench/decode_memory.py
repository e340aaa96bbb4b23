"""Peak memory of one analysis (what a queue worker does with one file) on decompression bombs
and on large real-size photos, each in a fresh process, as the worker runs it.

    PYTHONPATH=$PWD python bench/decode_memory.py [--keep DIR]

Prints one line per file: format, size on disk, pixels, outcome, the process's peak RSS before
the analysis (imports done) and after it. The bombs are 14000×14000 (196 MP) of one colour:
~220 kB as a greyscale PNG; the HEIC one is 11900×11900 (x265 encodes no more). Done when every bomb's peak is <= 512 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys
from dupligoned.adapters.config import AnalysisConfig
from dupligoned.services.ingest import AnalysisJob, analyse_for_index
a = AnalysisConfig()
def hwm():  # peak RSS of this process image (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm()
res = analyse_for_index(AnalysisJob(1, sys.argv[1], a.max_pixels, a.work_px, a.thumb_px))
after = hwm()
print(json.dumps({"before_kb": before, "after_kb": after, "ok": res.get("ok"), "error": res.get("error")}))
"""


def make_files(out: Path) -> list[Path]:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    out.mkdir(parents=True, exist_ok=True)
    made = []
    bomb = Image.new("RGB", (14000, 14000), (200, 120, 40))
    grey = bomb.convert("L")  # one byte a pixel: the 190 kB PNG of the issue
    for name, kw in (("bomb.png", {"optimize": True}), ("bomb.tif", {"compression": "tiff_adobe_deflate"}),
                     ("bomb.webp", {"lossless": True, "quality": 0, "method": 0})):
        p = out / name
        if not p.exists():
            (grey if name.endswith(".png") else bomb).save(p, **kw)
        made.append(p)
    p = out / "bomb.heic"
    if not p.exists():
        import pillow_heif

        pillow_heif.register_heif_opener()
        try:  # x265 encodes at most 142.6 M luma samples (HEVC level 7.2): the largest square below
            bomb.crop((0, 0, 11900, 11900)).save(p, quality=10)
        except Exception as exc:  # noqa: BLE001 - report, go on with the others
            print(f"HEIC bomb not made: {exc}", file=sys.stderr)
    if p.exists():
        made.append(p)
    p = out / "bomb.jpg"
    if not p.exists():
        bomb.save(p, quality=50)
    made.append(p)
    del bomb
    # Large but real sizes: what a camera or a phone writes (a textured 48 MP / 61 MP photo).
    import numpy as np

    for name, size in (("phone48.png", (8064, 6048)), ("camera61.tif", (9504, 6336)), ("phone48.heic", (8064, 6048))):
        p = out / name
        if not p.exists():
            rng = np.random.default_rng(1)
            small = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
            im = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
            if name.endswith(".heic"):
                import pillow_heif

                pillow_heif.register_heif_opener()
                im.save(p, quality=50)
            else:
                im.save(p, **({"compression": "tiff_adobe_deflate"} if name.endswith(".tif") else {}))
        made.append(p)
    return made


def measure(path: Path) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}",
                "before_kb": 0, "after_kb": 0, "ok": False}
    out: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, default=None, help="make (and keep) the files here")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dupligone-bombs-"))
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # we make and measure bombs on purpose
    import pillow_heif

    pillow_heif.register_heif_opener()
    for path in make_files(folder):
        with Image.open(path) as im:
            w, h = im.size
        m = measure(path)
        outcome = "analysed" if m["ok"] else f"refused: {m['error']}"
        print(f"{path.name:14s} {path.stat().st_size / 1e3:9.0f} kB {w}x{h} ({w * h / 1e6:.0f} MP)  "
              f"peak RSS {int(m['before_kb']) / 1024:5.0f} MB -> {int(m['after_kb']) / 1024:5.0f} MB  {outcome}")


if __name__ == "__main__":
    main()
