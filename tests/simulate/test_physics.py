"""Physics of the simulator: noise statistics, SNR, coordinates, CTF convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.simulate import detector, optics
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.micrograph import simulate_micrograph
from draco_em.simulate.phantoms import make_phantoms
from draco_em.simulate.placement import place_particles, render_particles
from draco_em.simulate.projection import Projector


@pytest.fixture(scope="module")
def projectors_1a() -> list[Projector]:
    """Three phantoms at 1 Å/px (made once per module, ~1 s)."""
    return [Projector(p, 1.0) for p in make_phantoms(0, 3, 1.0)]


def _cfg(**kw) -> SimulateConfig:
    base = {
        "outdir": Path("unused"),
        "preset": "classic",
        "carbon_probability": 0.0,
        "contamination_probability": 0.0,
    }
    return SimulateConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def movie_mic(projectors_1a):
    """A 384² 8-frame micrograph at 1 Å/px and 40 e⁻/Å², with its movie."""
    cfg = _cfg(size=384, frames=8, movies=True)
    return cfg, simulate_micrograph(cfg, 0, projectors_1a)


def test_even_odd_sum_to_full_sum(movie_mic):
    _, mic = movie_mic
    assert np.array_equal(mic.even + mic.odd, mic.full)


def test_even_odd_noise_is_independent(movie_mic):
    _, mic = movie_mic
    # Remove the signal: each half's expectation is ~half the clean image.
    r_even, r_odd = mic.even - mic.clean / 2, mic.odd - mic.clean / 2
    assert abs(np.corrcoef(r_even.ravel(), r_odd.ravel())[0, 1]) < 0.02
    # ...while the halves themselves do share the signal.
    assert np.corrcoef(mic.even.ravel(), mic.odd.ravel())[0, 1] > 0.02


def test_counts_are_poisson_at_the_header_dose(movie_mic):
    cfg, mic = movie_mic
    movie = mic.movie.astype(np.float64)
    assert np.array_equal(movie, np.round(movie)) and movie.min() >= 0
    # Mean counts per pixel and frame: dose × px² × ice transmission (clean holds the exact mean).
    per_frame = cfg.dose * cfg.pixel_size**2 / cfg.frames
    transmission = mic.clean.mean() / (per_frame * cfg.frames)
    assert 0.8 < transmission < 1.0  # 20–50 nm of ice at a 380 nm inelastic mean free path
    assert movie.mean() == pytest.approx(mic.clean.mean() / cfg.frames, rel=0.02)
    # Poisson: the variance of the noise equals the mean.
    residual = mic.full - mic.clean
    assert residual.mean() == pytest.approx(0.0, abs=0.05)
    assert (residual**2).mean() / mic.clean.mean() == pytest.approx(1.0, abs=0.03)


def test_snr_is_realistic_at_1A_and_40_electrons(projectors_1a):
    cfg = _cfg(size=512, frames=40, movies=False)
    corr = [
        np.corrcoef(m.full.ravel(), m.clean.ravel())[0, 1]
        for m in (simulate_micrograph(cfg, i, projectors_1a) for i in range(2))
    ]
    assert all(0.05 <= c <= 0.3 for c in corr), corr


def test_coordinates_sit_on_particle_centres(projectors_1a):
    rng = np.random.default_rng(3)
    layout = place_particles(rng, (600, 600), 40, [p.radius_px for p in projectors_1a], 25, 0.3)
    phase, layout = render_particles(rng, (600, 600), layout, projectors_1a)
    assert len(layout) > 5
    yy, xx = np.mgrid[:600, :600]
    checked = 0
    for row in layout.itertuples():
        r = projectors_1a[row.species].radius_px
        if min(row.x, row.y) < r or max(row.x, row.y) > 600 - r:
            continue  # cut by the canvas edge
        # Discs never overlap, so the disc holds this particle's projection and nothing else.
        w = phase * ((yy - row.y) ** 2 + (xx - row.x) ** 2 < r**2)
        cy, cx = (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()
        assert abs(cy - row.y) < 1.0 and abs(cx - row.x) < 1.0
        checked += 1
    assert checked >= 3


def test_coordinates_lie_on_particles_of_the_micrograph(projectors_1a):
    """End to end: each coordinate is the centre of mass of its particle in the image frame."""
    cfg = _cfg(size=640, frames=8, movies=False, particles_per_micrograph=25)
    mic = simulate_micrograph(cfg, 1, projectors_1a, keep_particle_phase=True)
    phase = mic.particle_phase
    yy, xx = np.mgrid[:640, :640]
    radius = {p.structure.name: p.radius_px for p in projectors_1a}
    checked = 0
    for row in mic.particles.itertuples():
        r = radius[row.structure]
        assert phase[int(row.y), int(row.x)] != 0  # on a particle
        if min(row.x, row.y) < r or max(row.x, row.y) > 640 - r:
            continue  # cut by the image edge: its centre of mass is elsewhere
        w = phase * ((yy - row.y) ** 2 + (xx - row.x) ** 2 < r**2)
        cy, cx = (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()
        assert abs(cy - row.y) < 1.0 and abs(cx - row.x) < 1.0
        checked += 1
    assert checked >= 2


def test_particles_do_not_overlap():
    rng = np.random.default_rng(0)
    layout = place_particles(rng, (500, 500), 20, [30.0], 200, 0.2)
    xy = layout[["x", "y"]].to_numpy()
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert len(xy) > 20 and d.min() >= 60.0


@pytest.mark.parametrize("lam", [0.3, 1.0, 4.0, 20.0])
def test_poisson_sampler_mean_and_variance(lam):
    counts = detector.poisson(np.random.default_rng(0), np.full(400_000, lam, np.float32))
    assert counts.mean() == pytest.approx(lam, rel=0.01)
    assert counts.var() == pytest.approx(lam, rel=0.02)


def test_astigmatism_angle_zero_puts_defocus_u_along_x():
    params = optics.OpticsParams(20000, 10000, 0.0, 300, 2.7, 0.07, 0)
    chi = torch.angle(optics.lens_transfer(params, (256, 256), 1.0))
    # Larger defocus along U: the phase wraps sooner along x (axis 1) than along y (axis 0).
    first_wrap = [
        int(np.argmax(np.abs(np.diff(np.unwrap(line.numpy()))) > 0) or 0)
        for line in (chi[0, :128], chi[:128, 0])
    ]
    grad_x = np.abs(np.diff(np.unwrap(chi[0, :128].numpy()))).sum()
    grad_y = np.abs(np.diff(np.unwrap(chi[:128, 0].numpy()))).sum()
    assert grad_x > grad_y, first_wrap


def test_crystalline_ice_grains_mottle_at_grain_scale():
    """Nanocrystalline ice: intensity blots at the grain scale (100–350 Å), not whole-field
    domains, and the Bragg grating only where the pixel size samples it."""
    from scipy.ndimage import gaussian_filter

    from draco_em.simulate.bad import ICE_BRAGG_SPACINGS, crystalline_ice

    shape, px = (512, 512), 7.0
    grains = 0
    for seed in range(8):
        phase, att = crystalline_ice(np.random.default_rng(seed), shape, px, 300.0)
        assert phase.shape == att.shape == shape
        assert np.isfinite(att).all() and att.min() >= 0
        assert not phase.any()  # 3.4–3.9 Å spacings are not sampled at 7 Å/px
        # Grain-scale structure: a band-pass at ~100–1000 Å keeps most of the contrast of a
        # grain field; a few big domains put it at the image scale instead.
        band = gaussian_filter(att, 4.0) - gaussian_filter(att, 40.0)
        if band.std() > 0.5 * att.std():
            grains += 1
    assert 4 <= grains <= 8  # three in four draws are nanocrystalline
    phase, _ = crystalline_ice(np.random.default_rng(0), (256, 256), 1.0, 300.0)
    assert phase.any() and max(ICE_BRAGG_SPACINGS) < 2 * 2.0


def test_crystalline_ice_is_seeded():
    from draco_em.simulate.bad import crystalline_ice

    a = crystalline_ice(np.random.default_rng(3), (200, 300), 2.0, 300.0)
    b = crystalline_ice(np.random.default_rng(3), (200, 300), 2.0, 300.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
