"""Fixtures of the picking tests: micrographs of dark Gaussian blobs and a tiny detector."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.pick.config import DetectorConfig

TINY_ENCODER = {"preset": "custom", "img_size": 64, "patch_size": 16, "embed_dim": 32,
                "depth": 1, "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1,
                "decoder_num_heads": 2, "decoder_neck_dim": 16}  # fmt: skip


def tiny_config(**overrides) -> DetectorConfig:
    """A detector small enough to train in seconds on a CPU."""
    base = {"encoder": TINY_ENCODER, "encoder_blocks": 1, "neck_dim": 16, "stem_dim": 8,
            "tile": 128, "overlap": 32}  # fmt: skip
    return DetectorConfig(**{**base, **overrides})


def blob_image(
    rng: np.random.Generator, shape: tuple[int, int], radius_px: float, n: int, noise: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Dark Gaussian blobs at random non-overlapping centres; returns (image, xy [n, 2])."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    xy: list[np.ndarray] = []
    while len(xy) < n:
        p = rng.uniform(radius_px, np.array(shape[::-1]) - radius_px)
        if all(np.hypot(*(p - q)) > 2.5 * radius_px for q in xy):
            xy.append(p)
    for x, y in xy:
        img -= np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (radius_px / 2) ** 2))
    img += noise * rng.standard_normal(shape)
    return img.astype(np.float32), np.array(xy)


@pytest.fixture(scope="session")
def make_blobs():
    """The :func:`blob_image` maker, as a fixture (test modules import no helpers)."""
    return blob_image


@pytest.fixture(scope="session")
def make_tiny_config():
    """The :func:`tiny_config` maker, as a fixture."""
    return tiny_config


def train_blob_picker(tmp, noise: float = 0.3):
    """A tiny picker trained for a few seconds on 4 blob micrographs (radius 16 px, 1 Å/px,
    diameter 32 Å) written under ``tmp`` (``mics/``, ``coords/``); returns the picker file."""
    import torch

    from draco_em.io.coords import make_coords, write_relion_coords
    from draco_em.io.mrc import write_mrc
    from draco_em.pick.config import PickTrainConfig
    from draco_em.pick.train import train_picker

    rng = np.random.default_rng(1)
    for sub in ("mics", "coords"):
        (tmp / sub).mkdir()
    for i in range(4):
        img, xy = blob_image(rng, (192, 192), 16.0, 8, noise=noise)
        write_mrc(tmp / "mics" / f"blob_{i}.mrc", img, pixel_size=1.0)
        write_relion_coords(tmp / "coords" / f"blob_{i}.star",
                            make_coords(f"blob_{i}", xy[:, 0], xy[:, 1]))  # fmt: skip
    torch.manual_seed(0)
    cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                          outdir=tmp / "run", epochs=12, crops_per_epoch=32, crop=64,
                          lr=3e-3, val_fraction=0.25)  # fmt: skip
    return train_picker(cfg, detector_config=tiny_config())


@pytest.fixture(scope="session")
def make_blob_picker():
    """The :func:`train_blob_picker` maker, as a fixture."""
    return train_blob_picker
