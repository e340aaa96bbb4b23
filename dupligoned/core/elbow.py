"""The elbow of an increasing convex curve: the Kneedle algorithm, as kneed's ``KneeLocator``.

``elbow_index(y)`` is the index kneed's ``KneeLocator(range(len(y)), y, curve="convex",
direction="increasing", online=False, S=sensitivity)`` reports as its knee, or None where it
finds none (a test checks the two agree on random and real curves).

Why not call kneed: it imports ``scipy.signal`` for one helper (``argrelextrema``), half a second
of CPU and ~75 MB resident memory, paid by every ``dupligone scan`` (a fifth of a 100-photo
scan's fixed cost) and by a daemon that lives for months. The algorithm itself is a few array
operations (Satopää et al., "Finding a 'Kneedle' in a Haystack", 2011).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _normalise(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = (a - a.min()) / (a.max() - a.min())
    return out


def _local_extrema(d: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Points ≥ (maxima) and ≤ (minima) both neighbours; the ends compare with themselves
    (``scipy.signal.argrelextrema`` with ``mode="clip"``), so flat stretches are both."""
    prev = np.concatenate([d[:1], d[:-1]])
    nxt = np.concatenate([d[1:], d[-1:]])
    return (d >= prev) & (d >= nxt), (d <= prev) & (d <= nxt)


def elbow_index(y: npt.ArrayLike, sensitivity: float = 1.0) -> int | None:
    """Index of the elbow of ``y`` (increasing, convex, at evenly spaced x), or None."""
    values = np.asarray(y, dtype=np.float64)
    n = values.size
    if n < 2 or values.max() == values.min():
        return None
    x_norm = np.arange(n, dtype=np.float64) / (n - 1)  # x = 0, 1, …, n-1 normalised, as kneed does
    # Turn the convex increasing curve into a concave increasing one, as kneed does: flip both.
    y_norm = np.flip(1.0 - _normalise(values))
    x_norm = np.flip(1.0 - x_norm)
    diff = y_norm - x_norm
    is_max, is_min = _local_extrema(diff)
    maxima = np.flatnonzero(is_max)
    if maxima.size == 0:
        return None
    # A local maximum's threshold: its height less S × the mean x step.
    step = abs(float(np.diff(x_norm).mean()))
    thresholds = diff[maxima] - sensitivity * step
    k = 0
    threshold = 0.0
    threshold_index = -1
    active = True
    for i in range(int(maxima[0]), n - 1):
        if is_max[i]:
            threshold, threshold_index = float(thresholds[k]), i
            k += 1
            active = True
        if is_min[i]:
            threshold, active = 0.0, False
        if active and diff[i + 1] < threshold:
            # The curve was flipped: flipped index t is original index n - 1 - t.
            return n - 1 - threshold_index
    return None
