"""``draco denoise --adapt``: fine-tunes on the inputs (N2N on their halves, else blind-spot; MAE
on request), saves the weights in OUTDIR/adapt, reuses them on re-run, and never reads a clean
image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.errors import DracoInputError
from draco_em.io.manifest import EVEN, FULL, ODD
from draco_em.io.mrc import read_mrc, write_mrc
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.weights import BUNDLED_DENOISER, load_model, read_weights
from draco_em.train import adapt as adapt_mod
from draco_em.train import data as train_data
from draco_em.train.adapt import AdaptConfig, DenoiseConfig, denoise_with_adaptation

TINY = AdaptConfig(epochs=1, crops_per_micrograph=4, batch_size=4)


def _write_pair(folder, blob_pair, name="mic"):
    """X.mrc (full), X_EVN.mrc, X_ODD.mrc and, in another folder, the clean image."""
    clean, odd, even = blob_pair
    big = lambda a: np.tile(a, (2, 2))  # noqa: E731  128 px: one crop of the bundled model
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / f"{name}.mrc", big(odd + even), 1.98)
    write_mrc(folder / f"{name}_EVN.mrc", big(even), 1.98)
    write_mrc(folder / f"{name}_ODD.mrc", big(odd), 1.98)
    (folder.parent / "clean").mkdir(exist_ok=True)
    write_mrc(folder.parent / "clean" / f"{name}.mrc", big(clean), 1.98)
    return folder / f"{name}.mrc"


def test_adapt_trains_n2n_on_halves_only_saves_and_reuses(tmp_path, blob_pair, monkeypatch):
    _write_pair(tmp_path / "mics", blob_pair)
    read = []
    original = train_data._pixels
    # The data (1.98 Å) are a little finer than the model (1.984 Å): the trainer reads their
    # binned copies OUTDIR/adapt/binned/<stem>_<digest>.mrc; the stem tells which sum it was.
    unbinned = lambda p: re.sub(r"_[0-9a-f]{8}\.mrc$", ".mrc", p.name)  # noqa: E731
    monkeypatch.setattr(train_data, "_pixels", lambda p: read.append(unbinned(p)) or original(p))
    out = tmp_path / "out"
    cfg = DenoiseConfig(inputs=[str(tmp_path / "mics")], outdir=out, device="cpu", workers=0,
                        progress=False)  # fmt: skip
    result = denoise_with_adaptation(cfg, TINY)
    info = result["adapt"]
    assert info["stage"] == "denoise" and info["micrographs"] == 1 and not info["reused"]
    weights = out / "adapt" / "adapted.safetensors"
    assert info["weights"] == weights and weights.is_file()
    assert (out / "adapt" / "run" / "checkpoints" / "latest.pt").is_file()
    # Trained on the halves (the full sum is opened for the crop geometry), never the clean.
    assert {"mic_EVN.mrc", "mic_ODD.mrc"} <= set(read) <= {"mic.mrc", "mic_EVN.mrc", "mic_ODD.mrc"}
    manifest = (out / "adapt" / "manifest.star").read_text()
    assert "clean" not in manifest.lower()
    # The weights moved away from the bundled ones, and the outputs were made with them.
    adapted, _, meta = load_model(weights)
    bundled, _, _ = load_model("bundled", bundled=BUNDLED_DENOISER)
    a, b = adapted.state_dict(), bundled.state_dict()
    assert any(not np.allclose(a[k].numpy(), b[k].numpy()) for k in b)
    assert meta["training"]["stage"] == "denoise"
    assert meta["pixel_size"] == pytest.approx(1.98, rel=0.05)
    assert result["done"] == 3  # the full sum and both halves are denoised
    first = read_mrc(out / "mic.mrc").data.copy()
    # Re-run (fresh outputs): the adaptation is reused, not trained again.
    (out / "mic.mrc").unlink()
    mtime = weights.stat().st_mtime_ns
    read.clear()
    again = denoise_with_adaptation(cfg, TINY)
    assert again["adapt"]["reused"] and weights.stat().st_mtime_ns == mtime and not read
    np.testing.assert_allclose(read_mrc(out / "mic.mrc").data, first, atol=1e-5)
    # Other settings into the same folder: refused, not silently mixed.
    with pytest.raises(DracoInputError, match="other inputs or settings"):
        denoise_with_adaptation(cfg, TINY.model_copy(update={"epochs": 2}))
    record = json.loads((out / "adapt" / "adapt.json").read_text())
    assert record["seconds"] > 0 and record["trained_on"]["stage"] == "denoise"


def test_adapt_without_halves_uses_blindspot_mae_on_request(tmp_path, blob_pair):
    full = _write_pair(tmp_path / "mics", blob_pair)
    cfg = DenoiseConfig(inputs=[str(full)], outdir=tmp_path / "out", device="cpu", workers=0,
                        progress=False)  # fmt: skip
    for half in ("mic_EVN.mrc", "mic_ODD.mrc"):
        (full.parent / half).unlink()
    result = denoise_with_adaptation(cfg, TINY)
    assert result["adapt"]["stage"] == "blindspot" and result["done"] == 1
    assert result["adapt"]["shifts"] == 1  # whole-image stage: the pixel refiner is kept
    adapted, _, meta = load_model(tmp_path / "out" / "adapt" / "adapted.safetensors")
    assert adapted.refiner is not None and meta["training"]["stage"] == "blindspot"
    mae = denoise_with_adaptation(
        cfg.model_copy(update={"outdir": tmp_path / "o_mae"}),
        TINY.model_copy(update={"stage": "mae"}),
    )
    assert mae["adapt"]["stage"] == "mae" and mae["done"] == 1
    assert mae["adapt"]["shifts"] == 4  # no refiner after the masked stage: grids averaged
    with pytest.raises(DracoInputError, match="halves"):
        adapt_mod.adapt_denoiser(
            cfg.model_copy(update={"outdir": tmp_path / "o2"}),
            TINY.model_copy(update={"stage": "denoise"}),
        )


def test_finer_data_are_fourier_binned_before_cropping(tmp_path, blob_pair, monkeypatch):
    """Data finer than the model are binned as inference bins them (Fourier), once, into
    OUTDIR/adapt/binned; the crops are then cut at that sampling without a bilinear resize, and
    the inputs are left as they were."""
    _, odd, even = blob_pair
    full = tmp_path / "mics" / "fine.mrc"
    full.parent.mkdir()
    write_mrc(full, np.tile(odd + even, (3, 3)), 1.32)  # 192 px at 1.32 Å: 128 px at 1.98
    before = full.read_bytes()
    calls = []
    original = adapt_mod.rescale_to_working
    monkeypatch.setattr(
        adapt_mod, "rescale_to_working", lambda *a: calls.append(a[1:]) or original(*a)
    )
    cfg = DenoiseConfig(inputs=[str(full)], outdir=tmp_path / "out", device="cpu", workers=0,
                        progress=False)  # fmt: skip
    result = denoise_with_adaptation(cfg, TINY)
    assert result["adapt"]["stage"] == "blindspot" and full.read_bytes() == before
    (copy,) = (tmp_path / "out" / "adapt" / "binned").glob("fine_*.mrc")
    binned = read_mrc(copy)
    assert binned.data.shape == (128, 128) and binned.pixel_size == pytest.approx(1.98, rel=0.01)
    assert calls == [(pytest.approx(1.32), pytest.approx(1.984, rel=0.01))]
    manifest = (tmp_path / "out" / "adapt" / "manifest.star").read_text()
    assert f"binned/{copy.name}" in manifest and str(full) not in manifest
    # The binned copy is the inference's working image (same resampling), not a bilinear one.
    work, _ = original(np.tile(odd + even, (3, 3)).astype(np.float32), 1.32, binned.pixel_size)
    np.testing.assert_allclose(binned.data, work, rtol=1e-5, atol=1e-5)
    # Two inputs with one stem in different folders get two copies, not one.
    other = tmp_path / "other" / "fine.mrc"
    other.parent.mkdir()
    write_mrc(other, np.tile(odd - even, (3, 3)), 1.32)
    rows = [{FULL: str(p), EVEN: "", ODD: "", "rlnMicrographPixelSize": 1.32}
            for p in (full, other)]  # fmt: skip
    out = adapt_mod.binned_rows(rows, 1.98, tmp_path / "b2")
    assert len({r[FULL] for r in out}) == 2 and all(Path(r[FULL]).is_file() for r in out)


@pytest.mark.parametrize("sampling", ["native", "model", "auto"])
def test_coarser_data_adapt_at_their_own_or_the_model_sampling(tmp_path, blob_pair, sampling):
    """Data coarser than the model: ``native`` adapts (and the adapted model runs) at the data's
    pixel size, no copy made; ``model`` Fourier-upsamples them to the model's first, as
    inference does, so the adapted model keeps the model's working pixel size. Blind-spot on
    data 2× coarser: ``auto`` is ``model`` with the 3×3 block hidden (issue 20 session 6)."""
    _, odd, even = blob_pair
    full = tmp_path / "mics" / "coarse.mrc"
    full.parent.mkdir()
    write_mrc(full, np.tile(odd + even, (2, 2)), 3.96)  # 128 px at 3.96 Å: 256 px at 1.98
    before = full.read_bytes()
    cfg = DenoiseConfig(inputs=[str(full)], outdir=tmp_path / "out", device="cpu", workers=0,
                        progress=False)  # fmt: skip
    result = denoise_with_adaptation(cfg, TINY.model_copy(update={"sampling": sampling}))
    assert full.read_bytes() == before
    copies = list((tmp_path / "out" / "adapt" / "binned").glob("coarse_*.mrc"))
    adapted_px = read_weights(result["adapt"]["weights"])[2]["pixel_size"]
    upsampled = sampling != "native"
    if not upsampled:
        assert copies == [] and adapted_px == pytest.approx(3.96, rel=0.01)
    else:
        (copy,) = copies
        up = read_mrc(copy)
        assert up.pixel_size == pytest.approx(1.98, rel=0.01)
        assert adapted_px == pytest.approx(up.pixel_size, rel=0.01)
        # the inference's own upsampling of the input (255² at the model's 1.984 Å)
        work, _ = adapt_mod.rescale_to_working(read_mrc(full).data, 3.96, up.pixel_size)
        np.testing.assert_allclose(up.data, work, rtol=1e-5, atol=1e-5)
    out = read_mrc(tmp_path / "out" / "coarse.mrc")
    assert out.data.shape == (128, 128) and np.isfinite(out.data).all()
    # The record says when the data were upsampled (a re-run that would not upsample them, or
    # a folder from before, then does not reuse these weights); native records are unchanged.
    record = json.loads((tmp_path / "out" / "adapt" / "adapt.json").read_text())["trained_on"]
    assert ("upsampled_to" in record) == upsampled
    assert record["settings"]["blind_radius"] == (1 if upsampled else 0)
    run_cfg = (tmp_path / "out" / "adapt" / "run" / "config.yaml").read_text()
    assert f"blind_radius: {1 if upsampled else 0}" in run_cfg


def test_blindspot_defaults_by_how_much_coarser_the_data_are():
    """auto_blindspot: native radius 0 up to 1.5× the model's pixel size, the model's sampling
    with radius 1 from there; what the user gives is kept; other objectives unchanged."""
    pick = adapt_mod.auto_blindspot
    assert pick(TINY, "blindspot", 1.98, 1.98) == ("native", 0)
    assert pick(TINY, "blindspot", 2.5, 1.98) == ("native", 0)
    assert pick(TINY, "blindspot", 4.0, 1.98) == ("model", 1)
    given = TINY.model_copy(update={"sampling": "native"})
    assert pick(given, "blindspot", 4.0, 1.98) == ("native", 0)
    assert pick(TINY.model_copy(update={"blind_radius": 2}), "blindspot", 4.0, 1.98) == ("model", 2)
    assert pick(TINY, "denoise", 4.0, 1.98) == ("model", 0)
    assert pick(TINY, "mae", 4.0, 1.98) == ("model", 0)


def test_adaptations_recorded_before_the_sampling_option_are_reused():
    """``sampling="auto"`` leaves the record as it was, so older OUTDIR/adapt folders match."""
    assert "sampling" not in adapt_mod._settings(TINY)
    assert adapt_mod._settings(TINY)["blind_radius"] == 0  # as recorded when 0 was the default
    assert adapt_mod._settings(TINY.model_copy(update={"sampling": "model"}))["sampling"] == "model"


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_blindspot_never_sees_the_pixels_it_scores(radius):
    """The model's input does not depend on the scored pixels (or their blocks), so changing
    them changes no prediction, only the loss: the objective cannot be met by copying."""
    torch.manual_seed(0)
    model = DracoMAE(DracoConfig.from_preset("tiny", img_size=64, refiner_channels=4)).eval()
    image = torch.randn(2, 1, 64, 64)
    run = lambda x: model.forward_blindspot(x, torch.Generator().manual_seed(3), radius)  # noqa: E731
    loss, pred, masks = run(image)
    blind = masks["blind"]
    assert blind.shape == image.shape and 0 < blind.float().mean() <= 1 / 16
    block = torch.nn.functional.max_pool2d(blind.float(), 2 * radius + 1, 1, radius).bool()
    changed = image.clone()
    changed[block] += 5.0
    loss2, pred2, masks2 = run(changed)
    assert torch.equal(masks2["blind"], blind)
    assert torch.equal(pred2, pred)
    assert loss2 > loss + 1.0
    # A pixel outside the blocks does reach the prediction.
    outside = changed.clone()
    outside[~block] += 5.0
    assert not torch.equal(run(outside)[1], pred)


def test_cli_adapts_then_reuses(tmp_path, blob_pair):
    full = _write_pair(tmp_path / "mics", blob_pair)
    args = ["denoise", str(full), "-o", str(tmp_path / "out"), "--adapt", "--adapt-epochs", "1",
            "--adapt-crops", "2", "--no-progress", "--workers", "0", "--device", "cpu"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "adapted (denoise, 1 micrograph, trained in" in first.output
    assert (tmp_path / "out" / "adapt" / "adapted.safetensors").is_file()
    second = CliRunner().invoke(app, [*args, "--no-skip-existing"])
    assert second.exit_code == 0 and "reused" in second.output, second.output


@pytest.mark.parametrize(
    ("option", "value"),
    [("--adapt-sampling", "bogus"), ("--adapt-crops", "0"), ("--adapt-stage", "x")],
)
def test_a_bad_adapt_option_is_one_line_naming_it(tmp_path, capsys, option, value):
    """A rejected --adapt-* value exits 2 with one line that names the option as typed."""
    from draco_em.cli import main

    mic = tmp_path / "mic.mrc"
    write_mrc(mic, np.zeros((64, 64), np.float32), 1.98)
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(mic), "-o", str(tmp_path / "out"), "--adapt", option, value])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith(f"draco: error: invalid {option}:")
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_relative_output_and_input_paths_adapt(tmp_path, blob_pair, monkeypatch):
    """`draco denoise mics -o out --adapt` run from the data's folder: the manifest named
    every file twice (out/adapt/out/adapt/binned/...) and the run stopped; now it adapts."""
    _, odd, even = blob_pair
    monkeypatch.chdir(tmp_path)
    Path("mics").mkdir()
    write_mrc(Path("mics/fine.mrc"), np.tile(odd + even, (3, 3)), 1.32)  # binned to 1.98
    cfg = DenoiseConfig(inputs=["mics"], outdir=Path("out"), device="cpu", workers=0,
                        progress=False)  # fmt: skip
    result = denoise_with_adaptation(cfg, TINY)
    assert result["adapt"]["stage"] == "blindspot" and Path("out/fine.mrc").is_file()


def test_ctrl_c_says_the_same_command_goes_on(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the adaptation exited 130 with nothing on the terminal (run.log alone said
    to continue with `draco pretrain`, which neither exports the weights nor denoises)."""
    from draco_em.cli import main

    def interrupted(cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt_mod, "run_pretrain", interrupted)
    mic = tmp_path / "mic.mrc"
    write_mrc(mic, np.random.default_rng(0).normal(size=(128, 128)), 1.98)
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(mic), "-o", str(tmp_path / "out"), "--adapt", "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 130
    assert "interrupted: run the same command again to go on" in err
    assert str(tmp_path / "out" / "adapt" / "run") in err


