"""Web uploads into the inbox: type from the bytes, sanitised names, size and count limits.

A file is written as a hidden ``.upload-*.part`` (the watcher ignores hidden files) and renamed
into ``<inbox>/<token>/`` when complete, so the daemon never reads half an upload. A refused
file leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import IO

from dupligoned.adapters.decode import sniff_format

# What the first bytes must say, and the extensions that go with it (the first is the default).
FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WebP": (".webp",),
    # Most camera RAWs are TIFF inside; the name says which.
    "TIFF": (".tif", ".tiff", ".dng", ".cr2", ".nef", ".arw", ".pef", ".srw"),
    "HEIF": (".heic", ".heif"),
    "AVIF": (".avif",),
    "JXL": (".jxl",),
    "RAW": (".cr3", ".orf", ".rw2", ".raf"),  # RAWs with a container of their own
}
ACCEPTED = "JPEG, PNG, WebP, HEIC/HEIF, AVIF, JPEG XL, TIFF or a camera RAW"
MAX_NAME_CHARS = 120
CHUNK = 1 << 20


class UploadRefused(Exception):
    """A file the upload does not take; ``str()`` is the message for the person; ``status`` the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def safe_name(name: str, fmt: str) -> str:
    """A harmless file name from what the browser sent: no folders, no control or shell-ish
    characters, no leading dot, at most ``MAX_NAME_CHARS``, ending in an extension of ``fmt``."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[^\w .()+,=@&'-]", "_", name).strip(" .")
    stem, ext = os.path.splitext(name)
    exts = FORMATS[fmt]
    if ext.lower() not in exts:
        stem, ext = name, exts[0]
    stem = stem.strip(" .") or "photo"
    stem = stem[: MAX_NAME_CHARS - len(ext)]
    return stem + ext.lower()


def unique_in(folder: str, name: str) -> str:
    stem, ext = os.path.splitext(name)
    cand, k = name, 1
    while os.path.exists(os.path.join(folder, cand)):
        k += 1
        cand = f"{stem} ({k}){ext}"
    return cand


@dataclass(frozen=True)
class Stored:
    name: str
    path: str
    size_bytes: int
    format: str


def check(filename: str, head: bytes, size: int, max_bytes: int) -> str:
    """The format of an upload, or ``UploadRefused`` with a clear reason."""
    shown = safe_display(filename)
    if size == 0:
        raise UploadRefused(f"{shown} is empty")
    if size > max_bytes:
        raise UploadRefused(f"{shown} is too large: {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB "
                            "([web] max_upload_mb)", 413)
    fmt = sniff_format(head)
    if fmt is None:
        raise UploadRefused(f"{shown} is not a photo: its content is not {ACCEPTED}", 415)
    return fmt


def safe_display(name: str) -> str:
    s = "".join(ch for ch in (name or "") if unicodedata.category(ch)[0] != "C")[:80]
    return repr(s) if s else "the file"


def store(src: IO[bytes], folder: str, filename: str, fmt: str) -> Stored:
    """Copy ``src`` into ``folder`` under a safe, unique name (hidden temp file, then rename)."""
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".upload-{secrets.token_hex(8)}.part")
    size = 0
    try:
        with open(tmp, "xb") as out:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                size += len(chunk)
        name = unique_in(folder, safe_name(filename, fmt))
        dest = os.path.join(folder, name)
        os.link(tmp, dest)  # fails rather than overwrite, should a name be taken meanwhile
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return Stored(name, dest, size, fmt)


def received(folder: str) -> int:
    """How many files of an upload are stored in its folder (partial files not counted)."""
    try:
        return sum(1 for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return 0
