"""Procedural protein-like phantoms: the particles used when no structure file is given.

Each phantom is a symmetric assembly (C1–C7, D2–D7, T or O, via scipy's point groups) of
ellipsoidal domains, 100–300 Å across, with internal density texture (a band-passed random field
at 5–15 Å, the scale of secondary-structure elements) and a few solvent channels. The density
is scaled like :func:`draco_em.simulate.potential.map_structure`: a mean contrast of
``PROTEIN_CONTRAST_V`` against ice inside the molecule, so phantoms and real structures give
comparable image contrast.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from draco_em.simulate.potential import (
    PROTEIN_CONTRAST_V,
    Structure,
    _fourier_shift_3d,
    _smooth,
    box_size,
    interaction_constant,
)

#: Largest phantom box in voxels; bigger phantoms use coarser voxels (an integer multiple).
MAX_BOX = 96
SYMMETRIES = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "D2", "D3", "D4", "D5", "D7", "T", "O")


def symmetry_rotations(symmetry: str) -> np.ndarray:
    """Rotation matrices [n, 3, 3] of a point group (``C<n>``, ``D<n>``, ``T``, ``O``)."""
    if symmetry == "C1":
        return np.eye(3)[None]
    return Rotation.create_group(symmetry).as_matrix()


def _domains(rng: np.random.Generator, diameter: float, symmetry: str) -> list[tuple]:
    """Ellipsoidal domains (centre Å [3], rotation [3, 3], semi-axes Å [3]) of one phantom."""
    group = symmetry_rotations(symmetry)
    n_unit = int(rng.integers(1, 4)) if len(group) <= 12 else int(rng.integers(1, 3))
    # Bigger groups get smaller subunits so that the assembly stays within the diameter.
    size = diameter / 2 * (0.55 if len(group) == 1 else 0.9 / len(group) ** (1 / 3))
    unit = []
    for _ in range(n_unit):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        r = diameter / 2 * rng.uniform(0.0 if len(group) == 1 else 0.35, 0.62)
        axes = size * rng.uniform(0.45, 0.85, size=3)
        unit.append((direction * r, Rotation.random(random_state=rng).as_matrix(), axes))
    return [(g @ c, g @ rot, axes) for g in group for c, rot, axes in unit]


def _render(domains: list[tuple], d: int, voxel_size: float) -> np.ndarray:
    """Union of soft ellipsoids on a [d, d, d] grid (values 0..1), each in its bounding box."""
    occupancy = np.zeros((d, d, d))
    for centre, rot, axes in domains:
        c = centre[::-1] / voxel_size + d // 2  # (z, y, x) voxel position
        reach = axes.max() * 1.3 / voxel_size + 2
        lo = np.clip(np.floor(c - reach).astype(int), 0, d)
        hi = np.clip(np.ceil(c + reach).astype(int) + 1, 0, d)
        if (hi <= lo).any():
            continue
        zz, yy, xx = np.meshgrid(*(np.arange(lo[i], hi[i]) for i in range(3)), indexing="ij")
        pts = (np.stack([xx, yy, zz], -1) - d // 2) * voxel_size - centre  # (x, y, z) Å
        q = (((pts @ rot) / axes) ** 2).sum(axis=-1)  # in the ellipsoid's own frame
        soft = 1 / (1 + np.exp(np.minimum((q - 1) * 12, 50)))
        view = occupancy[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, soft, out=view)
    return occupancy


def _texture(rng: np.random.Generator, d: int, voxel_size: float) -> np.ndarray:
    """Band-passed Gaussian random field (5–15 Å features), unit standard deviation."""
    noise = rng.normal(size=(d, d, d))
    fine = _smooth(noise, 2.5 / voxel_size) - _smooth(noise, 7.0 / voxel_size)
    return fine / max(fine.std(), 1e-12)


def make_phantom(
    rng: np.random.Generator, pixel_size: float, voltage: float = 300.0, name: str = "phantom"
) -> Structure:
    """One random phantom as a phase-per-voxel :class:`Structure` (see module docstring).

    Args:
        rng: source of the shape, size (100–300 Å), symmetry and texture.
        pixel_size: micrograph pixel size in Å; the voxel size is an integer multiple of it.
        voltage: kV, for the interaction constant.
        name: name recorded with its particles; the symmetry and size are appended.
    """
    diameter = float(rng.uniform(100, 300))
    symmetry = str(rng.choice(SYMMETRIES))
    factor = max(1, math.ceil(box_size(diameter / 2, pixel_size) / MAX_BOX))
    voxel_size = pixel_size * factor
    d = box_size(diameter / 2 + 8, voxel_size)
    domains = _domains(rng, diameter, symmetry)
    occupancy = _render(domains, d, voxel_size)
    # Texture: density varies ±35 % inside, and a few low-density channels cross the molecule.
    density = occupancy * np.clip(1 + 0.35 * _texture(rng, d, voxel_size), 0.2, None)
    density = _smooth(density, 1.0)
    inside = occupancy > 0.5
    weights = np.clip(density, 0, None)
    com = (
        np.array(
            [
                (weights.sum(axis=tuple(j for j in range(3) if j != i)) * np.arange(d)).sum()
                for i in range(3)
            ]
        )
        / weights.sum()
    )
    density = _fourier_shift_3d(density, d // 2 - com)
    scale = PROTEIN_CONTRAST_V * interaction_constant(voltage) * voxel_size / density[inside].mean()
    radius = float(max(np.linalg.norm(c) + a.max() for c, _, a in domains)) + 2 * voxel_size
    radius = min(radius + float(np.linalg.norm(d // 2 - com)) * voxel_size, d / 2 * voxel_size)
    label = f"{name}_{symmetry}_{round(diameter)}A"
    return Structure(label, (density * scale).astype(np.float32), voxel_size, radius)


def make_phantoms(seed: int, n: int, pixel_size: float, voltage: float = 300.0) -> list[Structure]:
    """``n`` distinct phantoms of one dataset, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 0x9A47])
    return [make_phantom(rng, pixel_size, voltage, name=f"phantom{i:02d}") for i in range(n)]
