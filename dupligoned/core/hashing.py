"""Perceptual hashes with imagehash's semantics, on arrays the decoder already reduced.

The decoder produces the two small greyscale images imagehash itself would make (a 32×32 and a
9×8 Lanczos reduction of the ``L`` image); these functions turn them into 64-bit integers. Bit
order follows ``imagehash.ImageHash``: the first array element is the most significant bit, so
``f"{h:016x}"`` equals ``str(imagehash.phash(img))``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PHASH_SIZE = 32  # imagehash: hash_size 8 × highfreq_factor 4
DHASH_SHAPE = (8, 9)  # rows, columns (PIL size (9, 8))

_N = PHASH_SIZE
_k = np.arange(8)[:, None]
_n = np.arange(_N)[None, :]
# The first 8 rows of scipy.fftpack's unnormalised DCT-II: y[k] = 2 Σ x[n] cos(πk(2n+1)/2N).
_DCT8: npt.NDArray[np.float64] = 2.0 * np.cos(np.pi * _k * (2 * _n + 1) / (2 * _N))
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))


def bits_to_int(bits: npt.NDArray[np.bool_]) -> int:
    """Pack 64 booleans (row-major, first = most significant) into an int."""
    flat = bits.reshape(-1)
    if flat.size != 64:
        raise ValueError(f"expected 64 bits, got {flat.size}")
    return int(np.bitwise_or.reduce(_WEIGHTS[flat]) if flat.any() else 0)


def phash(grey32: npt.NDArray[np.uint8]) -> int:
    """pHash of a 32×32 greyscale array: DCT, the 8×8 lowest frequencies above their median."""
    if grey32.shape != (PHASH_SIZE, PHASH_SIZE):
        raise ValueError(f"phash needs a 32×32 array, got {grey32.shape}")
    low = _DCT8 @ grey32.astype(np.float64) @ _DCT8.T
    return bits_to_int(low > np.median(low))


def dhash(grey9x8: npt.NDArray[np.uint8]) -> int:
    """dHash of an 8-row × 9-column greyscale array: is each pixel brighter than its left one."""
    if grey9x8.shape != DHASH_SHAPE:
        raise ValueError(f"dhash needs an 8×9 array, got {grey9x8.shape}")
    return bits_to_int(grey9x8[:, 1:] > grey9x8[:, :-1])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def distance(p1: int, d1: int, p2: int, d2: int) -> float:
    """The product's photo distance: the mean of the pHash and dHash Hamming distances."""
    return (hamming(p1, p2) + hamming(d1, d2)) / 2.0


def combined_hex(p: int, d: int) -> str:
    """The stored ``phash_dhash`` form: two 16-digit hex numbers joined by ``_``."""
    return f"{p:016x}_{d:016x}"


def parse_combined_hex(text: str) -> tuple[int, int]:
    p, _, d = text.partition("_")
    if len(p) != 16 or len(d) != 16:
        raise ValueError(f"not a phash_dhash value: {text!r}")
    return int(p, 16), int(d, 16)
