"""Fixtures for curation tests: a tiny random DRACO encoder and labelled toy micrographs.

"good" micrographs are smooth noise; "contaminated" ones carry large dark discs (ethane /
ice blobs), which any encoder's tile statistics separate: what a linear head must learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from draco_em.curate.config import CurateTrainConfig, FeatureConfig
from draco_em.curate.train import train_curator
from draco_em.io.mrc import write_mrc
from draco_em.io.star import write_star
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.weights import save_model

PIXEL_SIZE = 2.0  # Å; also the tiny encoder's working pixel size
SIZE = 128


def train_toy_curator(toy_set: Path, tiny_encoder: Path, out: Path, epochs: int) -> Path:
    """A curation head on the toy set's STAR (64-px tiles, CPU) in ``out``; returns ``out``."""
    train_curator(
        CurateTrainConfig(
            labels=toy_set / "micrographs.star", out_dir=out, weights=str(tiny_encoder),
            epochs=epochs, progress=False, features=FeatureConfig(tile=64), device="cpu",
        )
    )  # fmt: skip
    return out


def toy_micrograph(rng: np.random.Generator, contaminated: bool) -> np.ndarray:
    """[128, 128] float32: noise (+ 2-3 dark discs of radius 14-24 px when contaminated)."""
    img = rng.normal(100.0, 5.0, (SIZE, SIZE))
    if contaminated:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        for _ in range(rng.integers(2, 4)):
            cy, cx = rng.uniform(20, SIZE - 20, 2)
            r = rng.uniform(14, 24)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] -= 40.0
    return img.astype(np.float32)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-block, 32-wide random DRACO model saved as safetensors (working pixel 2 Å)."""
    torch.manual_seed(0)
    cfg = DracoConfig.from_preset(
        "tiny",
        img_size=64,
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
        decoder_neck_dim=16,
    )
    path = tmp_path_factory.mktemp("encoder") / "tiny.safetensors"
    meta = {"pixel_size": PIXEL_SIZE, "pixel_size_range": [1.5, 3.0], "normalization": "robust"}
    return save_model(path, DracoMAE(cfg), cfg, meta)


@pytest.fixture(scope="session")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with 16 toy micrographs (8 good, 8 contaminated), a STAR and a CSV of labels.

    ``micrographs.star`` has an optics block, ``dracoReason`` (``none`` / ``contamination``)
    and an extra column ``rlnCtfMaxResolution``; ``labels.csv`` uses custom class names
    ``clean`` / ``dirty``.
    """
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(1)
    names, reasons = [], []
    for i in range(16):
        bad = i % 2 == 1
        name = f"mics/toy_{i:02d}.mrc"
        write_mrc(root / name, toy_micrograph(rng, bad), PIXEL_SIZE)
        names.append(name)
        reasons.append("contamination" if bad else "none")
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnMicrographPixelSize": [PIXEL_SIZE],
            "rlnVoltage": [300.0],
        }
    )
    mics = pd.DataFrame(
        {
            "rlnMicrographName": names,
            "rlnOpticsGroup": 1,
            "rlnCtfMaxResolution": np.linspace(3, 6, 16),
            "dracoReason": reasons,
        }
    )
    write_star(root / "micrographs.star", {"optics": optics, "micrographs": mics})
    labels = ["dirty" if r == "contamination" else "clean" for r in reasons]
    pd.DataFrame({"micrograph": names, "label": labels}).to_csv(root / "labels.csv", index=False)
    return root
