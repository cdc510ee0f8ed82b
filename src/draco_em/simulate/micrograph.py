"""One micrograph, start to finish: plan → specimen → exit wave → frames → counts → sums.

Random numbers come from ``numpy.random.default_rng([seed, index])`` only, so a micrograph is
the same whichever worker makes it and whatever else is made. See ``docs/simulator.md``.

Frame bookkeeping (MotionCor2's ``-SplitSum`` naming): frames are numbered from 0; the ``ODD``
sum holds frames 0, 2, 4, ... (the 1st, 3rd, 5th: odd in 1-based counting), the ``EVN`` sum
frames 1, 3, 5, ...; ``EVN + ODD`` is the full sum, bit for bit. The sums are aligned with the
true integer part of each frame's drift (the fractional part stays as a residual blur, like
a real motion correction), are not dose-weighted, and count electrons. ``clean`` is their
exact expectation: ``E[full sum] = clean`` pixel by pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from draco_em.imaging.fourier import frequency_grid_torch
from draco_em.simulate import bad, detector, junk, optics, placement, presets, sample
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.potential import WATER_POTENTIAL_V, interaction_constant
from draco_em.simulate.projection import Projector

CARBON_POTENTIAL_V = 10.0  # mean inner potential of amorphous carbon, V (Wanner et al. 2006)


#: Region codes of ``Micrograph.regions`` and ``regions/<name>.mrc``.
REGION_CLEAR, REGION_CONTAMINATION, REGION_CARBON = 0, 1, 2


@dataclass
class Micrograph:
    """Everything written for one micrograph (images [size, size] float32, in electrons)."""

    name: str
    full: np.ndarray
    even: np.ndarray
    odd: np.ndarray
    clean: np.ndarray
    movie: np.ndarray | None  # [frames, size, size] raw counts (uint8/int16) or None
    particles: pd.DataFrame  # x, y (image pixels), rot, tilt, psi, structure, aggregate
    shifts: np.ndarray  # [frames, 2] true global shift (x, y) in pixels
    optics: optics.OpticsParams
    plan: bad.MicrographPlan
    ice_thickness: float  # mean over the image, Å
    contaminated_area: float = 0.0  # share of the image under >100 Å of contaminant
    regions: np.ndarray | None = None  # [size, size] int8 region truth (REGION_* codes)
    particle_phase: np.ndarray | None = None  # [size, size] particles-only phase (rad), on request
    imaging: presets.ImagingDraw | None = None  # what the realistic preset drew (None: classic)
    junk: pd.DataFrame | None = None  # x, y (image px), kind, radius (Å): not particles
    dose: float | None = None  # e⁻/Å² of this micrograph


def per_micrograph_config(cfg: SimulateConfig, draw: presets.ImagingDraw) -> SimulateConfig:
    """``cfg`` with the scalar knobs the realistic preset drew for one micrograph: the existing
    physics then runs unchanged with them."""
    realism = cfg.realism
    assert realism is not None
    return cfg.model_copy(
        update={
            "size": draw.size,
            "dose": draw.dose,
            "defocus_range": (draw.defocus, draw.defocus),
            "max_astigmatism": draw.astigmatism,
            "envelope_bfactor": draw.bfactor,
            "ice_thickness_range": draw.ice_thickness_range,
            "coverage": draw.coverage,
            "aggregate_fraction": draw.aggregate_fraction,
            "species_per_micrograph": draw.species,
            "carbon_probability": realism.carbon_probability,
            "contamination_probability": realism.contamination_probability,
        }
    )


def _specimen(rng, cfg, plan, canvas, margin, projectors, draw=None):
    """Phase, attenuation [H, W] (torch), particle table, mean ice (Å), contaminated share of
    the image, region truth [size, size] (int8), particle phase [H, W], junk table (or None)."""
    px, sigma = cfg.pixel_size, interaction_constant(cfg.voltage)
    if draw is None:
        t = sample.ice_thickness(rng, canvas, px, plan.ice_mean)
    else:
        t = sample.ice_thickness(rng, canvas, px, plan.ice_mean, gradient=draw.ice_gradient)
    noise = sample.structural_noise(rng, canvas, px, sigma, "ice", plan.ice_mean)
    if plan.no_ice:  # an empty hole: vacuum, no ice texture, no inelastic loss
        t = np.zeros_like(t)
    phase = sigma * WATER_POTENTIAL_V * t + noise * np.sqrt(t / plan.ice_mean)
    attenuation = t / cfg.inelastic_mfp
    carbon = None
    if plan.carbon != "none":
        carbon = sample.carbon_mask(rng, canvas, px, full=plan.carbon == "full")
        tc = float(rng.uniform(100, 200))
        film = sigma * CARBON_POTENTIAL_V * tc
        phase += carbon * (film + sample.structural_noise(rng, canvas, px, sigma, "carbon", tc))
        attenuation += carbon * tc / sample.CARBON_MFP
    # Realistic preset: small contaminants thinner and crystals' Bragg loss weaker than
    # classic's, calibrated on real micrographs (RealismConfig, docs/simulator.md); 1 = classic.
    thin, bragg = 1.0, 1.0
    if draw is not None and cfg.realism is not None:
        thin, bragg = cfg.realism.contaminant_thickness_scale, cfg.realism.bragg_loss_scale
    extra, crystal = sample.contamination(
        rng,
        canvas,
        px,
        plan.n_crystals,
        plan.n_blobs,
        big=plan.big_contamination,
        crystal_radius=plan.crystal_radius,
        blob_radius=plan.blob_radius,
        thickness_scale=thin,
    )
    if plan.n_debris:
        more, more_crystal = sample.debris(rng, canvas, px, plan.n_debris)
        extra, crystal = extra + more, np.maximum(crystal, more_crystal)
    phase += sigma * WATER_POTENTIAL_V * extra
    # Crystalline contaminants also lose intensity to Bragg reflections outside the aperture.
    attenuation += extra / cfg.inelastic_mfp + crystal * (rng.uniform(0.1, 0.5) * bragg)
    if plan.crystalline:
        p, a = bad.crystalline_ice(rng, canvas, px, plan.ice_mean)
        phase, attenuation = phase + p, attenuation + a
    used = [projectors[i] for i in plan.species]
    n = 0 if plan.empty else _n_particles(cfg, used, margin)
    layout = placement.place_particles(
        rng,
        canvas,
        margin,
        [p.radius_px for p in used],
        n,
        cfg.aggregate_fraction,
        forbidden=extra > 100,
        carbon=carbon,
    )
    spread = 0.0 if draw is None else draw.preferred_spread
    particle_phase, layout = placement.render_particles(rng, canvas, layout, used, spread)
    junk_table = None
    if draw is not None:
        # Junk after the particles (never on one); drawn only in the realistic preset.
        radii = np.array([used[s].radius_px for s in layout["species"]], np.float64)
        no_junk = plan.no_ice or (plan.empty and plan.carbon == "full")
        n_junk = 0 if no_junk else rng.poisson(draw.junk_rate * n)
        junk_table = junk.place_junk(rng, canvas, margin, px, layout, radii, int(n_junk))
        protein, ice_balls, ice_crystal = junk.render_junk(rng, canvas, px, sigma, junk_table)
        particle_phase = particle_phase + protein
        phase += sigma * WATER_POTENTIAL_V * ice_balls
        attenuation += ice_balls / cfg.inelastic_mfp + ice_crystal * (rng.uniform(0.1, 0.5) * bragg)
    phase_t = torch.from_numpy(phase + particle_phase)
    particle_t = torch.from_numpy(particle_phase)
    attenuation_t = torch.from_numpy(attenuation) + optics.absorption(
        particle_t, cfg.amplitude_contrast
    )
    inner = (slice(margin, -margin), slice(margin, -margin))
    ice = float(t[inner].mean())
    # The share of the image under contaminant (>100 Å of extra ice), as a curation label aid.
    contaminated = float((extra[inner] > 100).mean())
    # Region truth (REGION_CLEAR/CONTAMINATION/CARBON): contamination lies on top of carbon.
    regions = np.zeros(extra[inner].shape, np.int8)
    if carbon is not None:
        regions[carbon[inner] > 0.5] = REGION_CARBON
    regions[extra[inner] > 100] = REGION_CONTAMINATION
    return phase_t, attenuation_t, layout, ice, contaminated, regions, particle_phase, junk_table


def _n_particles(cfg: SimulateConfig, used: list[Projector], margin: int) -> int:
    """Particles to place on the canvas so that about the target number lands in the image."""
    r = float(np.mean([p.radius_px for p in used]))
    n: float
    if cfg.particles_per_micrograph is not None:
        n = cfg.particles_per_micrograph
    else:
        n = cfg.coverage * cfg.size**2 / (math.pi * r**2)
    return round(n * ((cfg.size + r) / cfg.size) ** 2)


def _anchor_images(cfg, phase, attenuation, transfer, blur, signal=None):
    """Expected intensity (relative to vacuum) at a few exposures, and those exposures (e⁻/Å²).

    Radiation damage changes slowly with exposure, so frames interpolate linearly between
    these anchors instead of forming one image per frame.
    """
    qy, qx = frequency_grid_torch(tuple(phase.shape), cfg.pixel_size)
    q = torch.sqrt(qy**2 + qx**2)
    # The camera's MTF (classic: one K2-like curve; realistic: the drawn camera, interpolation
    # and binning, see detector.realistic_signal_transfer).
    mtf = (detector.detector_mtf(tuple(phase.shape)) if signal is None else signal) * blur
    exposures = (np.arange(cfg.frames) + 0.5) * cfg.dose / cfg.frames
    anchors = np.linspace(
        exposures[0], exposures[-1], min(cfg.frames, max(2, math.ceil(cfg.frames / 10)))
    )
    spec = torch.fft.rfft2(phase)
    images = []
    for exposure in anchors:
        damaged = torch.fft.irfft2(spec * detector.damage_filter(q, float(exposure)), s=phase.shape)
        intensity = optics.form_image(damaged, attenuation, transfer)
        images.append(torch.fft.irfft2(torch.fft.rfft2(intensity) * mtf, s=phase.shape))
    return images, anchors, exposures


def _interp(images, anchors, exposure):
    j = int(np.clip(np.searchsorted(anchors, exposure) - 1, 0, len(anchors) - 2))
    w = float((exposure - anchors[j]) / (anchors[j + 1] - anchors[j]))
    return images[j] * (1 - w) + images[j + 1] * w


def _window(counts: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return counts[top : top + size, left : left + size]


def _frames_with_movie(
    rng, cfg, images, anchors, exposures, shifts, local, margin, sensitivity, halves=None
):
    """Poisson counts frame by frame: the movie (detector frame) and the aligned parity sums.
    ``halves``, a list of two [size, size] float64 arrays, receives each parity's expectation."""
    size, frames = cfg.size, cfg.frames
    canvas = tuple(images[0].shape)
    progress = detector.motion_progress(frames)
    warper = detector.Warper(canvas, local)
    movie = np.zeros((frames, size, size), np.uint8)
    sums = [np.zeros((size, size), np.float64), np.zeros((size, size), np.float64)]
    clean = np.zeros((size, size), np.float64)
    for k in range(frames):
        whole = np.round(shifts[k]).astype(int)
        top, left = margin - whole[1], margin - whole[0]  # detector frame k on the canvas
        expected = warper(_interp(images, anchors, exposures[k]), shifts[k] - whole, progress[k])
        lam = (expected.clamp_(min=0) * cfg.dose_per_frame_px).numpy()
        rate = lam
        if sensitivity is not None:
            rate = lam.copy()
            rate[top : top + size, left : left + size] *= sensitivity
        counts = detector.poisson(rng, rate).reshape(canvas)
        if counts.dtype == np.int16 and movie.dtype == np.uint8:  # a frame above 255 counts
            movie = movie.astype(np.int16)
        movie[k] = _window(counts, top, left, size)
        aligned = _window(counts, margin, margin, size)
        if sensitivity is not None:
            # Gain reference applied where the aligned window saw the real detector.
            gain = np.ones(canvas, np.float32)
            gain[top : top + size, left : left + size] = 1.0 / sensitivity
            aligned = aligned * _window(gain, margin, margin, size)
        sums[k % 2] += aligned
        clean += _window(lam, margin, margin, size)
        if halves is not None:
            halves[k % 2] += _window(lam, margin, margin, size)
    return movie, sums, clean


