"""Whole-image statistics of a micrograph: the ``stats`` feature block of a curation head.

A frozen 64-px-tile encoder describes texture; what experts look at first on a binned
micrograph is simpler: how the grey levels are distributed (ice balls and contamination are
heavy dark tails, an empty hole is flat), how power falls with frequency (thick ice, drift and
denoised renderings lose the high frequencies), and how much the local mean and contrast vary
across the field (ice gradients, hole edges, crystalline domains). On the 18 real MicAssess
micrographs these statistics separated good from bad better than the encoder's pooled tokens
in leave-one-out (docs/benchmarks.md, issue 19 sessions 2 and 3).

:func:`image_statistics` gives :data:`N_STATS` values, none of which depends on the intensity
units (the image is robust-standardised first): the spectrum block
(:func:`~draco_em.curate.features.spectrum_vector`, on by default) adds the 8 unit-free
spectrum features beside them, so ``--features stats`` is 37 values.
"""

from __future__ import annotations

import itertools

import numpy as np

from draco_em.imaging.tiling import TileGrid, tile_image

#: Intensity quantiles (%) of the robust-standardised image.
QUANTILES = (1, 5, 25, 50, 75, 95, 99)
#: Radial bins of the log power spectrum, in cycles per pixel (0.01 to Nyquist).
PROFILE_BINS = 16
#: Tile side (px, at the micrograph's own sampling) of the tile-mean/-contrast spreads.
TILE = 64
#: Number of values of :func:`image_statistics`.
N_STATS = len(QUANTILES) + 4 + PROFILE_BINS + 2


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Unit-free whole-image statistics of one micrograph ``[H, W]`` → ``[N_STATS]`` float32.

    On the image standardised by its median and MAD (clipped at ±50, hot pixels):

    * 7 intensity quantiles (:data:`QUANTILES`), skewness, excess kurtosis and the shares of
      pixels below −3 and above +3 (dark contamination and ice balls, bright holes);
    * the log radial power spectrum in :data:`PROFILE_BINS` bins from 0.01 cycle/px to
      Nyquist, minus its mean (its *shape*: the fall-off that thick ice, drift and
      low-pass renderings change);
    * the standard deviation over non-overlapping :data:`TILE`-px tiles of the tile means and
      of the tile standard deviations (gradients, hole edges, domains).

    Non-finite values (a constant image) become 0.
    """
    img = np.asarray(image, np.float64)
    med = np.median(img)
    mad = 1.4826 * np.median(np.abs(img - med)) + 1e-12
    z = np.clip((img - med) / mad, -50, 50)
    q = np.percentile(z, QUANTILES)
    m, sd = z.mean(), z.std() + 1e-12
    skew, kurt = np.mean(((z - m) / sd) ** 3), np.mean(((z - m) / sd) ** 4) - 3
    tails = [np.mean(z < -3), np.mean(z > 3)]
    power = np.abs(np.fft.rfft2(z - m)) ** 2
    ky = np.fft.fftfreq(z.shape[0])[:, None]
    kx = np.fft.rfftfreq(z.shape[1])[None, :]
    r = np.hypot(ky, kx)
    edges = np.linspace(0.01, 0.5, PROFILE_BINS + 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty bins of tiny images
        prof = np.array(
            [np.log(power[(r >= a) & (r < b)].mean() + 1e-12) for a, b in itertools.pairwise(edges)]
        )
    prof -= np.nanmean(prof)
    tiles = tile_image(z, TileGrid(z.shape, min(TILE, *z.shape), overlap=0))
    spread = [tiles.mean(axis=(1, 2)).std(), tiles.std(axis=(1, 2)).std()]
    out = np.concatenate([q, [skew, kurt, *tails], prof, spread])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
