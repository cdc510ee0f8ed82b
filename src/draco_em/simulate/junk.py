"""Junk: particle-sized objects that are not particles, recorded so pickers learn them as
negatives (the ``junk`` block of ``coordinates/<name>.star``).

Real micrographs carry, besides intact particles, denatured protein (compact amorphous
clumps, often at the air-water interface), small fragments (dissociated subunits, degradation
products) and ice balls (dense, round frozen droplets). Each is drawn here as:

* ``denatured``: a random-walk clump of 6–30 protein spheres (radius 6–15 Å), 40–150 Å across;
* ``fragment``: 1–4 protein spheres (radius 5–12 Å), 20–50 Å across;
* ``ice_ball``: a solid sphere of ice, 30–200 Å across, half of them crystalline (they lose
  intensity to Bragg reflections outside the aperture, like larger crystals do).

Protein spheres have the mean contrast of protein against ice (``PROTEIN_CONTRAST_V``); they are
added to the particle phase, so they get the same amplitude contrast as particles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from draco_em.simulate.potential import PROTEIN_CONTRAST_V
from draco_em.simulate.sample import _dome

JUNK_KINDS = ("denatured", "fragment", "ice_ball")
_KIND_P = (0.4, 0.3, 0.3)
_RADIUS_A = {"denatured": (20.0, 75.0), "fragment": (10.0, 25.0), "ice_ball": (15.0, 100.0)}


def place_junk(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    margin: int,
    pixel_size: float,
    particles: pd.DataFrame,
    particle_radii: np.ndarray,
    n: int,
    max_tries: int = 20,
) -> pd.DataFrame:
    """Positions of ``n`` junk objects that overlap no particle and no other junk.

    Returns:
        One row per placed object: ``x``, ``y`` (canvas px), ``kind``, ``radius`` (Å).
    """
    h, w = canvas
    centres = particles[["y", "x"]].to_numpy(np.float64).reshape(-1, 2)
    radii = np.asarray(particle_radii, np.float64).reshape(-1)
    rows = []
    for _ in range(n):
        kind = str(rng.choice(JUNK_KINDS, p=_KIND_P))
        radius_a = float(rng.uniform(*_RADIUS_A[kind]))
        r = radius_a / pixel_size
        for _ in range(max_tries):
            pos = rng.uniform([margin - r / 2] * 2, [h - margin + r / 2, w - margin + r / 2])
            if len(centres) and (((centres - pos) ** 2).sum(1) < (radii + r) ** 2).any():
                continue
            centres = np.vstack([centres, pos])
            radii = np.append(radii, r)
            rows.append((float(round(pos[1])), float(round(pos[0])), kind, radius_a))
            break
    return pd.DataFrame(rows, columns=["x", "y", "kind", "radius"])


def _sphere(phase: np.ndarray, centre: np.ndarray, radius_px: float, scale: float) -> None:
    """phase += scale × chord length (px) through a sphere: ``2 R sqrt(1 - r²/R²)``."""
    if (dome := _dome(phase.shape, centre, radius_px)) is not None:
        window, profile = dome
        phase[window] += scale * 2 * radius_px * profile


def render_junk(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    pixel_size: float,
    sigma_e: float,
    junk: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Protein phase [H, W] (rad), extra ice [H, W] (Å) and crystalline share [H, W] of junk."""
    protein = np.zeros(canvas, np.float32)
    ice = np.zeros(canvas, np.float32)
    crystal = np.zeros(canvas, np.float32)
    per_px = sigma_e * PROTEIN_CONTRAST_V * pixel_size  # phase per px of protein path
    for row in junk.itertuples(index=False):
        centre = np.array([row.y, row.x], np.float64)
        r = row.radius / pixel_size
        if row.kind == "ice_ball":
            crystalline = rng.random() < 0.5
            if (dome := _dome(canvas, centre, r)) is not None:
                window, profile = dome
                ice[window] += 2 * row.radius * profile  # chord length in Å
                if crystalline:
                    crystal[window] = np.maximum(crystal[window], profile > 0)
            continue
        n_spheres = int(rng.integers(6, 31)) if row.kind == "denatured" else int(rng.integers(1, 5))
        lo, hi = (6.0, 15.0) if row.kind == "denatured" else (5.0, 12.0)
        pos = centre.copy()
        for _ in range(n_spheres):
            rs = min(rng.uniform(lo, hi) / pixel_size, r)
            _sphere(protein, pos, rs, per_px)
            # Random walk inside the object's radius: a compact, irregular clump.
            step = rng.normal(0, rs, 2)
            nxt = pos + step
            if np.hypot(*(nxt - centre)) + rs <= r:
                pos = nxt
    return protein, ice, crystal