def test_the_run_log_says_the_same_denoise_command_goes_on(tmp_path, blob_pair, monkeypatch):
    """The adaptation's run.log ended a Ctrl-C with "continue with draco pretrain -o ...
    --resume latest", which trains on but neither exports the weights nor denoises; it now
    names the same draco denoise --adapt command, which does go on."""
    _write_pair(tmp_path / "mics", blob_pair)
    real = adapt_mod.run_pretrain

    def stop(state, stats):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt_mod, "run_pretrain", lambda cfg, **kw: real(cfg, on_step=stop, **kw))
    cfg = DenoiseConfig(inputs=[str(tmp_path / "mics")], outdir=tmp_path / "out", device="cpu",
                        workers=0, progress=False)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        denoise_with_adaptation(cfg, TINY)
    text = (tmp_path / "out" / "adapt" / "run" / "run.log").read_text()
    assert "interrupted at epoch 1, step 1: saved" in text
    assert "continue with the same draco denoise --adapt command" in text
    assert "draco pretrain" not in text
    monkeypatch.setattr(adapt_mod, "run_pretrain", real)
    result = denoise_with_adaptation(cfg, TINY)  # what the line says: it goes on and denoises
    assert not result["adapt"]["reused"] and (tmp_path / "out" / "mic.mrc").is_file()
