"""Tiny synthetic training sets: blob micrographs with Poisson odd/even sums and a manifest STAR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from draco_em.io.mrc import write_mrc
from draco_em.io.star import MicrographTable, write_micrographs_star
from draco_em.train.config import PretrainConfig

#: A model small enough for a few steps per second on one core (64-px crops, 16 tokens).
TINY = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "decoder_embed_dim": 32,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "decoder_neck_dim": 16,
}


def write_dataset(
    folder: Path,
    n: int = 4,
    size: int = 128,
    pixel_size: float = 2.0,
    pairs: bool = True,
    clean: bool = True,
    seed: int = 0,
) -> Path:
    """n blob micrographs [size, size] with full = odd + even; returns the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        signal = np.zeros((size, size))
        for cy, cx in rng.uniform(8, size - 8, size=(size // 6, 2)):
            signal += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        lam = 2.0 + 3.0 * signal
        odd, even = rng.poisson(lam).astype(np.float32), rng.poisson(lam).astype(np.float32)
        row = {"rlnMicrographName": f"mic_{i}.mrc", "rlnOpticsGroup": 1}
        write_mrc(folder / f"mic_{i}.mrc", odd + even, pixel_size)
        if pairs:
            write_mrc(folder / f"mic_{i}_odd.mrc", odd, pixel_size)
            write_mrc(folder / f"mic_{i}_even.mrc", even, pixel_size)
            row |= {
                "dracoMicrographOdd": f"mic_{i}_odd.mrc",
                "dracoMicrographEven": f"mic_{i}_even.mrc",
            }
        row["dracoHasPairs"] = int(pairs)
        if clean:
            write_mrc(folder / f"mic_{i}_clean.mrc", (2 * lam).astype(np.float32), pixel_size)
            row["dracoClean"] = f"mic_{i}_clean.mrc"
        rows.append(row)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [pixel_size],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnMicrographPixelSize": [pixel_size],
        }
    )
    manifest = folder / "manifest.star"
    write_micrographs_star(manifest, MicrographTable(manifest, optics, pd.DataFrame(rows)))
    return manifest


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 micrographs 128 × 128 at 2 Å/px with odd/even pairs and clean images."""
    return write_dataset(tmp_path_factory.mktemp("tinyset"))


@pytest.fixture
def tiny_config(tiny_manifest: Path, tmp_path: Path) -> Callable[..., PretrainConfig]:
    """Factory: a fast CPU run config (3 train micrographs × 4 crops, batch 4 → 3 steps/epoch)."""

    def make(**overrides: object) -> PretrainConfig:
        base = {
            "data": tiny_manifest,
            "out_dir": tmp_path / "run",
            "preset": "tiny",
            "model_overrides": TINY,
            "crop_size": 64,
            "epochs": 2,
            "batch_size": 4,
            "crops_per_micrograph": 4,
            "val_fraction": 0.25,
            "val_crops_per_micrograph": 2,
            "warmup_epochs": 1,
            "blr": 0.5,
            "workers": 0,
            "device": "cpu",
            "progress": False,
            "save_every_steps": 0,
            "seed": 0,
        }
        return PretrainConfig(**{**base, **overrides})

    return make