def _frames_without_movie(rng, cfg, images, anchors, exposures, shifts, local, margin):
    """Parity sums drawn directly: a sum of independent Poisson frames is Poisson with the
    summed mean. Sub-pixel drift is applied exactly in Fourier space; local motion with the
    mean displacement of each half."""
    size, frames = cfg.size, cfg.frames
    canvas = tuple(images[0].shape)
    progress = detector.motion_progress(frames)
    specs = [torch.fft.rfft2(img) for img in images]
    fy = torch.fft.fftfreq(canvas[0], dtype=torch.float64)
    fx = torch.fft.rfftfreq(canvas[1], dtype=torch.float64)
    sums, clean, lams = [], np.zeros((size, size), np.float64), []
    for parity in (0, 1):
        ks = np.arange(parity, frames, 2)
        frac = shifts[ks] - np.round(shifts[ks])
        ry = torch.exp(-2j * math.pi * torch.from_numpy(frac[:, 1])[:, None] * fy[None, :])
        rx = torch.exp(-2j * math.pi * torch.from_numpy(frac[:, 0])[:, None] * fx[None, :])
        total = torch.zeros_like(specs[0])
        for a in range(len(anchors)):
            weights = torch.from_numpy(_anchor_weights(anchors, exposures[ks], a)).to(
                torch.complex128
            )
            ramp = (ry * weights[:, None]).T @ rx  # Σ_k w_k exp(-2πi q·frac_k), [H, W/2+1]
            total += specs[a] * ramp.to(torch.complex64)
        expected = torch.fft.irfft2(total, s=canvas) * cfg.dose_per_frame_px
        expected = detector.Warper(canvas, local)(expected, np.zeros(2), float(progress[ks].mean()))
        lam = _window(expected.clamp(min=0).numpy(), margin, margin, size)
        sums.append(detector.poisson(rng, lam).reshape(size, size).astype(np.float64))
        clean += lam
        lams.append(lam)
    return sums, clean, lams


