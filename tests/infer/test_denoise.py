"""Tiled denoising and the `draco denoise` batch: pixel size, stacks, resume, failures, STAR."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from draco_em.imaging.normalize import clip_stats
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.denoise import Denoiser
from draco_em.infer.run_denoise import run_denoise
from draco_em.io.mrc import read_mrc, write_mrc
from draco_em.io.preview import GAP_PX, to_uint8
from draco_em.io.star import MicrographTable, read_micrographs_star, write_micrographs_star
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.weights import save_model
from tests.conftest import spy_on_writes


def _tiny_model(seed: int = 0) -> tuple[DracoMAE, DracoConfig]:
    torch.manual_seed(seed)
    cfg = DracoConfig.from_preset(
        "tiny", img_size=64, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
        decoder_depth=1, decoder_num_heads=2, decoder_neck_dim=16,
    )  # fmt: skip
    return DracoMAE(cfg).eval(), cfg


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model, cfg = _tiny_model()
    save_model(tmp_path / "m.safetensors", model, cfg, {"pixel_size": 2.0})
    return tmp_path / "m.safetensors"


def test_single_tile_equals_untiled_pass(rng):
    model, _ = _tiny_model()
    image = rng.normal(5.0, 2.0, size=(128, 128)).astype(np.float32)
    den = Denoiser(model, working_pixel_size=None, tile=128)
    out, px = den.denoise_image(image, None)
    mean, std = clip_stats(image)
    norm = (image - mean) / std
    with torch.no_grad():
        direct = model.denoise(torch.from_numpy(norm.astype(np.float32))[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, direct * std + mean, rtol=1e-5, atol=1e-5)
    assert px is None


def test_tiles_cover_non_multiple_sizes_without_nan(rng):
    model, _ = _tiny_model()
    image = rng.normal(size=(150, 97)).astype(np.float32)
    out, _ = Denoiser(model, None, tile=64, overlap=16, batch_size=3).denoise_image(image, 1.0)
    assert out.shape == image.shape and np.isfinite(out).all()


def test_pixel_size_round_trip_and_keep_binned(rng):
    model, _ = _tiny_model()
    image = rng.normal(size=(200, 160)).astype(np.float32)
    den = Denoiser(model, working_pixel_size=2.0, tile=64)
    out, px = den.denoise_image(image, 1.0)
    assert out.shape == (200, 160) and px == 1.0
    binned, bpx = den.denoise_image(image, 1.0, keep_binned=True)
    assert binned.shape == (100, 80) and bpx == pytest.approx(2.0)


def _inputs(folder: Path, rng) -> list[Path]:
    paths = []
    for i in range(2):
        paths.append(write_mrc(folder / f"mic_{i}.mrc", rng.normal(size=(96, 80)), 1.0))
    paths.append(write_mrc(folder / "tilts.mrcs", rng.normal(size=(3, 64, 64)), 1.0))
    (folder / "broken.mrc").write_bytes(b"\0" * 1500)
    return paths


def test_batch_writes_stack_records_failures_and_resumes(tmp_path, weights, rng):
    src = tmp_path / "in"
    _inputs(src, rng)
    out = tmp_path / "out"
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False, png=True)  # fmt: skip
    first = run_denoise(cfg)
    (warning,) = first.pop("warnings")  # the inputs' 1.0 Å headers: often a placeholder
    assert warning.startswith("3 of 4 inputs have a header pixel size of 1.0 Å")
    assert first == {"done": 3, "skipped": 0, "failed": 1, "outdir": str(out), "with_halves": 0,
                     "is_main": True}  # fmt: skip
    assert "broken.mrc" in (out / "failures.txt").read_text()
    stack = read_mrc(out / "tilts.mrcs")
    assert stack.data.shape == (3, 64, 64) and stack.is_stack and stack.pixel_size == 1.0
    # Issue 16: the preview is greyscale (mode L), raw | gap | denoised, raw as to_uint8 gives it.
    with Image.open(out / "png" / "mic_0.png") as im:
        assert im.mode == "L" and im.size == (2 * 80 + GAP_PX, 96)
        panel = np.asarray(im)
    raw = read_mrc(src / "mic_0.mrc").data
    assert np.array_equal(panel[:, :80], to_uint8(raw))
    assert (panel[:, 80 : 80 + GAP_PX] == 255).all()
    assert np.array_equal(panel[:, 80 + GAP_PX :], to_uint8(read_mrc(out / "mic_0.mrc").data))
    inputs_before = (src / "mic_0.mrc").read_bytes()
    second = run_denoise(cfg)  # resume: finished outputs are skipped
    assert second["done"] == 0 and second["skipped"] == 3
    assert (src / "mic_0.mrc").read_bytes() == inputs_before
    names = read_micrographs_star(out / "denoised_micrographs.star").micrographs
    assert sorted(Path(n).name for n in names["rlnMicrographName"]) == [
        "mic_0.mrc", "mic_1.mrc", "tilts.mrcs",
    ]  # fmt: skip


def test_star_input_keeps_columns_and_optics(tmp_path, weights, rng):
    _inputs(tmp_path, rng)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [1.0]})  # fmt: skip
    mics = pd.DataFrame({"rlnMicrographName": ["mic_0.mrc", "mic_1.mrc"], "rlnOpticsGroup": [1, 1],
                         "rlnDefocusU": [12000.0, 15000.0]})  # fmt: skip
    star = tmp_path / "micrographs.star"
    write_micrographs_star(star, MicrographTable(star, optics, mics))
    out = tmp_path / "den"
    run_denoise(DenoiseConfig(inputs=[str(star)], outdir=out, weights=str(weights), workers=0,
                              tile=64, progress=False))  # fmt: skip
    table = read_micrographs_star(out / "denoised_micrographs.star")
    assert list(table.micrographs["rlnDefocusU"]) == [12000.0, 15000.0]
    assert table.optics is not None and float(table.optics["rlnMicrographPixelSize"][0]) == 1.0
    assert all(str(out) in n for n in table.micrographs["rlnMicrographName"])


def test_star_names_follow_the_project_rule(tmp_path, weights, rng, monkeypatch):
    """Issue 16: denoised_micrographs.star names every file from the project folder (cwd),
    copied columns too (here the halves, named relative to the input STAR's folder)."""
    project = tmp_path / "project"
    (project / "Import").mkdir(parents=True)
    _inputs(project / "Import", rng)
    mics = pd.DataFrame({"rlnMicrographName": ["mic_0.mrc"], "dracoMicrographEven": ["mic_1.mrc"]})
    star = project / "Import" / "micrographs.star"
    write_micrographs_star(star, MicrographTable(star, None, mics))
    monkeypatch.chdir(project)
    cfg = DenoiseConfig(inputs=["Import/micrographs.star"], outdir=Path("Denoise/job1"),
                        weights=str(weights), workers=0, tile=64, progress=False)  # fmt: skip
    run_denoise(cfg)
    row = read_micrographs_star("Denoise/job1/denoised_micrographs.star").micrographs.iloc[0]
    assert row["rlnMicrographName"] == "Denoise/job1/mic_0.mrc"
    assert row["dracoMicrographEven"] == "Import/mic_1.mrc"  # resolves from the project
    assert row["dracoMicrographSource"] == "Import/mic_0.mrc"  # what picks are named after
    again = cfg.model_copy(update={"inputs": ["Denoise/job1/denoised_micrographs.star"],
                                   "outdir": Path("Denoise/job2")})  # fmt: skip
    run_denoise(again)  # denoised twice: still named after the raw micrograph
    row = read_micrographs_star("Denoise/job2/denoised_micrographs.star").micrographs.iloc[0]
    assert row["dracoMicrographSource"] == "Import/mic_0.mrc"
    binned = cfg.model_copy(update={"outdir": Path("Denoise/job3"), "keep_binned": True})
    run_denoise(binned)  # another pixel grid: its picks would not fit the raw micrograph
    rows = read_micrographs_star("Denoise/job3/denoised_micrographs.star").micrographs
    assert "dracoMicrographSource" not in rows.columns


def test_shifted_grids_average_plain_and_half_patch_offset_passes(rng):
    model, _ = _tiny_model()
    tile = rng.normal(size=(1, 64, 64)).astype(np.float32)
    two = Denoiser(model, None, tile=64, shifts=2)._run_tiles(tile)
    x = torch.from_numpy(tile)[:, None]
    with torch.no_grad():
        plain = model.denoise(x)[0, 0].numpy()
        padded = torch.nn.functional.pad(x, (8, 8, 8, 8), mode="reflect")
        offset = model.denoise(padded)[0, 0, 8:72, 8:72].numpy()
    np.testing.assert_allclose(two[0], (plain + offset) / 2, rtol=1e-5, atol=1e-5)
    four, _ = Denoiser(model, None, tile=64, shifts=4).denoise_image(tile[0], None)
    assert four.shape == (64, 64) and np.isfinite(four).all()


def test_tiff_stack_is_denoised_section_by_section(tmp_path, weights, rng):
    """A z-first multi-page TIFF (a tomogram, as the cylindra crops) → an MRC stack, per section."""
    import tifffile

    vol = (rng.normal(size=(3, 64, 48)) * 20 + 120).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "tomo.tif", vol, imagej=True)
    cfg = DenoiseConfig(inputs=[str(tmp_path / "tomo.tif")], outdir=tmp_path / "out",
                        weights=str(weights), workers=0, tile=64, progress=False,
                        pixel_size=2.0)  # fmt: skip
    assert run_denoise(cfg)["done"] == 1
    out = read_mrc(tmp_path / "out" / "tomo.mrc")
    assert out.data.shape == (3, 64, 48) and out.pixel_size == pytest.approx(2.0)
    # Section k of the output is the denoised section k alone (no mixing between sections).
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, vol[1])
    run_denoise(cfg.model_copy(update={"inputs": [str(single)]}))
    np.testing.assert_allclose(out.data[1], read_mrc(tmp_path / "out" / "one.mrc").data, atol=1e-4)


