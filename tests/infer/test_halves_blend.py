"""The halves-calibrated blend (``draco denoise --blend-halves``): its fit, and the batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.imaging.filters import gaussian_blur_px
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.halves_blend import RINGS_TO_NYQUIST, blend_halves
from draco_em.infer.run_denoise import _load, run_denoise
from draco_em.io.mrc import read_mrc, write_mrc
from tests.conftest import draco_in_process
from tests.infer.test_denoise import weights as weights  # the tiny-model fixture


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def _snr_db(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation SNR, 10·log10(ρ²/(1 − ρ²)), as benchmarks/denoise_indep.py scores it."""
    rho = _corr(x, y)
    return 10 * np.log10(rho * rho / (1 - rho * rho))


def _halves(rng: np.random.Generator, shape=(256, 256), noise=2.0):
    """A smooth signal s and two halves s + independent white noise."""
    s = gaussian_blur_px(rng.normal(size=shape).astype(np.float32), 3.0)
    s = s / s.std()
    a = s + rng.normal(scale=noise, size=shape).astype(np.float32)
    b = s + rng.normal(scale=noise, size=shape).astype(np.float32)
    return s, a, b


def test_blend_beats_its_parts_without_seeing_the_signal(rng) -> None:
    s, a, b = _halves(rng)
    da, db = (gaussian_blur_px(x, 1.0) for x in (a, b))  # a weak "denoiser"
    out, info = blend_halves(da, db, a, b)
    assert out.shape == s.shape and out.dtype == np.float32
    assert min(info["w"]) >= 0 and min(info["v"]) >= 0
    snr = _snr_db(out, s)
    assert snr > _snr_db(a + b, s) + 5  # far better than the raw sum
    assert snr > _snr_db(da + db, s) + 1  # and than the denoised halves averaged


