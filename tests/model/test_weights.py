"""Weights: the official checkpoint layout (§9), prefix stripping, strict errors, safetensors."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.io.info import describe
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.weights import (
    BUNDLED_DENOISER,
    describe_weights,
    infer_config,
    load_model,
    save_model,
)


def official_layout(
    e: int, depth: int, d: int, ddepth: int, neck: int, p: int, grid: int
) -> dict[str, tuple[int, ...]]:
    """Key → shape of an official DRACO pretraining checkpoint, written out from the §9 table."""
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (e, 1, p, p), "patch_embed.proj.bias": (e,),
        "pos_embed": (1, grid, grid, e), "norm.weight": (e,), "norm.bias": (e,),
        "mask_token": (1, 1, d), "decoder_embed.weight": (d, e), "decoder_embed.bias": (d,),
        "decoder_pos_embed": (1, grid, grid, d),
        "decoder_norm.weight": (d,), "decoder_norm.bias": (d,),
        "decoder_neck.0.weight": (neck, d, 1, 1),
        "decoder_neck.1.weight": (neck,), "decoder_neck.1.bias": (neck,),
        "decoder_neck.3.weight": (neck, neck, 3, 3),
        "decoder_neck.4.weight": (neck,), "decoder_neck.4.bias": (neck,),
        "decoder_neck.6.weight": (d, neck, 1, 1),
        "decoder_neck.7.weight": (d,), "decoder_neck.7.bias": (d,),
        "decoder_pred.weight": (p * p, d), "decoder_pred.bias": (p * p,),
    }  # fmt: skip
    for prefix, width, n in (("blocks", e, depth), ("decoder_blocks", d, ddepth)):
        for i in range(n):
            b = f"{prefix}.{i}."
            shapes.update({
                b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,),
            })  # fmt: skip
    return shapes


SMALL = {"preset": "custom", "img_size": 64, "embed_dim": 64, "depth": 2, "num_heads": 1,
         "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 1,
         "decoder_neck_dim": 16}  # fmt: skip


def fake_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    layout = official_layout(64, 2, 32, 1, 16, 16, 4)
    return {k: torch.randn(s, generator=g) for k, s in layout.items()}


def test_base_state_dict_equals_official_table() -> None:
    model = DracoMAE(DracoConfig.from_preset("base"))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_layout(768, 12, 512, 8, 256, 16, 16)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(112.2e6, rel=1e-3)
    out = model.denoise(torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_large_and_huge_shapes() -> None:
    for name, e, depth, p in (("large", 1024, 24, 16), ("huge", 1280, 32, 14)):
        cfg = DracoConfig.from_preset(name)
        with torch.device("meta"):
            model = DracoMAE(cfg)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == official_layout(e, depth, 512, 8, 256, p, 16), name


@pytest.mark.parametrize("wrap", ["top", "state_dict", "model"])
@pytest.mark.parametrize("prefix", ["", "module.", "model.", "_orig_mod.", "module._orig_mod."])
def test_official_checkpoint_loads(tmp_path: Path, wrap: str, prefix: str) -> None:
    state = fake_checkpoint()
    prefixed = {prefix + k: v for k, v in state.items()}
    ckpt = prefixed if wrap == "top" else {wrap: prefixed, "epoch": 399}
    torch.save(ckpt, tmp_path / "draco.pth")
    model, config, meta = load_model(tmp_path / "draco.pth")
    assert meta == {}
    assert (config.embed_dim, config.depth, config.decoder_depth, config.img_size) == (64, 2, 1, 64)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert model.denoise(torch.randn(1, 1, 32, 48)).shape == (1, 1, 32, 48)


def test_infer_config_recognises_presets() -> None:
    with torch.device("meta"):
        state = DracoMAE(DracoConfig.from_preset("large")).state_dict()
    config = infer_config(state)
    assert config.preset == "large" and config.num_heads == 16 and config.decoder_num_heads == 16


def test_strict_load_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = fake_checkpoint()
    del state["blocks.1.attn.qkv.bias"]
    state["head.weight"] = torch.zeros(2, 64)
    state["decoder_pred.bias"] = torch.zeros(7)
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(DracoInputError) as err:
        load_model(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys (1): blocks.1.attn.qkv.bias" in msg
    assert "unexpected keys (1): head.weight" in msg
    assert "decoder_pred.bias (7,) vs (256,)" in msg and "bad.pt" in msg


def test_not_a_draco_checkpoint(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(DracoInputError, match="not a DRACO checkpoint"):
        load_model(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(DracoInputError, match="cannot read DRACO weights file"):
        load_model(tmp_path / "junk.pth")
    with pytest.raises(DracoInputError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_safetensors_round_trip_with_metadata(tmp_path: Path) -> None:
    config = DracoConfig(**SMALL, mask_ratio=0.6, recon_weight=0.5)
    model = DracoMAE(config)
    meta = {"pixel_size": 3.0, "pixel_size_range": [2.0, 4.5], "normalization": "robust",
            "training": {"stage": "draco", "epochs": 2}}  # fmt: skip
    path = save_model(tmp_path / "m.safetensors", model, config, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left
    loaded, config2, meta2 = load_model(path)
    assert config2 == config
    assert meta2 == {"preset": "custom", "patch_size": 16, **meta}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(loaded.denoise(x), model.denoise(x))
    summary = describe(path, {".safetensors": describe_weights})  # as `draco info` does
    assert summary["preset"] == "custom" and summary["pixel_size"] == 3.0
    assert summary["parameters"] == sum(v.numel() for v in model.state_dict().values())


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    config = DracoConfig(**SMALL)
    model = DracoMAE(config)
    with pytest.raises(DracoInputError, match="safetensors"):
        save_model(tmp_path / "m.pth", model, config, {})
    with pytest.raises(DracoInputError, match="JSON"):
        save_model(tmp_path / "m.safetensors", model, config, {"bad": object()})
    assert not list(tmp_path.iterdir())


def test_info_describes_official_checkpoint(tmp_path: Path) -> None:
    torch.save({"state_dict": fake_checkpoint()}, tmp_path / "draco.pth")
    summary = describe(tmp_path / "draco.pth", {".pth": describe_weights})
    assert summary["preset"] == "custom" and summary["patch_size"] == 16
    assert summary["config"]["embed_dim"] == 64


def test_bundled_models_are_the_pretrained_encoder_and_its_denoising_fine_tune() -> None:
    """`bundled` means the pretrained model (official layout, no refiner) for the encoder users
    and the N2N fine-tune with its refiner for denoising; both ship with the package."""
    model, config, meta = load_model("bundled")
    assert config.preset == "tiny" and model.refiner is None
    assert not any(k.startswith("refiner.") for k in model.state_dict())
    assert meta["training"]["stage"] == "draco"
    dn, dn_config, dn_meta = load_model("bundled", bundled=BUNDLED_DENOISER)
    assert dn_config.refiner_channels > 0 and dn.refiner is not None
    assert dn_meta["training"]["stage"] == "denoise"
    assert dn_meta["pixel_size"] == pytest.approx(meta["pixel_size"])
    for name in ("draco_tiny.safetensors", BUNDLED_DENOISER):  # issue 5: at most 20 MB each
        size = (importlib.resources.files("draco_em.weights") / name).stat().st_size
        assert size <= 20 * 2**20, (name, size)


def test_missing_bundled_file_is_a_user_error() -> None:
    with pytest.raises(DracoInputError, match="no bundled model is installed"):
        load_model("bundled", bundled="no_such_model.safetensors")


def test_pretrain_run_folder_resolves_to_its_best_then_latest_checkpoint(tmp_path: Path) -> None:
    from draco_em.model.weights import resolve_weights

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(DracoInputError, match="not a draco pretrain run folder"):
        resolve_weights(run)
    torch.save({"state_dict": fake_checkpoint()}, run / "checkpoints" / "latest.pt")
    assert resolve_weights(run) == run / "checkpoints" / "latest.pt"
    _model, config, _ = load_model(run)  # `draco denoise --weights RUNDIR`
    assert config.embed_dim == 64
    (run / "checkpoints" / "best.pt").write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    assert resolve_weights(run) == run / "checkpoints" / "best.pt"


def test_format_kinds_agree_with_the_readers_tags() -> None:
    from draco_em.curate.head import FORMAT as CURATOR
    from draco_em.curate.head import RUN_FILE as CURATOR_FILE
    from draco_em.io.model_file import FORMAT_KINDS, RUN_FILES
    from draco_em.model.weights import FORMAT
    from draco_em.pick.checkpoint import CHECKPOINT_FORMAT
    from draco_em.pick.model_io import FORMAT as PICKER
    from draco_em.pick.model_io import RUN_FILE as PICKER_FILE

    assert set(FORMAT_KINDS) == {FORMAT, CURATOR, PICKER, CHECKPOINT_FORMAT}
    assert RUN_FILES == {PICKER_FILE: PICKER, CURATOR_FILE: CURATOR}


def test_a_run_folder_of_another_command_is_named(tmp_path: Path) -> None:
    """A pick train folder given to denoise --model, or to curate predict --model, says what it
    holds (it said 'not a draco pretrain run folder' or 'curation model not found' alone); the
    checkpoint of an unfinished pick train run is named too (it was 'not a DRACO checkpoint:
    no patch_embed.proj.weight, ...')."""
    from draco_em.curate.head import resolve_curator_path
    from draco_em.io.model_file import write_model_file
    from draco_em.pick.checkpoint import CHECKPOINT_FORMAT

    run = tmp_path / "picks"
    write_model_file(run / "picker.safetensors", {"w": torch.zeros(2)},
                     {"format": "draco-em-picker/1"})  # fmt: skip
    held = "the folder holds picker.safetensors, a particle picker [(]draco pick train[)]"
    with pytest.raises(DracoInputError, match="not a draco pretrain run folder .*; " + held):
        load_model(run)
    with pytest.raises(DracoInputError, match="curation model not found .*; " + held):
        resolve_curator_path(run)
    with pytest.raises(DracoInputError, match=r"not a draco pretrain run folder [(][^;]*[)]$"):
        load_model(tmp_path)  # a folder of nothing in particular: nothing to add
    (run / "checkpoints").mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "model": fake_checkpoint()},
               run / "checkpoints" / "latest.pt")  # fmt: skip
    with pytest.raises(DracoInputError, match=r"this is the checkpoint of an unfinished draco pick"
                       r".*--resume latest"):  # fmt: skip
        load_model(run)
    from draco_em.train.checkpoint import load_checkpoint  # draco export / --init-weights RUN

    with pytest.raises(DracoInputError, match=r"not a training checkpoint .*unfinished draco pick"):
        load_checkpoint(run / "checkpoints" / "latest.pt")


