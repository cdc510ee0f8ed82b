"""Pseudo-halves recorrupted from a sum in counts (``draco denoise --pseudo-halves``)."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.errors import DracoInputError
from draco_em.imaging.filters import gaussian_blur_px
from draco_em.imaging.fourier import frequency_grid
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.pseudo_halves import counting_noise_model, pseudo_halves
from draco_em.infer.run_denoise import run_denoise
from draco_em.io.batch import SETTINGS_FILE
from draco_em.io.mrc import read_mrc, write_mrc
from tests.conftest import draco_in_process
from tests.infer.test_denoise import weights as weights  # the tiny-model fixture


def _counts(rng: np.random.Generator, shape=(256, 256), mean=50.0, c=0.0) -> np.ndarray:
    """A smooth signal at ``mean`` counts per pixel with Poisson noise whose power falls as
    exp(−c f²) (a camera's charge sharing and interpolation, as the model assumes)."""
    signal = gaussian_blur_px(rng.normal(size=shape).astype(np.float32), 4.0)
    expected = mean * (1 + 0.1 * signal / signal.std())
    noise = rng.poisson(expected) - expected
    fy, fx = frequency_grid(shape)
    noise = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-c * (fy**2 + fx**2) / 2), s=shape)
    return (expected + noise).astype(np.float32)


@pytest.mark.parametrize("c", [0.0, 4.0])
def test_the_noise_model_finds_the_poisson_level_and_its_fall(rng, c) -> None:
    model = counting_noise_model(_counts(rng, c=c))
    assert model["level"] == pytest.approx(50.0, rel=0.02)
    assert model["c"] == pytest.approx(c, abs=0.35)


def test_halves_add_up_to_the_sum_and_carry_the_modelled_noise(rng) -> None:
    y = _counts(rng, c=4.0)
    a, b, model = pseudo_halves(y, "mic_1:0")
    np.testing.assert_allclose(a + b, y, rtol=1e-5, atol=1e-3)  # the sum is kept exactly
    z = a - b  # = the added noise: its power per coefficient is the model's
    fy, fx = frequency_grid(y.shape)
    expect = model["level"] * np.exp(-model["c"] * (fy**2 + fx**2))
    power = np.abs(np.fft.rfft2(z)) ** 2 / z.size
    assert (power.mean() / expect.mean()) == pytest.approx(1.0, rel=0.03)
    high = np.hypot(fy, fx) > 0.4
    high_power = np.broadcast_to(power, high.shape)[high].mean()
    assert high_power / np.broadcast_to(expect, high.shape)[high].mean() == pytest.approx(
        1, rel=0.05
    )
    again = pseudo_halves(y, "mic_1:0")  # seeded by name: a re-run makes the same halves
    np.testing.assert_array_equal(a, again[0])
    assert not np.array_equal(a, pseudo_halves(y, "mic_2:0")[0])


@pytest.mark.parametrize(
    "scale", [lambda y: y - y.mean(), lambda y: 0.02 * y], ids=["normalised", "scaled-down"]
)
def test_a_sum_not_in_counts_has_no_model(rng, scale) -> None:
    with pytest.raises(DracoInputError, match="not in electron counts"):
        counting_noise_model(scale(_counts(rng)))


def test_signal_near_nyquist_on_coarse_pixels_leaves_the_noise_at_poisson(rng) -> None:
    y = _counts(rng)
    texture = rng.normal(scale=np.sqrt(0.25 * 50.0), size=y.shape)  # fine detail: 1.25 λ
    model = counting_noise_model((y + texture).astype(np.float32))
    assert 1.1 < model["band_ratio"] < 1.5
    assert model["c"] == 0.0 and model["level"] == pytest.approx(50.0, rel=0.02)


def test_noise_above_poisson_is_taken_flat_at_its_own_level(rng) -> None:
    y = _counts(rng)
    scaled = 3.0 * y  # counts × a gain of 3: power 9 λ, mean 3 λ
    model = counting_noise_model(scaled)
    assert model["c"] == 0.0 and model["level"] == pytest.approx(9 * 50.0, rel=0.05)


