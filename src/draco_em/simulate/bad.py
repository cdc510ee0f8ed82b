"""What goes on each micrograph, and the bad-micrograph classes with their labels.

A :class:`MicrographPlan` is drawn first from the micrograph's own random stream; the physics
steps then follow it. Exactly ``round(bad_fraction × n)`` micrographs are bad (chosen by the
seed), each with one reason:

* ``thick_ice``: 100–300 nm of ice; strong inelastic loss and structural noise.
* ``drift``: 15–40× faster drift (blur within each frame ~11–29 Å at the default drift),
  5× the local motion.
* ``empty``: no particles.
* ``contamination``: a large share of the image lost under contamination, in one of two forms
  seen in real data: one or two big ethane/ice blobs with a scatter of small crystals (like the
  ``micrograph_cleaner_em`` micrograph), or a dense frost of large, thick ice crystals.
* ``crystalline_ice``: a crystalline ice layer. Three times in four it is nanocrystalline: grains
  10–45 nm across, each darkened or brightened by its own diffraction contrast, a few strongly
  (dark blots), with thin dark grain boundaries: the mottled texture of real crystalline-ice
  micrographs (MicAssess ``Crystalline_ice``; docs/simulator.md). Otherwise a few large
  hexagonal domains. Either form carries Bragg spots at 3.44/3.67/3.90 Å (the ice Ih
  101/002/100 reflections) where the pixel size samples them.
* ``carbon_only``: the image is all carbon film, no particles.
* ``no_ice``: an empty hole (MicAssess ``Empty_no_ice``): no ice and no particles, so the
  image is flat vacuum at full counts (no inelastic loss, no ice texture); half of them show
  the hole's carbon edge, a few a little frost. Drawn only when asked for
  (``--bad-reasons no_ice`` or ``all``), so that earlier data sets keep their random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from draco_em.simulate.config import DEFAULT_BAD_REASONS, SimulateConfig
from draco_em.simulate.sample import smooth_field

#: d-spacings in Å of the strongest hexagonal-ice reflections (Ih 100, 002, 101).
ICE_BRAGG_SPACINGS = (3.90, 3.67, 3.44)


@dataclass
class MicrographPlan:
    """The choices for one micrograph (all lengths in Å)."""

    reason: str = "none"
    ice_mean: float = 300.0
    carbon: str = "none"  # none | edge | full
    n_crystals: int = 0
    n_blobs: int = 0
    big_contamination: bool = False
    crystalline: bool = False
    heavy_drift: bool = False
    empty: bool = False
    no_ice: bool = False
    species: list[int] = field(default_factory=list)

    crystal_radius: tuple[float, float] = (50.0, 150.0)  # Å
    blob_radius: tuple[float, float] = (150.0, 300.0)  # Å
    n_debris: int = 0  # particle-sized contaminants (SimulateConfig.debris)

    @property
    def quality(self) -> str:
        return "good" if self.reason == "none" else "bad"


def bad_indices(cfg: SimulateConfig) -> set[int]:
    """Indices of the bad micrographs: exactly ``round(bad_fraction × n)``, chosen by the seed."""
    n_bad = round(cfg.bad_fraction * cfg.n_micrographs)
    rng = np.random.default_rng([cfg.seed, 0xBAD])
    return {int(i) for i in rng.choice(cfg.n_micrographs, size=n_bad, replace=False)}


def draw_plan(
    rng: np.random.Generator, cfg: SimulateConfig, bad: bool, n_structures: int
) -> MicrographPlan:
    """Draw the plan of one micrograph; ``bad`` picks one of the bad classes uniformly."""
    plan = MicrographPlan(ice_mean=float(rng.uniform(*cfg.ice_thickness_range)))
    k = min(cfg.species_per_micrograph, n_structures)
    plan.species = sorted(int(i) for i in rng.choice(n_structures, size=k, replace=False))
    if rng.random() < cfg.carbon_probability:
        plan.carbon = "edge"
    # Any micrograph may carry a little frost: a few small crystals, rarely a small blob. It is
    # kept small (``sample.contamination`` caps it at ~1 % of the field each), so that "good"
    # and the other reasons differ from "contamination" in kind, not only in degree.
    if rng.random() < cfg.contamination_probability:
        plan.n_crystals = int(rng.integers(1, 4))
        plan.n_blobs = int(rng.random() < 0.2)
    if cfg.debris > 0:  # drawn only when asked, so other data sets keep their random streams
        plan.n_debris = int(rng.poisson(cfg.debris))
    if not bad:
        return plan
    plan.reason = str(rng.choice(cfg.bad_reasons or DEFAULT_BAD_REASONS))
    if plan.reason == "thick_ice":
        plan.ice_mean = float(rng.uniform(1000, 3000))
    elif plan.reason == "drift":
        plan.heavy_drift = True
    elif plan.reason == "empty":
        plan.empty = True
    elif plan.reason == "contamination":
        plan.big_contamination = True
        if rng.random() < 0.5:  # big blob(s) plus a scatter of small crystals
            plan.n_blobs = int(rng.integers(1, 3))
            plan.blob_radius = (400.0, 1200.0)
            plan.n_crystals = int(rng.integers(5, 26))
            plan.crystal_radius = (40.0, 200.0)
        else:  # dense frost of large crystals
            plan.n_blobs = int(rng.integers(0, 3))
            plan.blob_radius = (300.0, 800.0)
            plan.n_crystals = int(rng.integers(8, 21))
            plan.crystal_radius = (100.0, 600.0)
    elif plan.reason == "crystalline_ice":
        plan.crystalline = True
    elif plan.reason == "carbon_only":
        plan.carbon, plan.empty = "full", True
    elif plan.reason == "no_ice":
        plan.no_ice, plan.empty = True, True
        plan.carbon = "edge" if rng.random() < 0.5 else "none"
    return plan


def crystalline_ice(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    ice_mean: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase [H, W] (rad) and attenuation [H, W] of a crystalline ice layer.

    Three in four draws are nanocrystalline ice (:func:`_ice_grains`), the rest a few large
    hexagonal domains (a Voronoi-like partition of a smooth field, 3–6 per image). Every grain
    or domain is a hexagonal lattice seen along its c axis: three cosine gratings 60° apart at
    one Bragg spacing, whose phase amplitude grows with the ice thickness, and an intensity
    loss from Bragg scattering out of the objective aperture. Spacings finer than 2 px cannot
    be sampled; those grains only change the intensity.
    """
    if rng.random() < 0.75:
        owner, attenuation = _ice_grains(rng, shape, pixel_size)
    else:
        n_domains = int(rng.integers(3, 7))
        scores = np.stack([smooth_field(rng, shape, 0.3 * max(shape)) for _ in range(n_domains)])
        owner = scores.argmax(axis=0)
        attenuation = rng.uniform(0.1, 0.9, n_domains).astype(np.float32)[owner]
    # The lattice phase: grains share six orientations (cheap for thousands of grains).
    n_orient = 6
    grid = None  # pixel coordinates in Å, only where a Bragg spacing can be sampled
    phase = np.zeros(shape, np.float32)
    orient = owner % n_orient
    for d in range(n_orient):
        spacing = float(rng.choice(ICE_BRAGG_SPACINGS))
        amp = 2e-4 * ice_mean * rng.uniform(0.5, 1.5)  # rad; ~0.06 rad for 300 Å of ice
        theta = rng.uniform(0, math.pi / 3)
        if spacing < 2 * pixel_size:
            continue
        if grid is None:
            grid = np.mgrid[: shape[0], : shape[1]].astype(np.float32) * pixel_size
        yy, xx = grid
        mask = orient == d
        grating = np.zeros(shape, np.float32)
        for j in range(3):
            gx, gy = (
                np.cos(theta + j * math.pi / 3) / spacing,
                np.sin(theta + j * math.pi / 3) / spacing,
            )
            grating += np.cos(2 * math.pi * (gx * xx + gy * yy) + rng.uniform(0, 2 * math.pi))
        phase[mask] = amp * grating[mask]
    return phase, attenuation


