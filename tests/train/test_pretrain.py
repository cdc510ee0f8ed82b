"""Stage 1 (MAE) on micrographs without pairs, then stage 2 initialised from it."""

from __future__ import annotations

import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.train.checkpoint import checkpoint_path, load_checkpoint
from draco_em.train.pretrain import run_pretrain
from tests.train.conftest import write_dataset


def test_mae_stage_then_draco_stage_from_its_weights(tiny_config, tmp_path) -> None:
    unpaired = write_dataset(tmp_path / "unpaired", n=4, pairs=False, clean=False)
    stage1 = tiny_config(data=unpaired, stage="mae", out_dir=tmp_path / "mae", epochs=1)
    result = run_pretrain(stage1)
    assert result["best"]["metric"] == "val_loss"  # no clean images: selected on the val loss
    mae_weights = load_checkpoint(checkpoint_path(stage1.out_dir, "best"))["model"]

    stage2 = tiny_config(out_dir=tmp_path / "draco", init_weights=stage1.out_dir, max_steps=1,
                         blr=1e-12)  # fmt: skip
    start = run_pretrain(stage2)["model"].state_dict()
    for name, value in mae_weights.items():  # one step at lr ≈ 0 leaves the stage-1 weights
        torch.testing.assert_close(start[name], value, atol=1e-6, rtol=0)

    with pytest.raises(DracoInputError, match="--stage mae"):
        run_pretrain(tiny_config(data=unpaired, out_dir=tmp_path / "bad"))


def test_init_weights_of_another_size_is_a_user_error(tiny_config, tmp_path) -> None:
    small = tiny_config(out_dir=tmp_path / "a", epochs=1)
    run_pretrain(small)
    other = tiny_config(out_dir=tmp_path / "b", init_weights=small.out_dir,
                        model_overrides={"embed_dim": 64, "num_heads": 2, "depth": 1})  # fmt: skip
    with pytest.raises(DracoInputError, match="init-weights"):
        run_pretrain(other)


def test_denoise_stage_fine_tunes_a_draco_run_and_adds_the_refiner(tiny_config, tmp_path) -> None:
    """--stage denoise --init RUN: the ViT starts from the run, the refiner starts fresh, the
    architecture comes from the run (not --preset), and the export loads with its refiner."""
    from draco_em.model.weights import load_model
    from draco_em.train.checkpoint import export_run
    from draco_em.train.stage_model import DEFAULT_REFINER_CHANNELS

    stage2 = tiny_config(out_dir=tmp_path / "draco", epochs=1)
    run_pretrain(stage2)
    vit = load_checkpoint(checkpoint_path(stage2.out_dir, "best"))["model"]
    ft = tiny_config(out_dir=tmp_path / "ft", stage="denoise", init_weights=stage2.out_dir,
                     preset="base", model_overrides={}, epochs=1, blr=1e-12)  # fmt: skip
    result = run_pretrain(ft)
    model = result["model"]
    assert model.config.refiner_channels == DEFAULT_REFINER_CHANNELS
    assert model.config.embed_dim == vit["patch_embed.proj.weight"].shape[0]
    start = model.state_dict()
    for name, value in vit.items():
        torch.testing.assert_close(start[name], value, atol=1e-6, rtol=0)
    assert "val_psnr" in result["metrics"]  # validated by denoising against the clean images

    loaded, config, meta = load_model(export_run(ft.out_dir, tmp_path / "ft.safetensors"))
    assert config.refiner_channels == DEFAULT_REFINER_CHANNELS and loaded.refiner is not None
    assert meta["training"]["stage"] == "denoise"


def test_masked_stage_from_a_denoiser_drops_its_refiner(tiny_config, tmp_path) -> None:
    """Stage draco never runs the refiner (no gradient under DDP, non-official export)."""
    run_pretrain(tiny_config(out_dir=tmp_path / "draco", epochs=1))
    ft = tiny_config(out_dir=tmp_path / "ft", stage="denoise", init_weights=tmp_path / "draco",
                     epochs=1)  # fmt: skip
    run_pretrain(ft)
    again = run_pretrain(tiny_config(out_dir=tmp_path / "again", init_weights=ft.out_dir,
                                     epochs=1))  # fmt: skip
    model = again["model"]
    assert model.refiner is None and model.config.refiner_channels == 0
    assert not any(k.startswith("refiner.") for k in model.state_dict())


def test_mae_stage_records_its_own_mask_ratio(tiny_config) -> None:
    """An MAE warm-up at γ = 0.3 builds (and so exports) a model that says 0.3, not 0.5."""
    from draco_em.train.stage_model import build_model

    model, config, _ = build_model(tiny_config(stage="mae", mask_ratio=0.3))
    assert config.mask_ratio == model.config.mask_ratio == 0.3
    with pytest.raises(DracoInputError, match="mask ratio"):
        tiny_config(stage="draco", mask_ratio=0.3)


def test_official_weights_give_the_architecture_at_any_crop_size(tiny_config, tmp_path) -> None:
    """An official .pth records no config: its architecture came from --preset (tiny by
    default), so a small model's file was refused; and any --crop-size but the weights' own
    failed on the fixed sin-cos position tables (QA, session 23)."""
    from draco_em.model.draco import DracoConfig, DracoMAE
    from tests.train.conftest import TINY

    official = DracoMAE(DracoConfig.from_preset("tiny", img_size=128, **TINY))
    pth = tmp_path / "official.pth"
    torch.save({"model": official.state_dict()}, pth)  # as the release saves it: no config
    config = tiny_config(out_dir=tmp_path / "run", init_weights=pth, preset="small",
                         model_overrides={}, crop_size=64, epochs=1)  # fmt: skip
    model = run_pretrain(config)["model"]
    assert model.pos_embed.shape == (1, 64 // 16, 64 // 16, TINY["embed_dim"])


def test_fsdp_with_one_process_trains_the_model_whole(tiny_config, caplog) -> None:
    """fully_shard needs a process group: a one-process --fsdp run was a traceback."""
    with caplog.at_level("WARNING"):
        result = run_pretrain(tiny_config(fsdp=True, epochs=1))
    assert result["state"].epoch == 1 and "one process trains it whole" in caplog.text


def test_a_fine_tune_at_another_scale_than_its_initial_weights_is_said(
    tiny_config, tmp_path, caplog
) -> None:
    """docs/training.md's fine-tune typed without the first run's crop options trained at
    0.5-1.0 Å/px a model pretrained at 1.75-2.25 Å/px, without a word (QA, session 24)."""
    first = tiny_config(out_dir=tmp_path / "a", epochs=1)  # 32-64 px crops → 64 px: 1-2 Å
    run_pretrain(first)
    same = tiny_config(out_dir=tmp_path / "b", stage="denoise", init_weights=first.out_dir,
                       max_steps=1)  # fmt: skip
    with caplog.at_level("WARNING", logger="draco_em.train"):
        run_pretrain(same)
    assert "--init-weights were trained at" not in caplog.text
    # 32-64 px crops → 32 px: 2-4 Å
    other = tiny_config(out_dir=tmp_path / "c", stage="denoise", init_weights=first.out_dir,
                        crop_size=32, max_steps=1)  # fmt: skip
    with caplog.at_level("WARNING", logger="draco_em.train"):
        run_pretrain(other)
    assert "--init-weights were trained at 1.00-2.00 Å/px, this run's crops are at 2.00-4.00" in (
        caplog.text
    )
