"""Analysing one photo: one decode, then hashes and quality. Runs in worker processes."""

from __future__ import annotations

from dataclasses import dataclass

from dupligoned.adapters import orb
from dupligoned.adapters.decode import DEFAULT_MAX_PIXELS, DEFAULT_WORK_PX, DecodedPhoto, decode_photo
from dupligoned.core import hashing, quality
from dupligoned.core.model import PhotoInfo
from dupligoned.errors import PhotoError


def info_from_decoded(path: str, dec: DecodedPhoto, *, protected: bool = False) -> PhotoInfo:
    """The engine's view of a decoded photo (hashes and quality on the decoded arrays)."""
    return PhotoInfo(
        path=path,
        size_bytes=dec.size_bytes,
        width=dec.width,
        height=dec.height,
        format=dec.format,
        lossless=dec.lossless,
        jpeg_quality=dec.jpeg_quality,
        content_hash=dec.content_hash,
        phash=hashing.phash(dec.grey32),
        dhash=hashing.dhash(dec.grey9x8),
        # At half the working size (256 px): a fixed size all copies share, and a quarter of the
        # pixels. The keeper measures same-size copies again near full size (services/decide.py).
        quality=quality.measure(quality.halve(dec.work)),
        taken_at=dec.taken_at,
        camera=dec.camera,
        has_gps=dec.has_gps,
        edited_by=dec.edited_by,
        protected=protected,
        extra=orb.photo_extra(dec.work),  # crop-stage features, from the same working image
    )


def analyse_file(
    path: str,
    *,
    protected: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    work_px: int = DEFAULT_WORK_PX,
    hash_bytes: bool = True,
) -> PhotoInfo:
    """Decode ``path`` once and measure it. Raises ``PhotoError`` subclasses for bad files.

    ``hash_bytes=False`` leaves ``content_hash`` empty for the caller to fill in.
    """
    dec = decode_photo(path, max_pixels=max_pixels, work_px=work_px, hash_bytes=hash_bytes)
    return info_from_decoded(path, dec, protected=protected)


@dataclass(frozen=True)
class Failed:
    """A photo that could not be analysed (a ``PhotoError``, in a form that crosses processes)."""

    path: str
    reason: str


def analyse_job(job: tuple[str, bool]) -> PhotoInfo | Failed:
    """``analyse_file`` for a scan's process pool: ``(path, protected)`` in, never raises a
    PhotoError. The content hash is left empty: the scan hashes only files of a shared size.

    It lives here, beside the light imports the analysis needs, so that a worker process
    imports the decoder and the measurements only — not the grouping stack.
    """
    path, protected = job
    try:
        return analyse_file(path, protected=protected, hash_bytes=False)
    except PhotoError as exc:
        return Failed(path, exc.reason)
