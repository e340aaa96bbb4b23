from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dupligoned.core.quality import Quality, QualityWeights, estimate_noise, measure, score
from tests import corpus


def _grey(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def test_blur_lowers_sharpness_and_darkening_lowers_brightness() -> None:
    im = Image.open(corpus.path(corpus.ORIGINAL)).convert("L")
    sharp = measure(np.asarray(im))
    blurred = measure(np.asarray(im.filter(ImageFilter.GaussianBlur(2.5))))
    dark = measure((np.asarray(im) * 0.4).astype(np.uint8))
    assert blurred.sharpness < sharp.sharpness / 3
    assert dark.brightness < sharp.brightness * 0.5
    assert dark.contrast < sharp.contrast


def test_figures_of_a_known_image() -> None:
    flat = np.full((50, 60), 100, np.uint8)
    q = measure(flat)
    assert q == Quality(sharpness=0.0, brightness=100.0, contrast=0.0, noise=0.0)
    half = np.zeros((50, 60), np.uint8)
    half[:, 30:] = 200
    assert measure(half).contrast == pytest.approx(100.0)


def test_noise_estimate_recovers_white_noise_sigma() -> None:
    rng = np.random.default_rng(1)
    img = np.clip(128 + rng.normal(0, 8, (400, 400)), 0, 255).astype(np.uint8)
    assert estimate_noise(img) == pytest.approx(8.0, rel=0.1)


def test_score_rewards_sharpness_exposure_and_faces() -> None:
    base = Quality(sharpness=500, brightness=128, contrast=60, noise=1)
    assert score(base) > score(Quality(sharpness=5, brightness=128, contrast=60, noise=1))
    assert score(base) > score(Quality(sharpness=500, brightness=30, contrast=60, noise=1))
    assert score(Quality(500, 128, 60, 1, faces=2)) > score(base)
    only_faces = QualityWeights(sharpness=0, brightness=0, contrast=0, faces=1)
    assert score(base, only_faces) == 0.0


def test_bad_weights_and_images_are_refused() -> None:
    with pytest.raises(ValueError):
        QualityWeights(sharpness=-1)
    with pytest.raises(ValueError):
        QualityWeights(0, 0, 0, 0)
    with pytest.raises(ValueError):
        measure(np.zeros((2, 2), np.uint8))


def test_halve_is_a_2x2_box_filter() -> None:
    from dupligoned.core.quality import halve

    img = np.array([[0, 4, 8, 8, 9], [4, 8, 8, 8, 9], [200, 200, 1, 3, 9]], np.uint8)
    assert halve(img).tolist() == [[4, 8]]  # odd last row and column dropped; (0+4+4+8)/4 = 4
    big = np.random.default_rng(0).integers(0, 256, (512, 384), dtype=np.uint8)
    assert halve(big).shape == (256, 192)
    assert abs(float(halve(big).mean()) - float(big.mean())) < 1.0


@pytest.mark.parametrize("shape", [(3, 3), (4, 7), (257, 130), (768, 1024)])
def test_8_bit_figures_equal_the_floating_point_reference(shape: tuple[int, int]) -> None:
    """The keeper measures hundreds of near-full-size images a session in integers; the figures
    are those of the floating-point formulas (two-pass variance, the 3×3 noise mask)."""
    rng = np.random.default_rng(shape[0])
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    grey = np.clip(128 + 90 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + rng.normal(0, 12, shape), 0, 255)
    grey[: shape[0] // 3] = 255  # a saturated band: the ends of the ranges
    grey = grey.astype(np.uint8)
    got, ref = measure(grey), measure(grey.astype(np.float32))
    f = grey.astype(np.float64)
    lap = f[1:-1, :-2] + f[1:-1, 2:] + f[:-2, 1:-1] + f[2:, 1:-1] - 4 * f[1:-1, 1:-1]
    for name in ("sharpness", "brightness", "contrast", "noise"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-9, abs=1e-9), name
        assert type(getattr(got, name)) is float
    assert got.sharpness == pytest.approx(lap.var(), rel=1e-12)
    assert got.contrast == pytest.approx(f.std(), rel=1e-12)
    assert estimate_noise(grey) == pytest.approx(estimate_noise(grey.astype(np.float32)), rel=1e-12)