@pytest.mark.parametrize(("tag", "kind"), [("draco-em-picker/1", "particle picker"),
                                           ("draco-em-curator/1", "curation model")])  # fmt: skip
def test_a_picker_or_curator_given_as_weights_is_named_and_described(
    tmp_path: Path, tag: str, kind: str
) -> None:
    """A curator or picker given to --weights/--model/--init-weights is said to be one (it was
    'not a DRACO checkpoint: no patch_embed.proj.weight, ...'), and `draco info` describes it
    (it exited 2 with the same message)."""
    from draco_em.io.model_file import write_model_file

    path = write_model_file(tmp_path / "m.safetensors", {"head.weight": torch.zeros(2, 3)},
                            {"format": tag, "info": '{"classes": ["a", "b"], "n": 4}'})  # fmt: skip
    with pytest.raises(DracoInputError, match=f"not a DRACO weights file .*this is a {kind}"):
        load_model(path)
    summary = describe(path, {".safetensors": describe_weights})
    assert summary["format"].startswith(kind) and summary["format_tag"] == tag
    assert summary["parameters"] == 6 and summary["info"] == {"classes": ["a", "b"], "n": 4}
    # A foreign tag (Hugging Face tools write format: pt) on official weights still loads.
    path = write_model_file(tmp_path / "hf.safetensors", fake_checkpoint(), {"format": "pt"})
    assert load_model(path)[1].embed_dim == 64


def test_info_names_a_pretrain_checkpoint_as_such(tmp_path: Path) -> None:
    torch.save({"model": fake_checkpoint(), "pixel_size": 2.0, "pixel_size_range": [1.5, 2.5]},
               tmp_path / "latest.pt")  # fmt: skip
    summary = describe(tmp_path / "latest.pt", {".pt": describe_weights})
    assert summary["format"] == "draco pretrain checkpoint" and summary["pixel_size"] == 2.0
    torch.save({"model": fake_checkpoint()}, tmp_path / "official.pth")
    summary = describe(tmp_path / "official.pth", {".pth": describe_weights})
    assert summary["format"] == "torch checkpoint (official layout)"