def _ice_grains(
    rng: np.random.Generator, shape: tuple[int, int], pixel_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Grain index [H, W] and attenuation [H, W] of nanocrystalline ice.

    Grains are the Voronoi cells of Poisson seeds, 100–350 Å across (drawn per micrograph).
    The contrast is scaled per micrograph (0.1–0.4), so the set spans faint to strong mottling;
    the range brackets the band power of real crystalline-ice micrographs (docs/simulator.md).
    Each grain's diffraction contrast depends on how close it is to a Bragg condition: a base
    loss for all, a per-grain change of either sign, and a heavy tail of strongly diffracting
    grains (the dark blots). Grain interiors are softened (bending and strain spread the
    contrast), while the boundaries stay as thin dark lines.
    """
    grain_px = float(rng.uniform(100.0, 350.0)) / pixel_size
    # Ownership on a grid coarse enough to stay cheap at 4096², fine enough for the grains.
    step = max(1, int(grain_px // 24))
    gh, gw = -(-shape[0] // step), -(-shape[1] // step)
    n_seeds = max(4, int(rng.poisson(shape[0] * shape[1] / grain_px**2)))
    seeds = rng.uniform(0, 1, (n_seeds, 2)) * np.array([gh, gw])
    grid = np.moveaxis(np.mgrid[:gh, :gw], 0, -1).reshape(-1, 2) + 0.5
    dist, idx = cKDTree(seeds).query(grid, k=2)
    owner = idx[:, 0].reshape(gh, gw)
    # A boundary where the two nearest seeds are almost equally far (≈ 15 Å wide).
    width = max(15.0 / (pixel_size * step), 0.5)
    edge = ((dist[:, 1] - dist[:, 0]) < width).reshape(gh, gw)
    owner = np.repeat(np.repeat(owner, step, 0), step, 1)[: shape[0], : shape[1]]
    edge = np.repeat(np.repeat(edge, step, 0), step, 1)[: shape[0], : shape[1]]
    # Contrast strength per micrograph: from faint mottling to strongly diffracting ice.
    strength = rng.uniform(0.1, 0.4)
    base = rng.uniform(0.05, 0.2)
    per_grain = rng.normal(0.0, rng.uniform(0.04, 0.12), n_seeds)
    strong = rng.random(n_seeds) < rng.uniform(0.03, 0.15)
    per_grain[strong] += rng.uniform(0.2, 0.6, int(strong.sum()))
    att = (strength * per_grain).astype(np.float32)[owner]
    att = gaussian_filter(att, grain_px / 5.0, mode="reflect")
    att += gaussian_filter(edge.astype(np.float32), 0.5) * strength * rng.uniform(0.05, 0.2)
    return owner, np.clip(base + att, 0.0, None).astype(np.float32)
