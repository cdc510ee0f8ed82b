"""Curation features: tiling at the working pixel size, tile pooling, aggregation, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from draco_em.curate.config import FeatureConfig
from draco_em.curate.features import (
    N_SPECTRUM,
    aggregate,
    micrograph_features,
    micrograph_tiles,
    micrograph_vector,
    n_features,
    spectrum_vector,
)
from draco_em.model.encoder import encode_tiles, load_encoder


def test_tiles_rescale_to_working_pixel_size_and_standardise() -> None:
    image = np.random.default_rng(0).normal(50, 3, (256, 256)).astype(np.float32)
    tiles = micrograph_tiles(image, 1.0, 2.0, FeatureConfig(tile=64))
    # 256 px at 1 Å → 128 px at 2 Å → 2×2 non-overlapping 64-px tiles.
    assert tiles.shape == (4, 64, 64)
    assert abs(float(tiles.mean())) < 0.2 and 0.7 < float(tiles.std()) < 1.3


def test_tiles_are_capped_and_clamped() -> None:
    image = np.zeros((512, 512), np.float32)
    image[0, 0] = 1e6  # a hot pixel
    image += np.random.default_rng(0).normal(0, 1, image.shape).astype(np.float32)
    tiles = micrograph_tiles(image, None, None, FeatureConfig(tile=64, max_tiles=5, clip_sigma=4))
    assert tiles.shape == (5, 64, 64)
    assert float(np.abs(tiles).max()) <= 4.0


def test_aggregate_is_mean_then_max_or_quantile_over_tiles() -> None:
    feats = torch.tensor([[1.0, -2.0], [3.0, 0.0], [2.0, -5.0]])
    np.testing.assert_allclose(aggregate(feats).numpy(), [2.0, -7 / 3, 3.0, 0.0], rtol=1e-6)
    # quantile 0.75 of (1, 2, 3) is 2.5, of (-5, -2, 0) is -1 (linear interpolation)
    np.testing.assert_allclose(aggregate(feats, 0.75).numpy(), [2.0, -7 / 3, 2.5, -1.0], rtol=1e-6)


def test_micrograph_vector_appends_unit_free_spectrum_features() -> None:
    rng = np.random.default_rng(0)
    image = rng.poisson(50, (256, 256)).astype(np.float32)
    cfg = FeatureConfig(tile=64)
    spec = spectrum_vector(image, 2.0, cfg)
    assert spec.shape == (N_SPECTRUM,) == (8,) and np.all(np.isfinite(spec))
    # Unit-free: the same image in other intensity units gives the same features.
    np.testing.assert_allclose(spectrum_vector(image * 37.0 + 5e3, 2.0, cfg), spec, atol=1e-4)
    tiles = torch.randn(10, 4)
    vec = micrograph_vector(tiles, spec, cfg)
    assert vec.shape == (n_features(4, cfg),) == (16,)
    np.testing.assert_allclose(vec[8:].numpy(), spec)
    off = FeatureConfig(tile=64, spectrum=False, tile_quantile=1.0)
    assert spectrum_vector(image, 2.0, off).shape == (0,)
    assert micrograph_vector(tiles, spectrum_vector(image, 2.0, off), off).shape == (8,)


def test_local_contamination_moves_the_max_more_than_the_mean(tiny_encoder: Path) -> None:
    """One dark tile among clean ones: the max half of the vector reacts (why we keep it)."""
    enc = load_encoder(tiny_encoder, torch.device("cpu"))
    rng = np.random.default_rng(3)
    clean = rng.normal(0, 1, (256, 256)).astype(np.float32)
    dirty = clean.copy()
    dirty[:64, :64] -= 6.0
    cfg = FeatureConfig(tile=64)
    fa, fb = (encode_tiles(enc, micrograph_tiles(x, None, None, cfg)) for x in (clean, dirty))
    assert fa.shape == (16, 32)
    # Only the first tile changes (standardisation shifts all slightly, the first a lot).
    change = np.linalg.norm(fb - fa, axis=1)
    assert change[0] > 3 * np.median(change[1:])


def test_cache_is_reused_and_keyed_on_the_file(
    tiny_encoder: Path, toy_set: Path, tmp_path: Path
) -> None:
    enc = load_encoder(tiny_encoder, torch.device("cpu"))
    cfg = FeatureConfig(tile=64)
    path = toy_set / "mics" / "toy_00.mrc"
    first, spec, px = micrograph_features(enc, cfg, path, None, tmp_path)
    assert px == 2.0 and first.shape == (4, 32) and spec.shape == (8,)
    cached = list(tmp_path.glob("toy_00-*.npz"))
    assert len(cached) == 1
    assert micrograph_features(enc, cfg, path, None, tmp_path)[2] == 2.0  # a hit: the header's
    with open(cached[0], "wb") as fh:  # a tampered cache is what comes back
        np.savez(fh, tiles=np.full_like(first, 7.0), spectrum=spec)
    again, _, _ = micrograph_features(enc, cfg, path, None, tmp_path)
    assert np.all(again == 7.0)
    other, _, _ = micrograph_features(enc, FeatureConfig(tile=32), path, None, tmp_path)
    assert other.shape == (16, 32)  # other settings → another key, recomputed
    tokens, _, _ = micrograph_features(enc, cfg, path, None, tmp_path, stop_block=1)
    assert tokens.shape == (4, 16, 32) and tokens.dtype == np.float16


def test_a_cache_file_cut_short_is_a_miss_and_written_again(
    tiny_encoder: Path, toy_set: Path, tmp_path: Path
) -> None:
    """A truncated features/*.npz (a full disk, a partial copy) raised zipfile.BadZipFile and
    ended curate predict with a traceback; a cut .npy of the statistics raised ValueError."""
    enc = load_encoder(tiny_encoder, torch.device("cpu"))
    cfg = FeatureConfig(tile=64)
    path = toy_set / "mics" / "toy_00.mrc"
    first, vec, _ = micrograph_features(enc, cfg, path, None, tmp_path)
    for cached in [*tmp_path.glob("toy_00-*.npz"), *tmp_path.glob("toy_00-stats-*.npy")]:
        whole = cached.read_bytes()
        cached.write_bytes(whole[: len(whole) // 2])
        again, vec_again, px = micrograph_features(enc, cfg, path, None, tmp_path)
        np.testing.assert_allclose(again, first, atol=1e-5)
        np.testing.assert_allclose(vec_again, vec, atol=1e-5)
        assert px == 2.0 and cached.read_bytes() == whole  # recomputed and rewritten


def test_an_image_smaller_than_one_tile_is_refused(tiny_encoder: Path, tmp_path: Path) -> None:
    """A 17×17 image got a confident verdict (p = 1.0 "drift") from tiles of padding."""
    import pytest

    from draco_em.errors import DracoInputError
    from draco_em.io.mrc import write_mrc

    enc = load_encoder(tiny_encoder, torch.device("cpu"))
    small = np.random.default_rng(0).normal(size=(17, 17)).astype(np.float32)
    path = write_mrc(tmp_path / "small.mrc", small, 2.0)
    for cfg in (FeatureConfig(tile=64), FeatureConfig(tile=64, blocks="stats")):
        with pytest.raises(DracoInputError, match=r"small\.mrc: .*smaller than one 64-px"):
            micrograph_features(enc, cfg, path, None)
    # 40 px at 4 Å/px are 80 px at the encoder's 2 Å/px: one tile fits
    coarse = write_mrc(tmp_path / "c.mrc", np.random.default_rng(1).normal(size=(40, 40)), 4.0)
    feats, _, _ = micrograph_features(enc, FeatureConfig(tile=64), coarse, None)
    assert len(feats) == 4  # 2 × 2 overlapping tiles on 80²