def test_bf16_on_cpu_converts_the_model_and_stays_close_to_float32(rng):
    model, _ = _tiny_model()
    image = rng.normal(5.0, 2.0, size=(128, 128)).astype(np.float32)
    ref, _ = Denoiser(model, None, tile=64).denoise_image(image, None)
    den = Denoiser(_tiny_model()[0], None, tile=64, bf16=True)
    out, _ = den.denoise_image(image, None)
    assert next(den.model.parameters()).dtype == torch.bfloat16
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.array_equal(out, ref)  # really ran in bf16
    # bf16 keeps 8 bits of mantissa: the outputs differ by ~1 % of their spread, not more.
    assert np.std(out - ref) < 0.03 * np.std(ref)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_defaults_to_the_cpus_native_support(tmp_path, weights, rng, monkeypatch, native):
    import draco_em.infer.run_denoise as rd

    monkeypatch.setattr(rd, "cpu_has_bf16", lambda: native)
    cfg = DenoiseConfig(inputs=[str(tmp_path)], outdir=tmp_path / "o", weights=str(weights))
    assert rd._load(cfg, torch.device("cpu"))._dtype == (
        torch.bfloat16 if native else torch.float32
    )
    forced = cfg.model_copy(update={"bf16": False})
    assert rd._load(forced, torch.device("cpu"))._dtype == torch.float32


