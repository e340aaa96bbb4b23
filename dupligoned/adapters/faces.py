"""Face counting with OpenCV's bundled Haar cascade (loaded once per thread: a cascade must not
detect in two threads at once)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import numpy.typing as npt

_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    c: cv2.CascadeClassifier | None = getattr(_local, "cascade", None)
    if c is None:
        path = str(cv2.data.haarcascades) + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise RuntimeError(f"OpenCV face cascade missing or unreadable: {path}")
        _local.cascade = c
    return c


def count_faces(grey: npt.NDArray[np.uint8]) -> int:
    """Frontal faces in a greyscale image (a ~512 px working image is plenty)."""
    if grey.size == 0:
        return 0
    min_side = max(20, min(grey.shape) // 20)
    faces = _cascade().detectMultiScale(
        np.ascontiguousarray(grey), scaleFactor=1.2, minNeighbors=5, minSize=(min_side, min_side)
    )
    return int(len(faces))
