"""The pre-denoised 8-bit rendering augmentation (``curate.augment``)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from draco_em.curate.augment import denoised_rendering
from draco_em.imaging.normalize import padded_border


def _hf_share(image: np.ndarray) -> float:
    """Share of the (mean-free) power above half Nyquist."""
    f = np.abs(np.fft.rfft2(image - image.mean())) ** 2
    r = np.hypot(np.fft.fftfreq(image.shape[0])[:, None], np.fft.rfftfreq(image.shape[1]))
    return float(f[r > 0.25].sum() / f.sum())


def test_rendering_is_smooth_8bit_clipped_and_may_have_replicated_borders() -> None:
    rng = np.random.default_rng(0)
    raw = rng.poisson(20.0, (256, 256)).astype(np.float32)
    raw[100:140, 100:140] -= 10  # a dark object that must survive the smoothing
    out = denoised_rendering(raw, 2.0, np.random.default_rng(1), border_probability=0.0)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert out.min() == 0 and out.max() == 255  # stretched and clipped
    assert _hf_share(out.astype(np.float64)) < 0.01 < _hf_share(raw)  # the noise is gone
    assert out[110:130, 110:130].mean() < out[:60, :60].mean()  # the object is still there
    assert padded_border(out) == (0, 0, 0, 0)
    bordered = denoised_rendering(raw, 2.0, np.random.default_rng(1), border_probability=1.0)
    top, bottom, left, right = (int(v) for v in padded_border(bordered))
    assert top + bottom + left + right > 0
    assert (bordered[0] == bordered[1]).all() or (bordered[:, 0] == bordered[:, 1]).all()


def test_rendering_from_the_clean_image_keeps_only_a_residual_of_the_noise() -> None:
    """With the clean image, the rendering is what a denoiser returns: the low-frequency noise
    a low-pass keeps is mostly gone too."""
    rng = np.random.default_rng(0)
    clean = np.full((256, 256), 20.0, np.float32)
    clean[100:140, 100:140] -= 3
    raw = rng.poisson(clean).astype(np.float32)
    background = (slice(0, 90), slice(0, 256))

    def noise_to_contrast(out: np.ndarray) -> float:
        out = out.astype(np.float64)
        return float(out[background].std() / (out[:90].mean() - out[110:130, 110:130].mean()))

    lowpass = denoised_rendering(raw, 2.0, np.random.default_rng(1), border_probability=0.0)
    denoised = denoised_rendering(
        raw, 2.0, np.random.default_rng(1), border_probability=0.0, clean=clean
    )
    assert noise_to_contrast(denoised) < 0.5 * noise_to_contrast(lowpass)


def test_local_contrast_evens_the_contrast_across_the_field() -> None:
    """CLAHE-like pictures have the same contrast everywhere: a field whose left half has five
    times the texture of the right half comes out even with ``local_contrast``."""
    rng = np.random.default_rng(0)
    texture = gaussian_filter(rng.normal(size=(256, 512)), 3.0)
    image = texture * np.where(np.arange(512) < 256, 5.0, 1.0)[None, :]

    def left_over_right(out: np.ndarray) -> float:
        out = out.astype(np.float64)
        return float(out[:, 20:236].std() / out[:, 276:492].std())

    kwargs = {"border_probability": 0.0}
    plain = denoised_rendering(image, 2.0, np.random.default_rng(1), **kwargs)
    even = denoised_rendering(image, 2.0, np.random.default_rng(1), local_contrast=60.0, **kwargs)
    assert left_over_right(plain) > 3.0 and left_over_right(even) < 1.5
