"""--exclude-by-curation: picks on tiles the curation head flags are dropped, the others kept.

The curator here is a tiny random DRACO encoder with a linear head set by hand: its
"contamination" logit is the projection of a tile's vector on (dark tile − plain tile), measured
on a calibration micrograph, so it fires on dark tiles. Micrographs are 256² at 1 Å/px; the
encoder works at 2 Å/px with 32-px tiles, so curation tile (row, col) covers input pixels
``[64·row − 1, 64·row + 63)`` × the same in x (working pixel j sits at input 2j, conventions
doc), clipped to the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.cli import main
from draco_em.curate.config import FeatureConfig
from draco_em.curate.features import feature_grid, n_features
from draco_em.curate.head import CurationHead, Curator
from draco_em.curate.mask import curation_exclude, tiles_to_mask
from draco_em.errors import DracoInputError
from draco_em.imaging.tiling import TileGrid, tile_image
from draco_em.io.coords import read_coords
from draco_em.io.mrc import write_mrc
from draco_em.model.encoder import curate_input, encode_tiles, load_encoder, working_image
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.predict import Picker
from draco_em.pick.run import predict_all

FEATURES = FeatureConfig(tile=32)  # 32 working px at 2 Å = 64 input px at 1 Å
DARK = (slice(0, 64), slice(192, 256))  # curation tile (0, 3) in input px


def dark_tile_micrograph(seed: int, block: tuple[slice, slice] = DARK) -> np.ndarray:
    """[256, 256] float32 noise with one dark (−5 σ) 64-px block."""
    img = np.random.default_rng(seed).normal(size=(256, 256)).astype(np.float32)
    img[block] -= 5.0
    return img


@pytest.fixture(scope="module")
def curator_file(tmp_path_factory) -> Path:
    """A curator (good / contamination / carbon) whose contamination class fires on dark tiles."""
    from draco_em.model.draco import DracoConfig, DracoMAE
    from draco_em.model.weights import save_model

    tmp = tmp_path_factory.mktemp("curator")
    torch.manual_seed(0)
    cfg = DracoConfig.from_preset("tiny", img_size=64, embed_dim=32, depth=1, num_heads=2,
                                  decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                                  decoder_neck_dim=16)  # fmt: skip
    path = save_model(tmp / "enc.safetensors", DracoMAE(cfg), cfg, {"pixel_size": 2.0})
    encoder = load_encoder(path, torch.device("cpu"))
    # Calibration micrograph: dark block on tile (2, 1), not on the tile tested later.
    image = dark_tile_micrograph(99, (slice(128, 192), slice(64, 128)))
    work = working_image(image, 1.0, 2.0, curate_input(FEATURES.clip_sigma)).image
    tiles = tile_image(work, feature_grid(work.shape, FEATURES))
    feats = torch.from_numpy(encode_tiles(encoder, tiles))
    dark, plain = feats[9], torch.cat([feats[:9], feats[10:]]).mean(0)  # tile 9 = (2, 1)
    direction = dark - plain
    # BatchNorm running stats 0 / 1: identity; the 8 spectrum features get zero weights.
    head = CurationHead(n_features(encoder.dim, FEATURES), 3)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([0.0, 0.0, -20.0]))  # carbon: never
        # Aggregated 1-tile vector = [f, f]; logit = 20 at the dark tile, −20 at the plain mean.
        scale = 20.0 / (direction @ direction / 2)
        head.linear.weight[1, : 2 * encoder.dim] = scale * torch.cat([direction, direction]) / 2
        head.linear.bias[1] = -scale * direction @ (dark + plain) / 2
    curator = Curator(head.eval(), ["good", "contamination", "carbon"], ["good"], FEATURES,
                      str(path), encoder.digest)  # fmt: skip
    return curator.save(tmp / "curator.safetensors")


class _GridDetector(torch.nn.Module):
    """Stand-in detector: one sharp peak at working cell (10, 20) of every tile, zero offsets."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.full((b, 1, h // 4, w // 4), -20.0)
        logits[:, :, 10, 20] = 20.0
        return logits, torch.zeros(b, 2, h // 4, w // 4)


def test_tiles_map_back_to_input_pixels_without_gaps():
    # 96 working px ↔ 241 input px (f = 2.51): every input pixel is in exactly one tile.
    grid = TileGrid((96, 96), 32, overlap=0)
    count = sum(tiles_to_mask(grid, np.arange(9) == i, (241, 241)).astype(int) for i in range(9))
    assert (count == 1).all()
    # Factor 2: working px j covers input [2j − 1, 2j + 1), so tile (0, 2), working rows 0-31
    # and cols 64-95, is input rows 0-62 and cols 127-191 (the first/last tile reach the border).
    mask = tiles_to_mask(TileGrid((64, 96), 32, overlap=0), np.arange(6) == 2, (128, 192))
    expected = np.zeros((128, 192), bool)
    expected[0:63, 127:192] = True
    np.testing.assert_array_equal(mask, expected)


def test_picks_on_flagged_tile_are_dropped_others_kept(curator_file, make_tiny_config):
    exclude = curation_exclude(curator_file)
    image = dark_tile_micrograph(5)
    mask = exclude(image, 1.0)
    assert mask[0:63, 191:256].all() and mask.sum() == 63 * 65  # exactly the dark tile
    # Picker at 1 Å/px working (32 Å / 32 px), 128-px tiles: a peak at (81.5, 41.5) + 128·k.
    picker = Picker(_GridDetector(make_tiny_config(tile=128, overlap=0)), 32.0, threshold=0.5)
    everywhere = picker.pick_image(image, 1.0, "m")[["x", "y"]].to_numpy()
    assert len(everywhere) == 4 and [209.5, 41.5] in everywhere.tolist()
    kept = picker.pick_image(image, 1.0, "m", exclude=exclude)[["x", "y"]].to_numpy()
    assert sorted(kept.tolist()) == sorted(p for p in everywhere.tolist() if p != [209.5, 41.5])


def test_predict_all_combines_curation_and_masks(curator_file, tmp_path):
    from draco_em.pick.config import DetectorConfig
    from draco_em.pick.detector import ParticleDetector
    from draco_em.pick.model_io import save_picker

    enc = {"preset": "custom", "img_size": 64, "embed_dim": 32, "depth": 1, "num_heads": 2,
           "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
           "decoder_neck_dim": 16}  # fmt: skip
    torch.manual_seed(0)
    det = ParticleDetector(DetectorConfig(encoder=enc, encoder_blocks=1, neck_dim=8,
                                          stem_dim=4, tile=64, overlap=16))  # fmt: skip
    model = save_picker(tmp_path / "p.safetensors", det, diameter=32.0, threshold=0.0)
    (tmp_path / "mics").mkdir()
    write_mrc(tmp_path / "mics" / "m.mrc", dark_tile_micrograph(5), pixel_size=1.0)
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.zeros((256, 256), np.float32)
    mask[128:, :128] = 1.0  # the bottom-left quadrant
    write_mrc(masks / "m.mrc", mask, pixel_size=1.0)

    def run(name: str, **exclusion) -> np.ndarray:
        cfg = PickPredictConfig(inputs=[tmp_path / "mics"], outdir=tmp_path / name,
                                model=str(model), threshold=0.06, previews=False,
                                **exclusion)  # fmt: skip
        curation = exclusion.get("exclude_by_curation")
        curation = curation_exclude(curation) if curation else None
        summary = predict_all(cfg, progress=False, curation=curation)
        xy = read_coords(tmp_path / name / "coordinates" / "m_autopick.star")[["x", "y"]]
        return summary, np.round(xy.to_numpy()).astype(int)

    _, everywhere = run("all")
    summary, kept = run("excl", exclude_by_curation=str(curator_file), exclude_masks=masks)
    in_dark = (everywhere[:, 1] < 64) & (everywhere[:, 0] >= 192)
    in_quadrant = (everywhere[:, 1] >= 128) & (everywhere[:, 0] < 128)
    assert in_dark.any() and in_quadrant.any()  # the untrained detector picks everywhere
    assert sorted(kept.tolist()) == sorted(everywhere[~in_dark & ~in_quadrant].tolist())
    assert summary["excluded"] == int((in_dark | in_quadrant).sum())
    line = (tmp_path / "excl" / "excluded_picks.txt").read_text().split("\t")
    assert line[0].endswith("m.mrc") and int(line[1]) == summary["excluded"]
    (tmp_path / "excl" / "coordinates" / "m_autopick.star").unlink()  # pick m again: one line
    run("excl", exclude_by_curation=str(curator_file), exclude_masks=masks)
    lines = (tmp_path / "excl" / "excluded_picks.txt").read_text().splitlines()
    assert len(lines) == 1 and int(lines[0].split("\t")[1]) == summary["excluded"]


def test_unknown_class_is_a_one_line_user_error(curator_file, tmp_path, capsys):
    with pytest.raises(DracoInputError, match="knows: good, contamination, carbon"):
        curation_exclude(curator_file, classes=["contamination", "ice"])
    write_mrc(tmp_path / "m.mrc", dark_tile_micrograph(1), pixel_size=1.0)
    with pytest.raises(SystemExit) as exc:
        main(["pick", "predict", str(tmp_path / "m.mrc"), "-o", str(tmp_path / "o"),
              "--exclude-by-curation", str(curator_file),
              "--exclude-classes", "ice,carbon"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown curation class(es) ice" in err, err
    assert "good, contamination, carbon" in err


def test_a_curation_head_trained_again_at_the_same_path_is_not_resumed_silently(
    curator_file, tmp_path, capsys
):
    """--exclude-by-curation named its head by path only: a head trained again into the same
    file kept every earlier exclusion. Its version is recorded now (curation_file), and a
    re-run with another version stops as other settings do (exit 2, one line)."""
    import os
    import shutil

    from draco_em.pick.config import DetectorConfig
    from draco_em.pick.detector import ParticleDetector
    from draco_em.pick.model_io import save_picker

    enc = {"preset": "custom", "img_size": 64, "embed_dim": 32, "depth": 1, "num_heads": 2,
           "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
           "decoder_neck_dim": 16}  # fmt: skip
    det = ParticleDetector(DetectorConfig(encoder=enc, encoder_blocks=1, neck_dim=8,
                                          stem_dim=4, tile=64, overlap=16))  # fmt: skip
    model = save_picker(tmp_path / "p.safetensors", det, diameter=32.0, threshold=0.5)
    head = shutil.copy2(curator_file, tmp_path / "head.safetensors")  # ours to touch
    write_mrc(tmp_path / "mics" / "m.mrc", dark_tile_micrograph(3), pixel_size=1.0)
    args = ["pick", "predict", str(tmp_path / "mics"), "-o", str(tmp_path / "o"), "--model",
            str(model), "--exclude-by-curation", str(head), "--tta", "1", "-q"]  # fmt: skip

    def code() -> int:
        with pytest.raises(SystemExit) as exc:
            main(args)
        return int(exc.value.code or 0)

    assert code() == 0 and code() == 0  # the same head: resumed
    capsys.readouterr()
    os.utime(head, ns=(1, 1))
    assert code() == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other settings (curation_file 'head.safetensors, " in err
