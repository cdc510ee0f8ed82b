"""Particle layout: non-overlapping positions at a controlled density, aggregates, edge cuts.

Positions are whole canvas pixels, so the ground-truth coordinate of a particle is exactly the
pixel where the centre of mass of its projection was put (see ``Projector``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from draco_em.simulate.projection import (
    Projector,
    preferred_orientations,
    random_orientations,
)


def _fits(pos: np.ndarray, radius: float, placed: np.ndarray, radii: np.ndarray) -> bool:
    if len(placed) == 0:
        return True
    d2 = ((placed - pos) ** 2).sum(axis=1)
    return bool((d2 >= (radii + radius) ** 2).all())


def place_particles(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    margin: int,
    radii_px: list[float],
    n_target: int,
    aggregate_fraction: float,
    forbidden: np.ndarray | None = None,
    carbon: np.ndarray | None = None,
    max_tries: int = 40,
) -> pd.DataFrame:
    """Random sequential placement of discs that never overlap.

    Args:
        canvas: (H, W) of the canvas in pixels; the image is the centre, ``margin`` px inside.
        radii_px: radius in pixels of each species (one species drawn per particle).
        n_target: particles to try to place (fewer when the area is full).
        aggregate_fraction: share of particles put touching an already placed one (clusters).
        forbidden: bool [H, W], True where no particle may sit (thick contamination).
        carbon: [H, W] carbon coverage; particles there are kept with probability 0.15
            (most proteins avoid the carbon, some stick to it).

    Returns:
        One row per particle: ``x``, ``y`` (canvas pixels, integers), ``species``, ``aggregate``.
        Centres lie up to half a radius outside the image, so some particles are cut by the edge.
    """
    h, w = canvas
    placed, radii, rows = np.zeros((0, 2)), np.zeros(0), []
    for _ in range(n_target):
        species = int(rng.integers(len(radii_px)))
        radius = radii_px[species]
        clustered = len(placed) > 0 and rng.random() < aggregate_fraction
        for _ in range(max_tries):
            if clustered:
                anchor = rng.integers(len(placed))
                angle = rng.uniform(0, 2 * np.pi)
                dist = radii[anchor] + radius + 1.0
                pos = np.round(placed[anchor] + dist * np.array([np.sin(angle), np.cos(angle)]))
            else:
                lo = margin - radius / 2
                pos = np.round(rng.uniform([lo, lo], [h - lo, w - lo]))
            iy, ix = int(pos[0]), int(pos[1])
            if not (0 <= iy < h and 0 <= ix < w):
                continue
            if forbidden is not None and forbidden[iy, ix]:
                continue
            if carbon is not None and carbon[iy, ix] > 0.5 and rng.random() > 0.15:
                continue
            if _fits(pos, radius, placed, radii):
                placed = np.vstack([placed, pos])
                radii = np.append(radii, radius)
                rows.append((float(pos[1]), float(pos[0]), species, int(clustered)))
                break
    return pd.DataFrame(rows, columns=["x", "y", "species", "aggregate"])


def render_particles(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    particles: pd.DataFrame,
    projectors: list[Projector],
    preferred_spread: float = 0.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Add the projection of every particle, in a uniformly random orientation, to a canvas.

    ``preferred_spread`` > 0 (degrees): each species instead takes one random preferred view
    and its particles scatter around it (:func:`preferred_orientations`); 0 draws nothing
    more, so classic data sets keep their random streams.

    Returns:
        (phase [H, W] float32 in radians, ``particles`` with ``rot``, ``tilt``, ``psi`` (RELION
        Euler angles, degrees) and ``structure`` (name) added).
    """
    phase = np.zeros(canvas, np.float32)
    particles = particles.copy()
    angles, mats = random_orientations(rng, len(particles))
    if preferred_spread > 0 and len(particles):
        species_of = particles["species"].to_numpy()
        for species in np.unique(species_of):
            sel = np.flatnonzero(species_of == species)
            _, view = random_orientations(rng, 1)
            angles[sel], mats[sel] = preferred_orientations(
                rng, len(sel), view[0], preferred_spread
            )
    particles[["rot", "tilt", "psi"]] = angles if len(particles) else np.zeros((0, 3))
    particles["structure"] = [projectors[s].structure.name for s in particles["species"]]
    for species, proj in enumerate(projectors):
        sel = np.flatnonzero(particles["species"].to_numpy() == species)
        if len(sel) == 0:
            continue
        images = proj.project(mats[sel])
        half = proj.box // 2
        for img, (x, y) in zip(images, particles[["x", "y"]].to_numpy()[sel], strict=True):
            _add_box(phase, img, int(y) - half, int(x) - half)
    return phase, particles


def _add_box(canvas: np.ndarray, box: np.ndarray, top: int, left: int) -> None:
    """canvas[top:top+n, left:left+n] += box, clipped at the canvas border."""
    n = box.shape[0]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + n, canvas.shape[0]), min(left + n, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] += box[y0 - top : y1 - top, x0 - left : x1 - left]
