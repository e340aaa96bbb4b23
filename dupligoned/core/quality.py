"""Image quality figures on the fixed working image, and the weighted overall score."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Quality:
    sharpness: float  # variance of the 4-neighbour Laplacian
    brightness: float  # mean grey level, 0–255
    contrast: float  # standard deviation of grey levels
    noise: float  # estimated sensor-noise sigma (Immerkær), grey levels
    faces: int = 0  # filled in later, only for photos that land in groups


@dataclass(frozen=True)
class QualityWeights:
    """Weights of the overall score; each part is first mapped to 0–1."""

    sharpness: float = 0.45
    brightness: float = 0.2
    contrast: float = 0.2
    faces: float = 0.15

    def __post_init__(self) -> None:
        for name in ("sharpness", "brightness", "contrast", "faces"):
            if getattr(self, name) < 0:
                raise ValueError(f"weight {name} must be ≥ 0")
        if self.sharpness + self.brightness + self.contrast + self.faces <= 0:
            raise ValueError("at least one quality weight must be > 0")


def laplacian(grey: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    g = grey.astype(np.float32, copy=False)
    out = g[1:-1, :-2] + g[1:-1, 2:]  # in place from here: the same sums, fewer large temporaries
    out += g[:-2, 1:-1]
    out += g[2:, 1:-1]
    out -= 4.0 * g[1:-1, 1:-1]
    return out


def estimate_noise(grey: npt.NDArray[np.uint8]) -> float:
    """Immerkær's fast noise-sigma estimate: a mask that cancels edges and keeps white noise."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    h, w = grey.shape
    if grey.dtype == np.uint8:
        # The mask is separable ([1 -2 1] down × [1 -2 1] across) and exact in 16-bit integers.
        g = grey.astype(np.int16)
        r = g[:, :-2] + g[:, 2:]
        r -= 2 * g[:, 1:-1]
        m16 = r[:-2] + r[2:]
        m16 -= 2 * r[1:-1]
        total = float(np.abs(m16).sum(dtype=np.int64))
    else:
        f = grey.astype(np.float32)
        m = (f[:-2, :-2] - 2 * f[:-2, 1:-1] + f[:-2, 2:]
             - 2 * f[1:-1, :-2] + 4 * f[1:-1, 1:-1] - 2 * f[1:-1, 2:]
             + f[2:, :-2] - 2 * f[2:, 1:-1] + f[2:, 2:])
        total = float(np.abs(m).sum(dtype=np.float64))
    return float(math.sqrt(math.pi / 2) * total / (6.0 * (w - 2) * (h - 2)))


def mean_var(values: npt.NDArray[np.int16]) -> tuple[float, float]:
    """Mean and variance of 16-bit integers, exactly, from their integer sum and sum of squares."""
    w = values.ravel().astype(np.int64)
    n = w.size
    s1, s2 = int(w.sum()), int(np.einsum("i,i->", w, w))
    return s1 / n, (n * s2 - s1 * s1) / (n * n)


def halve(grey: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A 2×2 box-filtered half-size image (odd last row/column dropped)."""
    h, w = (grey.shape[0] // 2) * 2, (grey.shape[1] // 2) * 2
    g = grey[:h, :w].astype(np.uint16)
    return ((g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2] + 2) // 4).astype(np.uint8)


def int_laplacian(g: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The 4-neighbour Laplacian in 16-bit integers, exact while ``g`` lies within ±4095 (8-bit
    grey levels, or the difference of two such images)."""
    out = g[1:-1, :-2] + g[1:-1, 2:]  # in place from here: the same sums, fewer large temporaries
    out += g[:-2, 1:-1]
    out += g[2:, 1:-1]
    out -= 4 * g[1:-1, 1:-1]
    return out


def measure(grey: npt.NDArray[np.uint8]) -> Quality:
    """Quality figures of a greyscale working image (at least 3×3)."""
    if grey.ndim != 2 or min(grey.shape) < 3:
        raise ValueError(f"need a 2-D image of at least 3×3, got {grey.shape}")
    if grey.dtype == np.uint8:
        # Integers throughout (the keeper measures hundreds of near-full-size images a session):
        # the Laplacian of 8-bit grey levels lies in [-1020, 1020]; moments from integer sums.
        g16 = grey.astype(np.int16)
        brightness, var = mean_var(g16)
        return Quality(sharpness=mean_var(int_laplacian(g16))[1], brightness=brightness,
                       contrast=math.sqrt(var), noise=estimate_noise(grey))
    g = grey.astype(np.float32)
    return Quality(
        sharpness=float(laplacian(g).var(dtype=np.float64)),
        brightness=float(g.mean(dtype=np.float64)),
        contrast=float(g.std(dtype=np.float64)),
        noise=estimate_noise(grey),
    )


def score(q: Quality, weights: QualityWeights = QualityWeights()) -> float:
    """Overall quality in 0–1: sharp, well exposed, contrasty, with faces."""
    parts = {
        # log scale: sharpness spans orders of magnitude between a blurred and a crisp photo
        "sharpness": min(1.0, math.log1p(q.sharpness) / math.log1p(2000.0)),
        "brightness": max(0.0, 1.0 - abs(q.brightness - 128.0) / 128.0),
        "contrast": min(1.0, q.contrast / 64.0),
        "faces": min(1.0, q.faces / 3.0),
    }
    total = weights.sharpness + weights.brightness + weights.contrast + weights.faces
    return (
        weights.sharpness * parts["sharpness"] + weights.brightness * parts["brightness"]
        + weights.contrast * parts["contrast"] + weights.faces * parts["faces"]
    ) / total


def shown(q: Quality, weights: QualityWeights = QualityWeights()) -> dict[str, float]:
    """The figures as the review card shows them, and as reasons quote them: one measurement,
    one number (one decimal; the overall score two)."""
    return {"sharpness": round(q.sharpness, 1), "brightness": round(q.brightness, 1),
            "contrast": round(q.contrast, 1), "noise": round(q.noise, 1), "score": round(score(q, weights), 2)}
