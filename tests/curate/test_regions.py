"""The per-tile region head: tile labels from region masks, training, and its use for exclusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.curate.head import load_curator
from draco_em.curate.regions import REGION_CLASSES, tile_labels, tiles_to_mask
from draco_em.imaging.tiling import TileGrid
from draco_em.io.mrc import write_mrc
from draco_em.io.star import write_star

runner = CliRunner()


def test_tile_labels_take_the_majority_code_of_each_tile() -> None:
    regions = np.zeros((128, 128), np.int8)
    regions[:64, :40] = 1  # 40 of 64 columns of tile 0: contamination wins
    regions[64:, 64:] = 2  # all of tile 3: carbon
    regions[:64, 64:80] = 1  # a quarter of tile 1: stays clear
    grid = TileGrid((128, 128), 64, overlap=0)
    assert tile_labels(regions, grid).tolist() == [1, 0, 0, 2]
    mask = tiles_to_mask(grid, np.array([False, False, False, True]), (128, 128))
    assert mask[64:, 64:].all() and mask.sum() == 64 * 64


def _dark_block_micrograph(rng, size=256):
    """Noise with one dark 96-px block (contamination, code 1) at a random corner."""
    img = rng.normal(100.0, 5.0, (size, size)).astype(np.float32)
    regions = np.zeros((size, size), np.int8)
    y0, x0 = rng.choice([0, size - 96], 2)
    img[y0 : y0 + 96, x0 : x0 + 96] -= 40.0
    regions[y0 : y0 + 96, x0 : x0 + 96] = 1
    return img, regions


@pytest.fixture(scope="module")
def region_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regions")
    rng = np.random.default_rng(4)
    names, masks = [], []
    for i in range(8):
        img, regions = _dark_block_micrograph(rng)
        write_mrc(root / f"mics/r_{i}.mrc", img, 2.0)
        write_mrc(root / f"regions/r_{i}.mrc", regions, 2.0)
        names.append(f"mics/r_{i}.mrc")
        masks.append(f"regions/r_{i}.mrc")
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [2.0], "rlnVoltage": [300.0]})  # fmt: skip
    reasons = ["none", "contamination"] * 4
    mics = pd.DataFrame({"rlnMicrographName": names, "rlnOpticsGroup": 1,
                         "dracoReason": reasons, "dracoRegions": masks})  # fmt: skip
    write_star(root / "micrographs.star", {"optics": optics, "micrographs": mics})
    return root


def test_region_head_trains_and_flags_the_dark_block(
    region_set: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    from draco_em.curate.mask import exclusion_classes, tile_probabilities
    from draco_em.curate.predict import curator_encoder

    run = tmp_path / "run"
    args = ["curate", "train", "--labels", str(region_set / "micrographs.star"), "-o", str(run),
            "--weights", str(tiny_encoder), "--regions", "--device", "cpu", "-q"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    curator = load_curator(run)
    assert curator.regions is not None and curator.region_classes == REGION_CLASSES
    assert curator.tile_classes == REGION_CLASSES
    assert exclusion_classes(curator, None) == ["contamination", "carbon"]
    img, regions = _dark_block_micrograph(np.random.default_rng(99))
    encoder = curator_encoder(curator, None, torch.device("cpu"))
    probs, grid = tile_probabilities(curator, encoder, img, 2.0)
    assert probs.shape == (len(grid), 3)
    truth = tile_labels(regions, grid) == 1
    flagged = probs[:, 1] >= 0.5
    assert flagged[truth].mean() >= 0.8 and flagged[~truth].mean() <= 0.2


def test_regions_need_a_star_with_masks(toy_set: Path, tiny_encoder: Path, tmp_path: Path) -> None:
    from draco_em.errors import DracoInputError

    # A CSV, and a STAR without _dracoRegions: a user error naming the column.
    for labels, accept in (("labels.csv", "clean"), ("micrographs.star", "good")):
        args = ["curate", "train", "--labels", str(toy_set / labels), "-o", str(tmp_path / "r"),
                "--weights", str(tiny_encoder), "--regions", "--accept", accept, "-q"]  # fmt: skip
        res = runner.invoke(app, args)
        assert isinstance(res.exception, DracoInputError)
        assert "_dracoRegions" in str(res.exception)