def _anchor_weights(anchors: np.ndarray, exposures: np.ndarray, a: int) -> np.ndarray:
    """Linear-interpolation weight of anchor ``a`` for each exposure (same rule as _interp)."""
    j = np.clip(np.searchsorted(anchors, exposures) - 1, 0, len(anchors) - 2)
    w = (exposures - anchors[j]) / (anchors[j + 1] - anchors[j])
    return np.where(j == a, 1 - w, 0.0) + np.where(j + 1 == a, w, 0.0)


def simulate_micrograph(
    cfg: SimulateConfig,
    index: int,
    projectors: list[Projector],
    is_bad: bool = False,
    sensitivity: np.ndarray | None = None,
    keep_particle_phase: bool = False,
) -> Micrograph:
    """Simulate micrograph ``index`` (0-based) of the dataset described by ``cfg``.

    Args:
        projectors: one per structure (phantoms or files); the plan picks the species.
        is_bad: make it one of the bad classes (see :mod:`draco_em.simulate.bad`).
        sensitivity: [size, size] detector gain sensitivity, or None for a uniform detector.
        keep_particle_phase: also return the particles-only phase image (for tests/figures).
    """
    rng = np.random.default_rng([cfg.seed, index])
    draw = None
    if cfg.realism is not None:
        # Realistic preset: this micrograph's imaging and particle ranges, drawn first from its
        # own stream; the physics below then runs with them (classic draws nothing here).
        draw = presets.draw_imaging(rng, cfg.realism, cfg.pixel_size, cfg.size)
        cfg = per_micrograph_config(cfg, draw)
    plan = bad.draw_plan(rng, cfg, is_bad, len(projectors))
    lens = optics.draw_optics(rng, cfg)
    shifts = detector.drift_trajectory(
        rng, cfg.frames, cfg.drift_per_frame / cfg.pixel_size, heavy=plan.heavy_drift
    )
    local_rms = cfg.local_motion / cfg.pixel_size * (5 if plan.heavy_drift else 1)
    margin = int(np.ceil(np.abs(shifts).max() + 4 * local_rms)) + 8
    canvas = (cfg.size + 2 * margin, cfg.size + 2 * margin)
    phase, attenuation, layout, ice, contaminated, regions, particle_phase, junk_table = _specimen(
        rng, cfg, plan, canvas, margin, projectors, draw
    )
    particle_phase = (
        _window(particle_phase, margin, margin, cfg.size) if keep_particle_phase else None
    )
    transfer = optics.lens_transfer(lens, canvas, cfg.pixel_size)
    blur = _motion_blur(canvas, shifts) if plan.heavy_drift else 1.0
    signal = None
    if draw is not None:
        signal = detector.realistic_signal_transfer(
            canvas, draw.camera, draw.interpolation, draw.binning
        )
    images, anchors, exposures = _anchor_images(cfg, phase, attenuation, transfer, blur, signal)
    del phase, attenuation, transfer
    local = detector.local_motion_field(rng, canvas, local_rms)
    movie = None
    halves = None if draw is None else [np.zeros((cfg.size, cfg.size)) for _ in range(2)]
    if cfg.movies:
        movie, sums, clean = _frames_with_movie(
            rng, cfg, images, anchors, exposures, shifts, local, margin, sensitivity, halves
        )
    else:
        sums, clean, lams = _frames_without_movie(
            rng, cfg, images, anchors, exposures, shifts, local, margin
        )
        halves = None if draw is None else lams
    odd, even = sums[0].astype(np.float32), sums[1].astype(np.float32)
    clean32 = clean.astype(np.float32)
    if draw is not None:
        odd, even, clean32 = _as_stored(odd, even, clean, halves, draw)
    layout["x"] -= margin
    layout["y"] -= margin
    inside = (
        (layout["x"] >= 0)
        & (layout["x"] < cfg.size)
        & (layout["y"] >= 0)
        & (layout["y"] < cfg.size)
    )
    if junk_table is not None:
        junk_table = _inside(junk_table, margin, cfg.size)
    return Micrograph(
        name=cfg.micrograph_name(index),
        full=even + odd,
        even=even,
        odd=odd,
        clean=clean32,
        movie=movie,
        particles=layout[inside].reset_index(drop=True),
        shifts=shifts,
        optics=lens,
        plan=plan,
        ice_thickness=ice,
        contaminated_area=contaminated,
        regions=regions,
        particle_phase=particle_phase,
        imaging=draw,
        junk=junk_table,
        dose=cfg.dose,
    )


