"""Fourier crop/pad: hand-computed values, band-limited analytic images, exact pixel size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale, fourier_resize, rescaled_shape


def test_pad_and_crop_match_hand_computed_values() -> None:
    # [1, 3]: spectrum [4, -2]; padding to 4 splits the Nyquist bin -2 into -1 at ±1 cycle,
    # i.e. cosine interpolation: the midpoints are the mean, 2.
    up = fourier_resize(np.array([[1.0, 3.0]]), (1, 4))
    np.testing.assert_allclose(up, [[1.0, 2.0, 3.0, 2.0]], atol=1e-12)
    # Cropping back folds the ±2-cycle bins onto the single Nyquist bin.
    down = fourier_resize(np.array([[1.0, 2.0, 3.0, 2.0]]), (1, 2))
    np.testing.assert_allclose(down, [[1.0, 3.0]], atol=1e-12)
    # The Nyquist cosine [1, -1, 1, -1] padded to 8 samples is cos(pi n / 2), real, symmetric.
    nyq = fourier_resize(np.array([[1.0, -1.0, 1.0, -1.0]]), (1, 8))
    np.testing.assert_allclose(nyq, [[1, 0, -1, 0, 1, 0, -1, 0]], atol=1e-12)


def test_two_dimensional_hand_computed_separable() -> None:
    # An outer product resamples as the outer product of the 1D results.
    img = np.outer([1.0, 3.0], [1.0, 2.0, 3.0, 2.0])
    out = fourier_resize(img, (4, 2))
    np.testing.assert_allclose(out, np.outer([1.0, 2.0, 3.0, 2.0], [1.0, 3.0]), atol=1e-12)


def _analytic(h: int, w: int, step: float) -> np.ndarray:
    """Band-limited image sampled at positions 0, step, 2 step, ... (input pixels)."""
    y = np.arange(h)[:, None] * step
    x = np.arange(w)[None, :] * step
    h0, w0 = 60, 90  # the input grid the frequencies are defined on
    return (
        2.0
        + np.cos(2 * np.pi * 3 * y / h0 + 0.4)
        + 0.5 * np.sin(2 * np.pi * 7 * x / w0 - 1.0)
        + 0.25 * np.cos(2 * np.pi * (2 * y / h0 + 5 * x / w0))
    )


@pytest.mark.parametrize(("target", "shape"), [(2.0, (30, 45)), (0.5, (120, 180)), (1.5, (40, 60))])
def test_matches_band_limited_analytic_image(target: float, shape: tuple[int, int]) -> None:
    img = _analytic(60, 90, 1.0)
    out, px = fourier_rescale(img, 1.0, target)
    assert out.shape == shape
    assert px == pytest.approx(target)
    # Sample 0 stays in place: output pixel j sits at input position j * px.
    np.testing.assert_allclose(out, _analytic(*shape, px), atol=1e-10)


def test_pixel_size_is_exact_from_the_integer_box() -> None:
    img = np.zeros((100, 100), np.float32)
    out, px = fourier_rescale(img, 1.0, 3.0)  # 33.33 px → 33
    assert out.shape == (33, 33)
    assert px == 1.0 * 100 / 33  # exact, not the requested 3.0
    assert px != 3.0


def test_box_keeps_x_and_y_on_the_same_scale_when_possible() -> None:
    # 4000x6000 at 1/3: independent rounding gives 1333x2000 (different x/y factors);
    # 1334x2001 is within a pixel on each axis and scales both by exactly 667/2000.
    assert rescaled_shape((4000, 6000), 1.0, 3.0) == (1334, 2001)
    h, w = rescaled_shape((4096, 4096), 1.0, 3.3)
    assert h == w == 1241
    # gcd(927, 959) = 1: no common factor, each axis is rounded on its own.
    assert rescaled_shape((927, 959), 1.0, 4.0) == (232, 240)


@pytest.mark.parametrize("out_shape", [(8, 9), (7, 7), (16, 10), (33, 31), (12, 12)])
@pytest.mark.parametrize("in_shape", [(12, 12), (13, 11)])
def test_constant_image_keeps_its_value(
    in_shape: tuple[int, int], out_shape: tuple[int, int]
) -> None:
    img = np.full(in_shape, 7.25, np.float32)
    out = fourier_resize(img, out_shape)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 7.25, rtol=1e-6)


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (16, 9)])
def test_pad_then_crop_is_identity(shape: tuple[int, int], rng: np.random.Generator) -> None:
    img = rng.normal(size=shape)
    big = fourier_resize(img, (shape[0] * 2 + 1, shape[1] + 6))
    np.testing.assert_allclose(fourier_resize(big, shape), img, atol=1e-10)


def test_mean_is_preserved_for_random_images(rng: np.random.Generator) -> None:
    img = rng.normal(3.0, 1.0, size=(3, 47, 64))
    for target in (0.7, 1.3, 2.9):
        out, _ = fourier_rescale(img, 1.0, target)
        np.testing.assert_allclose(out.mean(axis=(-2, -1)), img.mean(axis=(-2, -1)), atol=1e-10)


def test_blob_moves_to_x_over_f(rng: np.random.Generator) -> None:
    yy, xx = np.mgrid[:128, :128]
    img = np.exp(-((yy - 40.0) ** 2 + (xx - 70.0) ** 2) / (2 * 4.0**2))
    out, px = fourier_rescale(img, 1.0, 2.0)
    w = np.clip(out, 0, None)
    cy = (w * np.arange(64)[:, None]).sum() / w.sum()
    cx = (w * np.arange(64)[None, :]).sum() / w.sum()
    assert (cy, cx) == pytest.approx((40.0 / px, 70.0 / px), abs=0.02)


@pytest.mark.parametrize("target", [0.6, 1.0, 2.5])
def test_torch_and_numpy_agree(target: float, rng: np.random.Generator) -> None:
    img = rng.normal(size=(2, 1, 50, 37)).astype(np.float32)
    a, pa = fourier_rescale(img, 1.0, target)
    b, pb = fourier_rescale(torch.from_numpy(img), 1.0, target)
    assert isinstance(b, torch.Tensor) and b.dtype == torch.float32
    assert pa == pb
    np.testing.assert_allclose(b.numpy(), a, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 16), (17, 15), (64, 65), (37, 100)])
@pytest.mark.parametrize("out", [(8, 8), (7, 9), (9, 7), (33, 40), (130, 129), (1, 1), (2, 3)])
def test_half_plane_numpy_path_equals_the_full_plane_torch_path(
    shape: tuple[int, int], out: tuple[int, int], rng: np.random.Generator
) -> None:
    # numpy resizes rfft2 half planes (the Nyquist column folded or split by hand), torch the
    # full plane: every parity of input and output, cropping and padding, must agree.
    img = rng.normal(size=(2, *shape))
    a = fourier_resize(img, out)
    b = fourier_resize(torch.from_numpy(img), out).numpy()
    np.testing.assert_allclose(a, b, atol=1e-10 * np.abs(b).max())


def test_dtypes() -> None:
    ints = np.arange(64, dtype=np.int16).reshape(8, 8)
    assert fourier_resize(ints, (4, 4)).dtype == np.float32
    assert fourier_resize(ints.astype(np.float64), (4, 4)).dtype == np.float64
    half = torch.ones(8, 8, dtype=torch.float16)
    out = fourier_resize(half, (4, 4))
    assert out.dtype == torch.float16
    assert torch.allclose(out.float(), torch.ones(4, 4))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_pixel_sizes_are_user_errors(bad: float) -> None:
    with pytest.raises(DracoInputError, match="pixel size"):
        fourier_rescale(np.zeros((8, 8)), bad, 2.0)
    with pytest.raises(DracoInputError, match="target pixel size"):
        fourier_rescale(np.zeros((8, 8)), 1.0, bad)
