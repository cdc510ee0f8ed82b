"""Benchmark baselines: ResNet-18 shapes, power-spectrum features that respond, logistic fit."""

from __future__ import annotations

import numpy as np
import torch

from draco_em.curate.baselines import LogisticRegression, ResNet18, resnet_input, spectrum_features


def test_resnet18_layout_and_output() -> None:
    net = ResNet18(n_classes=7, width=8)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert n_convs == 1 + 16 + 3  # stem, 8 blocks × 2, 3 projection shortcuts
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 7)
    assert resnet_input(np.ones((100, 90)), 1.0, size=64).shape == (64, 64)


def test_spectrum_features_see_the_ice_band_and_dark_areas() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(100, 5, (256, 256))
    feats = spectrum_features(base, 1.0)
    assert feats.shape == (10,) and np.all(np.isfinite(feats))
    _, xx = np.mgrid[:256, :256]
    ice = base + 3 * np.cos(2 * np.pi * xx / 3.67)  # a lattice at the ice 002 spacing
    assert spectrum_features(ice, 1.0)[2] > feats[2] + 1.0
    dark = base.copy()
    dark[:96, :96] -= 60
    assert spectrum_features(dark, 1.0)[7] > feats[7]


def test_logistic_regression_separates_shifted_clusters() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 3)), rng.normal(3, 1, (30, 3))])
    y = np.repeat([0, 1], 30)
    p = LogisticRegression().fit(x, y, 2).predict_proba(x)
    assert np.mean(p.argmax(1) == y) > 0.95


def test_spectrum_and_tile_statistics_stream_without_changing_the_numbers(monkeypatch) -> None:
    """K3 fields are handled a batch of tiles at a time: the same spectrum (bit for bit) and
    the same real-space statistics as the whole-image computation they replaced."""
    from draco_em.curate import baselines
    from draco_em.imaging import fourier
    from draco_em.imaging.normalize import clip_stats
    from draco_em.imaging.tiling import TileGrid, tile_image

    rng = np.random.default_rng(3)
    image = rng.normal(50, 4, (700, 1100)).astype(np.float32)
    image[:200, :300] -= 30  # a dark patch, so the tile fractions are not all zero
    monkeypatch.setattr(fourier, "_SPECTRUM_BATCH", 3)  # many batches, a partial last one
    mean, std = clip_stats(image)
    tiles = tile_image((image - mean) / std, TileGrid(image.shape, 256, overlap=0))
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(256), np.hanning(256))
    expected = np.fft.fftshift((np.abs(np.fft.fft2(tiles * window)) ** 2).mean(axis=0))
    assert np.array_equal(fourier.welch_spectrum(image), expected)

    img64 = image.astype(np.float64)
    means = tile_image(img64, TileGrid(image.shape, 64, overlap=0)).mean(axis=(1, 2))
    med = np.median(means)
    mad = 1.4826 * np.median(np.abs(means - med)) + 1e-12
    expected_stats = [np.log(img64.mean()), img64.std() / img64.mean(),
                      np.mean(means < med - 3 * mad), np.std(means) / img64.std(),
                      np.mean(means > med + 3 * mad)]  # fmt: skip
    assert baselines._real_space(image)[2] > 0
    np.testing.assert_allclose(baselines._real_space(image), expected_stats, rtol=1e-12)