def _inside(table: pd.DataFrame, margin: int, size: int) -> pd.DataFrame:
    """Rows of a canvas-pixel table whose centre lies in the image, in image pixels."""
    table = table.assign(x=table["x"] - margin, y=table["y"] - margin)
    keep = (table["x"] >= 0) & (table["x"] < size) & (table["y"] >= 0) & (table["y"] < size)
    return table[keep].reset_index(drop=True)


def _as_stored(odd, even, clean, halves, draw):
    """Half sums and clean image as motion correction and the camera leave them (realistic).

    The counting noise of each half is given the camera's noise power spectrum and the
    interpolation's low-pass (:func:`detector.realistic_noise_transfer`; the mean is kept, so
    ``clean`` stays the exact expectation), then, for ``draw.inverted``, the contrast is stored
    inverted (protein white) about the mean m of the full sum: ``v -> 2m - v`` for the full sum
    and the clean image, ``m - v`` for each half, so ``EVN + ODD`` is still the full sum.
    """
    h = detector.realistic_noise_transfer(odd.shape, draw.camera, draw.interpolation, draw.binning)
    odd = detector.colour_noise(odd, halves[0].astype(np.float32), h)
    even = detector.colour_noise(even, halves[1].astype(np.float32), h)
    clean32 = clean.astype(np.float32)
    if draw.inverted:
        m = np.float32(clean.mean())
        odd, even, clean32 = m - odd, m - even, 2 * m - clean32
    return odd, even, clean32


def _motion_blur(canvas: tuple[int, int], shifts: np.ndarray) -> torch.Tensor:
    """Blur of motion *within* a frame (a line of the mean per-frame step), on the rfft2 grid."""
    step = np.abs(np.diff(shifts, axis=0)).mean(axis=0) if len(shifts) > 1 else np.zeros(2)
    fy, fx = frequency_grid_torch(canvas)
    return torch.sinc(fy * float(step[1]) + fx * float(step[0]))