def test_a_star_rows_pixel_size_is_read_ahead_of_the_header(tmp_path, weights, rng):
    """As RELION reads a micrographs STAR: its optics pixel size counts, also where the MRC
    header says 0 (unknown) or 1.0 (a placeholder); the output header carries it."""
    import mrcfile

    for name, header in (("zero", 0.0), ("one", 1.0)):
        with mrcfile.new(tmp_path / f"{name}.mrc") as mrc:
            mrc.set_data(rng.normal(size=(96, 80)).astype(np.float32))
            mrc.voxel_size = header
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [2.5]})  # fmt: skip
    mics = pd.DataFrame({"rlnMicrographName": ["zero.mrc", "one.mrc"], "rlnOpticsGroup": [1, 1]})
    star = tmp_path / "micrographs.star"
    write_micrographs_star(star, MicrographTable(star, optics, mics))
    out = tmp_path / "den"
    res = run_denoise(DenoiseConfig(inputs=[str(star)], outdir=out, weights=str(weights),
                                    workers=0, tile=64, progress=False))  # fmt: skip
    assert res["done"] == 2 and res["warnings"] == []  # the STAR said it: nothing to warn
    for name in ("zero", "one"):
        assert read_mrc(out / f"{name}.mrc").pixel_size == 2.5


