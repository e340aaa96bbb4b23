"""Our Kneedle is kneed's KneeLocator (convex, increasing, offline) without its scipy import."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dupligoned.core.elbow import elbow_index


def _kneed(y: np.ndarray, sensitivity: float = 1.0) -> int | None:
    from kneed import KneeLocator

    try:
        knee = KneeLocator(np.arange(y.size), y, S=sensitivity, curve="convex", direction="increasing", online=False)
    except (ValueError, IndexError):  # kneed gives up on some degenerate curves
        return None
    return None if knee.knee is None else int(knee.knee)


# k-distances are halves (the mean of two Hamming distances): curves full of ties and flat runs.
_halves = st.lists(st.integers(0, 64), min_size=2, max_size=400).map(lambda v: np.sort(np.array(v) / 2.0))
_floats = st.lists(st.floats(0, 64, allow_nan=False), min_size=2, max_size=400).map(np.sort)


@settings(max_examples=400, deadline=None)
@given(y=st.one_of(_halves, _floats), sensitivity=st.sampled_from([0.5, 1.0, 2.0]))
def test_elbow_equals_kneed(y: np.ndarray, sensitivity: float) -> None:
    if y.max() == y.min():  # kneed divides by zero here; choose_eps never asks
        assert elbow_index(y, sensitivity) is None
        return
    assert elbow_index(y, sensitivity) == _kneed(y, sensitivity)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dup_share=st.floats(0.0, 0.5))
def test_elbow_equals_kneed_on_library_shaped_curves(seed: int, dup_share: float) -> None:
    """A library's k-distance graph: duplicates near 0, then unrelated photos around 20–32."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 5000))
    dups = int(n * dup_share)
    y = np.sort(np.concatenate([
        np.round(rng.uniform(0, 4, dups) * 2) / 2,
        np.round(rng.normal(26, 3, n - dups).clip(8, 40) * 2) / 2,
    ]))
    got = elbow_index(y)
    assert got == _kneed(y)


def test_elbow_sits_where_the_curve_shoots_up() -> None:
    y = np.concatenate([np.linspace(0, 2, 900), np.linspace(2, 30, 100)])  # flat, then steep
    assert elbow_index(y) == 900
    assert elbow_index(np.linspace(0, 9, 200)) is None  # a straight line has none