def test_batch_blends_sums_in_counts_and_says_which_got_the_plain_output(
    tmp_path, weights, rng, capsys
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        write_mrc(src / f"mic_{i}.mrc", _counts(rng, shape=(96, 80), c=3.0), 2.0)
    normalised = _counts(rng, shape=(96, 80))
    write_mrc(src / "norm.mrc", (normalised - normalised.mean()) / normalised.std(), 2.0)
    code, out, _ = draco_in_process(capsys, "denoise", src, "-o", tmp_path / "out", "--model",
                                    weights, "--pseudo-halves", "--tile", "64",
                                    "-q")  # fmt: skip
    assert code == 0
    assert "with pseudo-halves: 2; 1 not raw sums in counts got the plain output" in out
    assert "norm.mrc: no noise model" in out
    cfg = DenoiseConfig(inputs=[str(src)], outdir=tmp_path / "plain", weights=str(weights),
                        workers=0, tile=64, progress=False)  # fmt: skip
    run_denoise(cfg)
    got = {p.name: read_mrc(p).data for p in (tmp_path / "out").glob("*.mrc")}
    plain = {p.name: read_mrc(p).data for p in (tmp_path / "plain").glob("*.mrc")}
    np.testing.assert_array_equal(got["norm.mrc"], plain["norm.mrc"])
    assert not np.allclose(got["mic_0.mrc"], plain["mic_0.mrc"])
    # A re-run resumes (the settings are the same) and an identical redo is bit-identical.
    code, out, _ = draco_in_process(capsys, "denoise", src, "-o", tmp_path / "out", "--model",
                                    weights, "--pseudo-halves", "--tile", "64",
                                    "-q")  # fmt: skip
    assert code == 0 and "skipped 3 finished" in out
    run_denoise(cfg.model_copy(update={"outdir": tmp_path / "again", "pseudo_halves": True}))
    np.testing.assert_array_equal(read_mrc(tmp_path / "again" / "mic_0.mrc").data, got["mic_0.mrc"])


def test_a_folder_made_before_the_option_still_resumes(tmp_path, weights, rng) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_mrc(src / "mic_0.mrc", _counts(rng, shape=(64, 64)), 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=tmp_path / "out", weights=str(weights),
                        workers=0, tile=64, progress=False)  # fmt: skip
    run_denoise(cfg)
    assert "pseudo_halves" not in (tmp_path / "out" / SETTINGS_FILE).read_text()
    assert run_denoise(cfg)["skipped"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--adapt"], "--pseudo-halves calibrates on the halves"), (["--keep-binned"], "keep-bin")],
)
def test_refused_combinations_are_one_line_and_exit_2(
    tmp_path, weights, rng, capsys, extra, message
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_mrc(src / "mic_0.mrc", _counts(rng, shape=(64, 64)), 2.0)
    code, _, err = draco_in_process(capsys, "denoise", src, "-o", tmp_path / "out", "--model",
                                    weights, "--pseudo-halves", *extra)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_stack_in_counts_gets_pseudo_halves_section_by_section(tmp_path, weights, rng) -> None:
    src = tmp_path / "in"
    src.mkdir()
    stack = np.stack([_counts(rng, shape=(64, 72), c=2.0) for _ in range(3)])
    write_mrc(src / "ts.mrcs", stack, 2.0)
    cfg = DenoiseConfig(inputs=[str(src)], outdir=tmp_path / "out", weights=str(weights),
                        workers=0, tile=64, progress=False, pseudo_halves=True)  # fmt: skip
    result = run_denoise(cfg)
    assert (result["pseudo"], result["not_counts"]) == (1, 0)
    out = read_mrc(tmp_path / "out" / "ts.mrcs")
    assert out.data.shape == (3, 64, 72) and out.is_stack


def test_one_pass_is_an_option_with_its_own_output_folder(tmp_path, weights, rng, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_mrc(src / "mic_0.mrc", _counts(rng, shape=(96, 80), c=3.0), 2.0)
    common = {"inputs": [str(src)], "weights": str(weights), "workers": 0, "tile": 64,
              "progress": False, "pseudo_halves": True}  # fmt: skip
    run_denoise(DenoiseConfig(outdir=tmp_path / "two", **common))
    result = run_denoise(DenoiseConfig(outdir=tmp_path / "one", blend_passes=1, **common))
    assert result["pseudo"] == 1
    one, two = (read_mrc(tmp_path / d / "mic_0.mrc").data for d in ("one", "two"))
    assert not np.allclose(one, two)
    # A folder made with two passes is not resumed with one (its outputs would be mixed).
    code, _, err = draco_in_process(capsys, "denoise", src, "-o", tmp_path / "two", "--model",
                                    weights, "--pseudo-halves", "--tile", "64",
                                    "--blend-passes", "1")  # fmt: skip
    assert code == 2 and "blend_passes" in err
