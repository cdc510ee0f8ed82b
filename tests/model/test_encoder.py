"""The one encoder input (model/encoder.py): each stage's policy, scale and restore."""

from __future__ import annotations

import numpy as np

from draco_em.imaging.normalize import clip_stats, robust_normalize
from draco_em.model.encoder import DENOISE, curate_input, pick_input, working_image


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 5.0, (256, 192)).astype(np.float32)
    img[10, 10] = 1e5  # a hot pixel: the three policies treat it differently
    return img


def test_denoise_policy_standardises_without_clipping_and_restores() -> None:
    img = _image()
    work = working_image(img, 1.0, 1.0, DENOISE)
    mean, std = clip_stats(img)
    assert (work.mean, work.std) == (mean, std)
    assert float(work.image.max()) > 1e3  # the hot pixel survives (nothing clipped)
    np.testing.assert_allclose(work.restore(work.image), img, rtol=1e-5)
    assert work.scale == (1.0, 1.0) and work.pixel_size == 1.0


def test_curate_policy_clamps_at_sigma() -> None:
    work = working_image(_image(), None, None, curate_input(4.0))
    assert float(np.abs(work.image).max()) == 4.0


def test_pick_policy_is_the_dracos_window_clip() -> None:
    img = _image()
    np.testing.assert_array_equal(working_image(img, 1.0, 1.0, pick_input(0.0)).image,
                                  robust_normalize(img)[0])  # fmt: skip
    ramp = img + np.linspace(0, 50, 192, dtype=np.float32)
    step = [working_image(ramp, 1.0, 1.0, pick_input(bg)).image for bg in (0.0, 16.0)]
    left_right = [abs(float(x[:, :20].mean() - x[:, -20:].mean())) for x in step]
    assert left_right[1] < 0.5 * left_right[0]  # the background gradient is reduced


def test_rescale_to_the_working_pixel_size_reports_scale_and_pixel_size() -> None:
    work = working_image(_image(), 1.0, 2.0, DENOISE)
    assert work.image.shape == (128, 96)
    assert work.scale == (0.5, 0.5) and work.pixel_size == 2.0
    # Within the tolerance (1e-3 Å) the image is used at its own sampling.
    assert working_image(_image(), 1.0, 1.0005, DENOISE).image.shape == (256, 192)