def test_a_volume_stays_a_volume_and_keeps_its_origin(tmp_path, weights, rng):
    """A tomogram (ispg 1) is written as a volume, a tilt series as a stack, origins kept."""
    src = tmp_path / "in"
    write_mrc(src / "tomo.mrc", rng.normal(size=(3, 64, 48)), 2.0, stack=False,
              origin=(10.0, 20.0, 30.0))  # fmt: skip
    write_mrc(src / "ts.mrcs", rng.normal(size=(3, 64, 48)), 2.0, origin=(1.0, 2.0, 3.0))
    cfg = DenoiseConfig(inputs=[str(src)], outdir=tmp_path / "out", weights=str(weights),
                        workers=0, tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 2
    tomo, ts = read_mrc(tmp_path / "out" / "tomo.mrc"), read_mrc(tmp_path / "out" / "ts.mrcs")
    assert tomo.data.shape == (3, 64, 48) and not tomo.is_stack
    assert tomo.origin == (10.0, 20.0, 30.0) and tomo.voxel_size == pytest.approx((2.0,) * 3)
    assert ts.is_stack and ts.origin == (1.0, 2.0, 3.0)


def test_a_tiff_stack_mixing_sizes_fails_with_the_reason(tmp_path, weights):
    import tifffile

    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((64, 48), np.uint8) + np.eye(64, 48, dtype=np.uint8))
        tif.write(np.zeros((40, 48), np.uint8) + np.eye(40, 48, dtype=np.uint8))
    cfg = DenoiseConfig(inputs=[str(tmp_path / "mixed.tif")], outdir=tmp_path / "out",
                        weights=str(weights), workers=0, tile=64, progress=False,
                        pixel_size=2.0)  # fmt: skip
    assert run_denoise(cfg)["failed"] == 1
    assert "pages differ in size" in (tmp_path / "out" / "failures.txt").read_text()


def test_a_tilt_series_keeps_its_name_and_tilt_angles(tmp_path, weights, rng):
    """IMOD and AreTomo pair `ts.st` with `ts.rawtlt`/`ts.tlt` by name: the denoised series was
    written as `ts.mrcs` without its angles, so neither found them."""
    src = tmp_path / "in"
    write_mrc(src / "ts.st", rng.normal(size=(3, 64, 48)), 2.0)
    (src / "ts.rawtlt").write_text("-3\n0\n3\n")
    (src / "ts.st.mdoc").write_text("PixelSpacing = 2.0\n")
    cfg = DenoiseConfig(inputs=[str(src / "ts.st")], outdir=tmp_path / "out",
                        weights=str(weights), workers=0, tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 1
    out = tmp_path / "out"
    assert read_mrc(out / "ts.st").is_stack and not (out / "ts.mrcs").exists()
    assert (out / "ts.rawtlt").read_text() == "-3\n0\n3\n" and (out / "ts.st.mdoc").is_file()


def test_float16_output_is_refused_where_float16_cannot_hold_the_image(tmp_path, weights, rng):
    """`--float16` wrote a sum in arbitrary units (values ~1.4e5) as all inf, and one with mean
    6800 and std 9 (the UCSF sum in shared/data) rounded in steps of 4; both counted as done and
    were skipped on resume. Now each fails with its numbers; counts are written as float16."""
    src = tmp_path / "in"
    write_mrc(src / "huge.mrc", rng.normal(1.4e5, 200.0, size=(64, 64)), 2.0)
    write_mrc(src / "offset.mrc", rng.normal(6800.0, 9.0, size=(64, 64)), 2.0)
    write_mrc(src / "counts.mrc", rng.poisson(20.0, size=(64, 64)).astype(np.float32), 2.0)
    out = tmp_path / "out"
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False, float16=True)  # fmt: skip
    result = run_denoise(cfg)
    assert result["done"] == 1 and result["failed"] == 2
    assert sorted(p.name for p in out.glob("*.mrc")) == ["counts.mrc"]
    assert read_mrc(out / "counts.mrc").data.dtype == np.float16
    failures = (out / "failures.txt").read_text()
    assert "exceed float16's 65504: drop --float16" in failures
    assert "float16 rounds its values (mean 6800)" in failures


