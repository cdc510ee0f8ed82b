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
