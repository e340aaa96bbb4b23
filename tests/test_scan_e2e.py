"""The real `dupligone scan` command on small generated libraries."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageFilter

from tests import corpus

ORIGINAL = corpus.ORIGINAL  # a pristine 1024x768 camera JPEG drawn by tests/synth.py
UNRELATED = corpus.singletons(4)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dupligoned.cli.main", *args],
                          capture_output=True, text=True, timeout=300)


def _fingerprint(root: Path) -> dict[str, tuple[str, float]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _library(root: Path) -> dict[str, Path]:
    src = Image.open(corpus.path(ORIGINAL)).convert("RGB")
    lib = {"original": root / "Camera" / "IMG_4161.JPG"}
    corpus.copy(ORIGINAL, lib["original"])
    lib["exact"] = root / "Backup" / "IMG_4161 (1).JPG"
    corpus.copy(ORIGINAL, lib["exact"])
    (root / "Shared").mkdir(parents=True)
    lib["resized"] = root / "Shared" / "small.jpg"
    src.resize((640, 480), Image.Resampling.LANCZOS).save(lib["resized"], quality=85)
    lib["reencoded"] = root / "Shared" / "IMG-20190301-WA0013.jpg"
    src.save(lib["reencoded"], quality=70)
    lib["cropped"] = root / "Shared" / "cropped.jpg"
    w, h = src.size
    src.crop((int(w * 0.04), int(h * 0.04), int(w * 0.96), int(h * 0.96))).save(lib["cropped"], quality=90)
    lib["blurred"] = root / "Shared" / "blurred.jpg"
    src.filter(ImageFilter.GaussianBlur(2.5)).save(lib["blurred"], quality=95)
    for k, rel in enumerate(UNRELATED):
        lib[f"unrelated{k}"] = corpus.copy(rel, root / "Other" / f"unrelated{k}.jpg")
    return lib


def test_scan_groups_copies_keeps_the_original_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    lib = _library(root)
    before = _fingerprint(root)
    proc = _run("scan", str(root), "--json", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"photos", "clusters", "errors"}  # exactly the documented shape
    assert out["photos"] == len(lib) and out["errors"] == []
    assert len(out["clusters"]) == 1
    cluster = out["clusters"][0]
    assert set(cluster) == {"members", "keep", "delete", "uncertain", "companions"}
    assert isinstance(cluster["uncertain"], bool)
    assert cluster["companions"] == {m: [] for m in cluster["members"]}  # no video, no sidecar here
    copies = {str(lib[k]) for k in ("original", "exact", "resized", "reencoded", "cropped", "blurred")}
    assert set(cluster["members"]) == copies
    assert all(os.path.isabs(p) for p in cluster["members"])
    assert cluster["keep"] == [str(lib["original"])]  # the sharp original, not its blurred copy
    assert set(cluster["delete"]) == copies - {str(lib["original"])}
    assert _fingerprint(root) == before  # a scan changes no file
    with_reasons = json.loads(_run("scan", str(root), "--json", "--reasons", "-q").stdout)
    why = with_reasons["clusters"][0]["reasons"]
    assert why[str(lib["resized"])] == "lower resolution 640×480 vs 1024×768 of IMG_4161.JPG"
    assert why[str(lib["exact"])] == "identical copy of IMG_4161.JPG"
    assert "blurrier" in why[str(lib["blurred"])]


def test_broken_files_are_reported_and_good_photos_still_grouped(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    a = corpus.copy(ORIGINAL, root / "a.jpg")
    Image.open(a).save(root / "b.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo")
    (root / "half.jpg").write_bytes(a.read_bytes()[:20000])
    proc = _run("scan", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    reasons = {Path(e["path"]).name: e["reason"] for e in out["errors"]}
    assert set(reasons) == {"empty.jpg", "text.jpg", "half.jpg"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["half.jpg"]
    assert out["photos"] == 2
    assert [sorted(c["members"]) for c in out["clusters"]] == [[str(a), str(root / "b.png")]]


def test_protected_folder_is_never_recommended_for_deletion(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    keep = corpus.copy(ORIGINAL, root / "Archive" / "IMG_4161.JPG")
    other = corpus.copy(ORIGINAL, root / "Phone" / "IMG_4161.JPG")
    proc = _run("scan", str(root), "--json", "--protect", str(root / "Archive"))
    out = json.loads(proc.stdout)
    assert out["clusters"][0]["keep"] == [str(keep)] and out["clusters"][0]["delete"] == [str(other)]


def test_readable_summary_and_one_line_errors(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    keeper = corpus.copy(ORIGINAL, root / "z.jpg")
    copy = corpus.copy(ORIGINAL, root / "a (1).jpg")  # before the keeper in path order
    proc = _run("scan", str(root))  # stdout and stderr are pipes here, not a terminal
    assert proc.returncode == 0
    assert proc.stderr == ""  # no progress bar into a pipe or a log
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines[0].startswith("Group 1 of 1: 2 photos, 1 could go")
    assert lines[1].split()[:2] == ["KEEP", str(keeper)]  # the keeper first, then the copy with its reason
    assert lines[3].split()[0] == "delete" and str(copy) in lines[3]
    assert lines[4].strip() == "identical copy of z.jpg"
    assert lines[-1].startswith("Summary: 2 photos analysed, 0 could not be read; 1 group of duplicates: 1 photo to keep, 1 copy could go")
    assert "Nothing was changed." in lines[-1]
    missing = _run("scan", str(tmp_path / "nope"), "--json")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and "not a folder" in missing.stderr
    bad = _run("scan", str(root), "--workers", "0")
    assert bad.returncode == 2 and "--workers" in bad.stderr


def test_scan_twice_in_one_process_after_opencv_used_its_threads(tmp_path: Path) -> None:
    """A process that has used OpenCV's thread pool (an earlier scan verifies crops in it) must
    still fork its workers safely: a forked child that touched the inherited pool hung."""
    _library(tmp_path / "lib")
    script = (
        "import sys, numpy as np, cv2\n"
        "from dupligoned.services.scan import scan\n"
        "cv2.resize(np.zeros((3000, 4000), np.uint8), (400, 300), interpolation=cv2.INTER_AREA)\n"
        "threads = cv2.getNumThreads()\n"
        "for _ in range(2):\n"
        "    r = scan([sys.argv[1]], workers=2)\n"
        "    print(len(r.photos), len(r.groups))\n"
        "print(cv2.getNumThreads() == threads)\n"  # the caller's OpenCV is left as it was
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lib")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[0] == lines[2] == "10" and lines[1] == lines[3] and int(lines[1]) >= 1
    assert lines[4] == "True"
