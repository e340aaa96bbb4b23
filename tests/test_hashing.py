"""pHash/dHash: imagehash's values on the same pixels, pinned golden values, distance laws."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dupligoned.adapters.decode import decode_photo
from dupligoned.core import hashing
from tests import corpus

GOLDEN = Path(__file__).parent / "data" / "golden.png"
u64 = st.integers(min_value=0, max_value=2**64 - 1)


def _ours(im: Image.Image) -> tuple[str, str]:
    grey = im.convert("L")
    p = hashing.phash(np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS)))
    d = hashing.dhash(np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS)))
    return f"{p:016x}", f"{d:016x}"


def test_golden_values_are_pinned() -> None:
    # If a Pillow, numpy or imagehash upgrade shifts these, every stored index is invalid.
    im = Image.open(GOLDEN)
    assert _ours(im) == ("888778788fd926ce", "bbffeee2eaffbbbb")
    assert (str(imagehash.phash(im)), str(imagehash.dhash(im))) == ("888778788fd926ce", "bbffeee2eaffbbbb")


def test_decoder_hashes_the_golden_image_like_imagehash() -> None:
    dec = decode_photo(str(GOLDEN))
    assert f"{hashing.phash(dec.grey32):016x}" == "888778788fd926ce"
    assert f"{hashing.dhash(dec.grey9x8):016x}" == "bbffeee2eaffbbbb"


def test_equals_imagehash_on_photos() -> None:
    jpegs = [p for p in corpus.files() if p.suffix.lower() == ".jpg"]
    photos = jpegs[:40] + [p for p in corpus.files() if p.suffix.lower() == ".webp"][:10]
    assert len(photos) == 50
    for path in photos:
        im = Image.open(path)
        assert _ours(im) == (str(imagehash.phash(im)), str(imagehash.dhash(im))), path


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_equals_imagehash_on_random_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, size=(40, 50), dtype=np.uint8), "L")
    assert _ours(im) == (str(imagehash.phash(im)), str(imagehash.dhash(im)))


@given(u64, u64, u64, u64)
def test_distance_is_symmetric_and_zero_on_itself(p1: int, d1: int, p2: int, d2: int) -> None:
    assert hashing.distance(p1, d1, p2, d2) == hashing.distance(p2, d2, p1, d1)
    assert hashing.distance(p1, d1, p1, d1) == 0
    assert 0 <= hashing.distance(p1, d1, p2, d2) <= 64


@given(u64, u64, u64, u64, u64, u64)
def test_distance_obeys_the_triangle_inequality(a: int, b: int, c: int, d: int, e: int, f: int) -> None:
    assert hashing.distance(a, b, e, f) <= hashing.distance(a, b, c, d) + hashing.distance(c, d, e, f)


def test_distance_is_the_mean_of_the_two_hammings() -> None:
    assert hashing.distance(0b1011, 0, 0, 0b1) == (3 + 1) / 2


@given(u64, u64)
def test_combined_hex_round_trips(p: int, d: int) -> None:
    text = hashing.combined_hex(p, d)
    assert len(text) == 33 and text[16] == "_"
    assert hashing.parse_combined_hex(text) == (p, d)


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        hashing.phash(np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError):
        hashing.dhash(np.zeros((9, 8), np.uint8))