def test_a_stack_says_which_section_it_is_on(tmp_path, weights, rng, capsys):
    """A tilt series or tomogram is one step of the bar: it stood at 0/1 for minutes."""
    write_mrc(tmp_path / "ts.mrcs", rng.normal(size=(3, 64, 48)), 2.0)
    cfg = DenoiseConfig(inputs=[str(tmp_path / "ts.mrcs")], outdir=tmp_path / "out",
                        weights=str(weights), workers=0, tile=64)  # fmt: skip
    assert run_denoise(cfg)["done"] == 1
    err = capsys.readouterr().err
    assert "section 1/3" in err and "section 3/3" in err


def test_a_rewritten_input_is_denoised_again_and_the_other_resumed(tmp_path, weights, rng,
                                                                   monkeypatch):  # fmt: skip
    """A re-run skipped every input whose output existed, so a micrograph rewritten upstream
    kept its stale output. Now its output is made again (said, and written over the old one,
    which stays until then); an untouched re-run still skips all."""
    import draco_em.infer.outputs as run

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_mrc(src / f"mic_{i}.mrc", rng.normal(size=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 2
    kept, old = (out / "mic_0.mrc").stat().st_mtime_ns, (out / "mic_1.mrc").read_bytes()
    write_mrc(src / "mic_1.mrc", rng.normal(size=(64, 64)), 2.0)  # same size, other noise
    # what each output held when it was written again
    there = spy_on_writes(monkeypatch, run, "write_mrc", lambda dst: Path(dst).read_bytes())
    again = run_denoise(cfg)
    assert (again["done"], again["skipped"], again.get("redone")) == (1, 1, 1)
    assert "1 redone: input changed since processed (mic_1.mrc)" in again["warnings"]
    assert there == [old]  # the stale output stayed until the new one replaced it
    assert (out / "mic_1.mrc").read_bytes() != old
    assert (out / "mic_0.mrc").stat().st_mtime_ns == kept
    untouched = run_denoise(cfg)
    assert (untouched["done"], untouched["skipped"]) == (0, 2) and "redone" not in untouched
    assert not any("redone" in w for w in untouched["warnings"])


def test_a_folder_without_input_records_resumes_as_before(tmp_path, weights, rng):
    """Outputs made before input records were kept are skipped as they were, whatever their
    inputs' time stamps say."""
    from draco_em.io.resume import INPUTS_FOLDER

    src, out = tmp_path / "in", tmp_path / "out"
    write_mrc(src / "mic.mrc", rng.normal(size=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False)  # fmt: skip
    run_denoise(cfg)
    made = (out / "mic.mrc").read_bytes()
    for record in (out / INPUTS_FOLDER).iterdir():  # as an older release left the folder
        record.unlink()
    write_mrc(src / "mic.mrc", rng.normal(size=(64, 64)), 2.0)
    again = run_denoise(cfg)
    assert (again["done"], again["skipped"]) == (0, 1) and (out / "mic.mrc").read_bytes() == made


def test_a_rewritten_half_blends_its_sum_again(tmp_path, weights, rng):
    """--blend-halves reads X_EVN/X_ODD: a half rewritten makes the blend of X again."""
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("m", "m_EVN", "m_ODD"):
        write_mrc(src / f"{name}.mrc", rng.poisson(5.0, size=(64, 64)).astype(np.float32), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False, blend_halves=True)  # fmt: skip
    assert run_denoise(cfg)["blended"] == 1
    write_mrc(src / "m_ODD.mrc", rng.poisson(5.0, size=(64, 64)).astype(np.float32), 2.0)
    again = run_denoise(cfg)
    assert (again["done"], again["blended"], again.get("redone")) == (1, 1, 1)
    assert run_denoise(cfg)["skipped"] == 1


@pytest.mark.parametrize("row", ["/", "."])
def test_a_star_row_naming_a_folder_fails_alone(tmp_path, weights, rng, monkeypatch, row):
    """A STAR row "/" (or "." read from the STAR's folder) has no file name: the tilt-angle
    look-up ran Path.with_suffix on it before the per-file handling, and its ValueError ended
    the whole batch with a traceback."""
    write_mrc(tmp_path / "good.mrc", rng.normal(size=(96, 80)), 2.0)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [2.0]})  # fmt: skip
    mics = pd.DataFrame({"rlnMicrographName": ["good.mrc", row], "rlnOpticsGroup": [1, 1]})
    write_micrographs_star(tmp_path / "m.star", MicrographTable(tmp_path / "m.star", optics, mics))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "den"
    res = run_denoise(DenoiseConfig(inputs=["m.star"], outdir=out, weights=str(weights),
                                    workers=0, tile=64, progress=False))  # fmt: skip
    assert (res["done"], res["failed"]) == (1, 1)
    assert "is a folder" in (out / "failures.txt").read_text()


def test_an_image_under_the_smallest_micrograph_side_fails_alone(tmp_path, weights, rng):
    """Every stage refuses sides under 16 px (io.mrc.MIN_MICROGRAPH_SIDE); denoise took 8×8."""
    write_mrc(tmp_path / "in" / "good.mrc", rng.normal(size=(64, 64)), 2.0)
    write_mrc(tmp_path / "in" / "tiny.mrc", rng.normal(size=(8, 8)), 2.0)
    out = tmp_path / "den"
    res = run_denoise(DenoiseConfig(inputs=[str(tmp_path / "in")], outdir=out, workers=0,
                                    weights=str(weights), tile=64, progress=False))  # fmt: skip
    assert (res["done"], res["failed"]) == (1, 1) and not (out / "tiny.mrc").exists()
    assert "tiny.mrc: image of shape (8, 8) is too small" in (out / "failures.txt").read_text()


def test_a_failed_redo_keeps_the_earlier_output_out_of_the_star(tmp_path, weights, rng):
    """One rule for a redo that fails (io.resume.failed_redo): the earlier output stays on
    disk, but the STAR no longer lists it (it was made from another version of the input),
    and failures.txt says so. It listed the stale output before."""
    from draco_em.io.star import read_star

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_mrc(src / f"mic_{i}.mrc", rng.normal(size=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 2
    old = (out / "mic_1.mrc").read_bytes()
    write_mrc(src / "mic_1.mrc", rng.normal(size=(8, 8)), 2.0)  # under 16 px: refused
    again = run_denoise(cfg)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 1, 1)
    assert (out / "mic_1.mrc").read_bytes() == old  # kept
    listed = read_star(out / "denoised_micrographs.star")["micrographs"]["rlnMicrographName"]
    assert [Path(n).name for n in listed] == ["mic_0.mrc"]
    line = (out / "failures.txt").read_text()
    assert "mic_1.mrc" in line and "its earlier output stays on disk, unlisted" in line
    write_mrc(src / "mic_1.mrc", rng.normal(size=(64, 64)), 2.0)  # fixed upstream: done again
    fixed = run_denoise(cfg)
    assert (fixed["done"], fixed["failed"], fixed.get("redone")) == (1, 0, 1)
    listed = read_star(out / "denoised_micrographs.star")["micrographs"]["rlnMicrographName"]
    assert sorted(Path(n).name for n in listed) == ["mic_0.mrc", "mic_1.mrc"]
    # the only input failing on its redo: no STAR of an earlier run is left to list it
    write_mrc(src / "mic_0.mrc", rng.normal(size=(8, 8)), 2.0)
    alone = DenoiseConfig(inputs=[str(src / "mic_0.mrc")], outdir=out, weights=str(weights),
                          workers=0, tile=64, progress=False)  # fmt: skip
    assert run_denoise(alone)["failed"] == 1
    assert not (out / "denoised_micrographs.star").exists() and (out / "mic_0.mrc").exists()


def test_weights_rewritten_in_place_are_not_resumed_silently(tmp_path, weights, rng):
    """A model file rewritten at the same path (a pretrain run's best checkpoint as training
    goes on) kept every output made with the old one: the settings named the path only. Now
    its size and time are recorded and a re-run with another version is refused, naming it;
    --overwrite redoes the folder; a folder made before the stamp resumes as before."""
    import json
    import os

    from draco_em.errors import DracoInputError
    from draco_em.io.batch import SETTINGS_FILE

    src, out = tmp_path / "in", tmp_path / "out"
    write_mrc(src / "mic.mrc", rng.normal(size=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 1
    assert run_denoise(cfg)["skipped"] == 1  # unchanged: resumed
    weights.write_bytes(weights.read_bytes())  # the same path, written again
    os.utime(weights, ns=(1, 1))  # another time stamp, whatever the clock's resolution
    with pytest.raises(DracoInputError, match=r"other settings \(model_file "):
        run_denoise(cfg)
    assert run_denoise(cfg.model_copy(update={"overwrite": True}))["done"] == 1
    settings = out / SETTINGS_FILE  # as a folder made before the stamp was recorded
    record = json.loads(settings.read_text())
    del record["model_file"]
    settings.write_text(json.dumps(record))
    os.utime(weights, ns=(2, 2))
    assert run_denoise(cfg)["skipped"] == 1


def test_weights_rewritten_while_they_are_read_stop_the_run(tmp_path, weights, rng, monkeypatch):
    """The model file's version is recorded before the model loads; a file rewritten in
    between (a pretrain run's best checkpoint as it trains on) was denoised with under the
    record of the old one. Now the file is looked at again once loaded, and a change stops
    the run (under torchrun on every rank: tests/cli/test_contract.py)."""
    import os

    import draco_em.infer.run_denoise as run_denoise_mod
    from draco_em.errors import DracoInputError

    write_mrc(tmp_path / "in" / "mic.mrc", rng.normal(size=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(tmp_path / "in")], outdir=tmp_path / "out",
                        weights=str(weights), workers=0, tile=64, progress=False)  # fmt: skip
    real = run_denoise_mod._load

    def load_as_it_is_rewritten(*args, **kwargs):
        os.utime(weights, ns=(1, 1))  # written again after its version was recorded
        return real(*args, **kwargs)

    monkeypatch.setattr(run_denoise_mod, "_load", load_as_it_is_rewritten)
    with pytest.raises(DracoInputError, match="rewritten while this run read it"):
        run_denoise(cfg)
    assert not (tmp_path / "out" / "mic.mrc").exists()
    monkeypatch.setattr(run_denoise_mod, "_load", real)
    assert run_denoise(cfg)["done"] == 1  # no outputs of the old version: the new one is taken


def test_a_failed_overwrite_is_tried_again_by_the_next_run(tmp_path, weights, rng):
    """A redo that failed under --overwrite left its input record matching (the input did not
    change) while the folder recorded the new settings: the next run with them resumed the
    earlier output, made with the old ones, and listed it (review, session 25). The failed
    redo now marks its record (io.resume.record_failed_redo): the next run tries again."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_mrc(src / "a.mrc", rng.normal(size=(64, 64)), 2.0)
    write_mrc(src / "b.mrc", rng.normal(1e6, 1.0, size=(64, 64)), 2.0)  # float16 cannot hold it
    cfg = DenoiseConfig(inputs=[str(src)], outdir=out, weights=str(weights), workers=0,
                        tile=64, progress=False)  # fmt: skip
    assert run_denoise(cfg)["done"] == 2
    half = cfg.model_copy(update={"float16": True})
    assert run_denoise(half.model_copy(update={"overwrite": True}))["failed"] == 1
    again = run_denoise(half)  # the settings the folder now records
    assert (again["skipped"], again["failed"]) == (1, 1)  # b tried again, not resumed
    assert "stays on disk, unlisted" in (out / "failures.txt").read_text()