def test_one_pass_fits_the_even_half_against_the_odd_one(rng) -> None:
    s, a, b = _halves(rng)
    da, db = (gaussian_blur_px(x, 1.0) for x in (a, b))
    one, info = blend_halves(da, None, a, b)  # --blend-passes 1: D(odd) is never made
    two = blend_halves(da, db, a, b)[0]
    assert one.shape == s.shape and min(info["w"]) >= 0 and min(info["v"]) >= 0
    assert _snr_db(one, s) > _snr_db(a + b, s) + 5
    assert _snr_db(two, s) - 1.0 < _snr_db(one, s) < _snr_db(two, s)  # less averaging
    # A perfect denoiser of the even half alone is taken whole (it estimates 2s).
    inner = slice(1, RINGS_TO_NYQUIST // 4)
    perfect = blend_halves(s, None, a, b)[1]
    assert np.median(np.array(perfect["w"])[inner]) == pytest.approx(2.0, abs=0.25)


def test_no_model_is_a_wiener_filter_close_to_the_oracle(rng) -> None:
    s, a, b = _halves(rng, noise=3.0)
    zero = np.zeros_like(a)
    out, info = blend_halves(zero, zero, a, b)
    assert not any(info["w"])
    full = np.fft.fft2(a + b)
    gain = np.abs(np.fft.fft2(2 * s)) ** 2 / np.maximum(np.abs(full) ** 2, 1e-12)  # oracle
    oracle = np.fft.ifft2(full * np.minimum(gain, 1.0)).real
    assert _corr(out, s) > _corr(a + b, s) + 0.3
    assert _corr(out, s) > _corr(oracle, s) - 0.1  # per-coefficient oracle is an upper bound


def test_a_perfect_denoiser_is_taken_whole(rng) -> None:
    s, a, b = _halves(rng)
    out, info = blend_halves(s, s, a, b)
    assert _corr(out, s) > 0.99
    slope = float(np.polyfit(s.ravel(), out.ravel(), 1)[0])
    assert slope == pytest.approx(2.0, rel=0.1)  # it estimates the signal of the sum, 2s
    inner = slice(1, RINGS_TO_NYQUIST // 8)  # rings where the signal is strong
    assert np.median(np.array(info["w"])[inner]) == pytest.approx(2.0, abs=0.25)


def test_odd_and_non_square_shapes_match_a_full_plane_reference(rng) -> None:
    """The half-plane (rfft) sums weight each coefficient as the full plane would."""
    _, a, b = _halves(rng, shape=(75, 101))
    da, db = (gaussian_blur_px(x, 1.0) for x in (a, b))
    out, info = blend_halves(da, db, a, b)
    # Reference: the same fit on full-plane FFTs, with the module's ring rule.
    width = max(a.shape) / (2 * RINGS_TO_NYQUIST)
    fy, fx = np.fft.fftfreq(75)[:, None], np.fft.fftfreq(101)[None, :]
    ring = np.floor(np.hypot(fy, fx) * 101 / width + 0.5).astype(int)
    w, v = np.array(info["w"]), np.array(info["v"])
    dbar = (np.fft.fft2(da - da.mean()) + np.fft.fft2(db - db.mean())) / 2
    full = np.fft.fft2(a - a.mean()) + np.fft.fft2(b - b.mean())
    ref = np.fft.ifft2(w[ring] * dbar + v[ring] * full).real + a.mean() + b.mean()
    np.testing.assert_allclose(out, ref, atol=1e-3 * float(np.abs(ref).max()))
    with pytest.raises(ValueError, match="shape"):
        blend_halves(da[:-1], db, a, b)


def _set(folder: Path, rng: np.random.Generator) -> None:
    """mic_0 and mic_1 with X_EVN/X_ODD halves; mic_2 without."""
    folder.mkdir()
    for i in range(3):
        _, a, b = _halves(rng, shape=(96, 80))
        write_mrc(folder / f"mic_{i}.mrc", a + b, 2.0)
        if i < 2:
            write_mrc(folder / f"mic_{i}_EVN.mrc", a, 2.0)
            write_mrc(folder / f"mic_{i}_ODD.mrc", b, 2.0)


def test_batch_blends_micrographs_with_halves_and_never_the_halves_themselves(
    tmp_path,
    weights,
    rng,
) -> None:
    _set(tmp_path / "in", rng)
    out = tmp_path / "out"
    cfg = DenoiseConfig(inputs=[str(tmp_path / "in")], outdir=out, weights=str(weights),
                        workers=0, tile=64, progress=False, blend_halves=True)  # fmt: skip
    result = run_denoise(cfg)
    assert result["done"] == 3 and result["blended"] == 2 and result["failed"] == 0
    assert sorted(p.name for p in out.glob("*.mrc")) == ["mic_0.mrc", "mic_1.mrc", "mic_2.mrc"]
    plain = tmp_path / "plain"
    run_denoise(cfg.model_copy(update={"outdir": plain, "blend_halves": False}))
    same = read_mrc(out / "mic_2.mrc").data, read_mrc(plain / "mic_2.mrc").data
    np.testing.assert_array_equal(*same)  # no halves: the plain output
    assert not np.allclose(read_mrc(out / "mic_0.mrc").data, read_mrc(plain / "mic_0.mrc").data)
    assert read_mrc(out / "mic_0.mrc").pixel_size == 2.0


def test_half_of_another_shape_is_a_recorded_failure(tmp_path, weights, rng) -> None:
    _set(tmp_path / "in", rng)
    write_mrc(tmp_path / "in" / "mic_1_ODD.mrc", np.ones((64, 64)), 2.0)
    out = tmp_path / "out"
    result = run_denoise(DenoiseConfig(inputs=[str(tmp_path / "in")], outdir=out,
                                       weights=str(weights), workers=0, tile=64,
                                       progress=False, blend_halves=True))  # fmt: skip
    assert result["failed"] == 1 and result["done"] == 2
    assert "mic_1_ODD.mrc" in (out / "failures.txt").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--adapt"], "--blend-halves calibrates on the halves"), (["--keep-binned"], "keep-binned")],
)
def test_refused_combinations_are_one_line_and_exit_2(
    tmp_path,
    weights,
    rng,
    capsys,
    extra,
    message,
) -> None:
    _set(tmp_path / "in", rng)
    code, _, err = draco_in_process(capsys, "denoise", tmp_path / "in", "-o", tmp_path / "out",
                                    "--model", weights, "--blend-halves", *extra)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_says_how_many_were_blended(tmp_path, weights, rng, capsys) -> None:
    _set(tmp_path / "in", rng)
    code, out, _ = draco_in_process(capsys, "denoise", tmp_path / "in", "-o", tmp_path / "out",
                                    "--model", weights, "--blend-halves", "--tile", "64",
                                    "-q")  # fmt: skip
    assert code == 0
    assert "blended with their halves: 2; 1 without X_EVN/X_ODD halves got the plain output" in out


def test_a_stack_with_half_stacks_is_blended_section_by_section(tmp_path, weights, rng) -> None:
    src = tmp_path / "in"
    src.mkdir()
    pairs = [_halves(rng, shape=(64, 72))[1:] for _ in range(3)]
    even, odd = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    write_mrc(src / "ts.mrcs", even + odd, 2.0)
    write_mrc(src / "ts_EVN.mrcs", even, 2.0)
    write_mrc(src / "ts_ODD.mrcs", odd, 2.0)
    out = tmp_path / "out"
    cfg = DenoiseConfig(inputs=[str(src / "ts.mrcs")], outdir=out, weights=str(weights),
                        workers=0, tile=64, progress=False, blend_halves=True)  # fmt: skip
    assert run_denoise(cfg)["blended"] == 1
    stack = read_mrc(out / "ts.mrcs")
    assert stack.data.shape == (3, 64, 72) and stack.is_stack
    den = _load(cfg, torch.device("cpu"))  # the same denoiser: one section by hand
    d = [den.denoise_image(h, 2.0, False)[0] for h in (even[1], odd[1])]
    np.testing.assert_allclose(
        stack.data[1], blend_halves(d[0], d[1], even[1], odd[1])[0], rtol=1e-4, atol=1e-4
    )


def test_without_the_option_the_cli_points_to_it_where_halves_exist(
    tmp_path, weights, rng, capsys
) -> None:
    _set(tmp_path / "in", rng)
    star_less = [tmp_path / "in" / f"mic_{i}.mrc" for i in range(3)]  # fulls only, as a user
    code, _, err = draco_in_process(capsys, "denoise", *star_less, "-o", tmp_path / "out",
                                    "--model", weights, "--tile", "64", "-q")  # fmt: skip
    assert code == 0
    assert "note: 2 micrographs with X_EVN/X_ODD halves: --blend-halves" in err


def test_a_star_naming_a_missing_half_fails_that_micrograph_only(tmp_path, weights, rng) -> None:
    _set(tmp_path / "in", rng)
    star = tmp_path / "mics.star"
    rows = "\n".join(
        f"in/mic_{i}.mrc in/mic_{i}_EVN.mrc in/mic_{i}_{'GONE' if i == 1 else 'ODD'}.mrc"
        for i in range(2)
    )
    star.write_text(
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_dracoMicrographEven #2\n"
        f"_dracoMicrographOdd #3\n{rows}\n"
    )
    common = {"outdir": tmp_path / "out", "weights": str(weights), "workers": 0, "tile": 64,
              "progress": False, "pixel_size": 2.0}  # fmt: skip
    result = run_denoise(DenoiseConfig(inputs=[str(star)], blend_halves=True, **common))
    assert (result["done"], result["skipped"], result["failed"], result["blended"]) == (1, 0, 1, 1)
    assert "mic_1_GONE.mrc" in (tmp_path / "out" / "failures.txt").read_text()
    # Without the option the missing half does not matter (and no note counts mic_1).
    plain = run_denoise(
        DenoiseConfig(inputs=[str(star)], **{**common, "outdir": tmp_path / "plain"})
    )
    assert (plain["done"], plain["failed"], plain["with_halves"]) == (2, 0, 1)


def test_rings_the_denoiser_left_empty_take_the_sum_alone_and_stay_stable(rng) -> None:
    """A denoiser band-limited below the data's Nyquist (the model's coarser pixel) leaves
    only float32 round-off in the outer rings: no weight may be fitted on it."""
    _, a, b = _halves(rng)
    fy, fx = np.meshgrid(np.fft.fftfreq(256), np.fft.rfftfreq(256), indexing="ij")
    keep = np.hypot(fy, fx) < 0.35

    def band_limited(x: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(np.fft.rfft2(gaussian_blur_px(x, 1.0)) * keep, s=x.shape).astype(
            np.float32
        )

    out, info = blend_halves(band_limited(a), band_limited(b), a, b)
    outer = np.arange(len(info["w"])) * 0.5 / RINGS_TO_NYQUIST > 0.37
    assert np.all(np.array(info["w"])[outer] == 0)
    tiny = (1e-6 * rng.normal(size=a.shape)).astype(np.float32)  # round-off-sized changes
    again, _ = blend_halves(band_limited(a + tiny), band_limited(b), a + tiny, b)
    assert np.sqrt(np.mean((again - out) ** 2)) < 1e-4 * out.std()
