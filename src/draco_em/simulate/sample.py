"""The specimen: vitreous ice, its structural noise, carbon film, contamination, particle layout.

Everything here is a map on the *canvas*, the micrograph plus a margin on every side (so that
drifting frames never run out of specimen), in units the optics step consumes:

* phase [H, W] in radians (projected potential × σ_e; Kirkland 2010 §5.2);
* attenuation [H, W], the exponent of the zero-loss intensity transmission: the image is
  multiplied by ``exp(-attenuation)`` (inelastic scattering removed by the energy filter,
  mean free path ``inelastic_mfp``; Rice et al. 2018, Ultramicroscopy 190, 59).

The structural noise of amorphous ice and carbon follows from the projected potential of a
random arrangement of molecules: its power spectrum is ``(σ_e · 47.88 · f(q))² · n · t · S(q)``
with ``f`` the molecular form factor (Peng et al. 1996), ``n`` the number density, ``t`` the
thickness and ``S(q)`` the structure factor, whose first peak at 1/3.7 Å⁻¹ is the "water ring"
of real power spectra (Dubochet et al. 1988, Q. Rev. Biophys. 21, 129).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import scipy.fft
from matplotlib.path import Path as PolygonPath

from draco_em.imaging.fourier import frequency_grid
from draco_em.simulate.potential import FORM_FACTOR_TO_VOLTS, PENG

WATER_PER_A3 = 0.0314  # molecules/Å³ in vitreous ice (0.94 g/cm³)
CARBON_PER_A3 = 0.10  # atoms/Å³ in evaporated amorphous carbon (~2 g/cm³)
CARBON_MFP = 1800.0  # inelastic mean free path of carbon at 300 kV, Å


def form_factor(element: str, q: np.ndarray) -> np.ndarray:
    """Peng (1996) electron form factor in Å at spatial frequency ``q`` (1/Å)."""
    a, b = PENG[element]
    terms = (ai * np.exp(-bi * q**2 / 4) for ai, bi in zip(a, b, strict=True))
    return cast(np.ndarray, sum(terms))  # sum() starts from 0, so mypy sees int | array


def radial_frequency(shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """|q| in 1/Å on the rfft2 grid of an image of ``shape``."""
    fy, fx = frequency_grid(shape, pixel_size)
    return np.sqrt(fy**2 + fx**2)


def colored_noise(
    rng: np.random.Generator, shape: tuple[int, int], amplitude: np.ndarray
) -> np.ndarray:
    """Gaussian field whose rfft2 amplitude is ``amplitude`` × that of unit white noise."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = scipy.fft.rfft2(white) * amplitude
    return scipy.fft.irfft2(spec, s=shape).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], length_px: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``length_px``, made coarse
    (at most 128² samples) and Fourier-interpolated, so it is cheap for any size."""
    cy, cx = (max(8, min(128, math.ceil(n / max(length_px / 4, 1)))) for n in shape)
    coarse = (cy + cy % 2, cx + cx % 2)  # even, so the Nyquist row is unambiguous
    q = radial_frequency(coarse, 1.0)
    scale = length_px * coarse[0] / shape[0]
    field = colored_noise(rng, coarse, np.exp(-2 * (math.pi * scale * q) ** 2))
    field = (field - field.mean()) / max(float(field.std()), 1e-12)
    # Zero-pad the half spectrum (rfft2) to the full shape: band-limited interpolation.
    spec = scipy.fft.rfft2(field)
    big = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex64)
    half = coarse[0] // 2
    cols = min(spec.shape[1], big.shape[1])
    big[:half, :cols] = spec[:half, :cols]
    big[-half:, :cols] = spec[-half:, :cols]
    out = scipy.fft.irfft2(big, s=shape) * (shape[0] * shape[1]) / (coarse[0] * coarse[1])
    return out.astype(np.float32)


def ice_thickness(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    mean: float,
    gradient: float = 0.25,
) -> np.ndarray:
    """Ice thickness map in Å: a slow random undulation (±10 %) and a gradient across the image
    of up to ``gradient`` × the mean (holes are thinner in the middle, meniscus-shaped), never
    below 30 % of the mean."""
    field = smooth_field(rng, shape, 0.35 * max(shape))
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(shape) - 0.5
    t = mean * (1 + 0.10 * field + rng.uniform(0.0, gradient) * ramp)
    return np.maximum(t, 0.3 * mean).astype(np.float32)


def _structure_factor_water(q: np.ndarray) -> np.ndarray:
    """S(q) of amorphous ice: low compressibility at q → 0, first peak at 1/3.7 Å⁻¹."""
    return 1 + 1.3 * np.exp(-((q - 0.27) ** 2) / (2 * 0.03**2)) - 0.94 * np.exp(-((q / 0.15) ** 2))


def _structure_factor_carbon(q: np.ndarray) -> np.ndarray:
    """S(q) of evaporated amorphous carbon: grainy at low q, first peak near 1/2 Å⁻¹."""
    return 1 + 0.8 * np.exp(-((q - 0.5) ** 2) / (2 * 0.06**2)) - 0.5 * np.exp(-((q / 0.1) ** 2))


def structural_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    sigma_e: float,
    kind: str,
    thickness: float,
) -> np.ndarray:
    """Zero-mean phase noise [H, W] (rad) of ``thickness`` Å of amorphous ice or carbon."""
    q = radial_frequency(shape, pixel_size)
    if kind == "ice":
        f = form_factor("O", q) + 2 * form_factor("H", q)
        power = WATER_PER_A3 * thickness * f**2 * _structure_factor_water(q)
    else:
        power = CARBON_PER_A3 * thickness * form_factor("C", q) ** 2 * _structure_factor_carbon(q)
    # Unit white noise has a spectral density of pixel_size² per Å⁻²; scale to `power`.
    amplitude = sigma_e * FORM_FACTOR_TO_VOLTS * np.sqrt(power) / pixel_size
    amplitude[0, 0] = 0.0
    return colored_noise(rng, shape, amplitude.astype(np.float32))


def carbon_mask(
    rng: np.random.Generator, shape: tuple[int, int], pixel_size: float, full: bool
) -> np.ndarray:
    """Carbon film coverage (0..1): all of it, or the outside of a hole edge (arc of a 1–2 µm
    hole) crossing the image, softened over 20 Å."""
    if full:
        return np.ones(shape, np.float32)
    radius = rng.uniform(5000, 10000) / pixel_size  # hole radius, px
    angle = rng.uniform(0, 2 * np.pi)
    depth = rng.uniform(0.15, 0.5) * max(shape)  # how far the carbon reaches in, px
    centre = np.array(shape) / 2 - (radius + depth - max(shape) / 2) * np.array(
        [np.sin(angle), np.cos(angle)]
    )
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dist = np.hypot(yy - centre[0], xx - centre[1]) - radius
    return (1 / (1 + np.exp(-np.clip(dist * pixel_size / 5.0, -50, 50)))).astype(np.float32)


def _polygon_mask(shape, centre, radius, n_sides, rng) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_sides))
    radii = radius * rng.uniform(0.6, 1.0, n_sides)
    verts = np.stack([centre[1] + radii * np.cos(angles), centre[0] + radii * np.sin(angles)], 1)
    y0, y1 = max(0, int(centre[0] - radius - 2)), min(shape[0], int(centre[0] + radius + 3))
    x0, x1 = max(0, int(centre[1] - radius - 2)), min(shape[1], int(centre[1] + radius + 3))
    mask = np.zeros(shape, np.float32)
    if y1 <= y0 or x1 <= x0:
        return mask
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = PolygonPath(verts).contains_points(np.stack([xx.ravel(), yy.ravel()], 1))
    mask[y0:y1, x0:x1] = inside.reshape(yy.shape)
    return mask


def contamination(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    n_crystals: int,
    n_blobs: int,
    big: bool = False,
    crystal_radius: tuple[float, float] = (50.0, 150.0),
    blob_radius: tuple[float, float] = (150.0, 300.0),
    thickness_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Extra ice on the specimen, in Å [H, W], and its crystalline part (0..1) [H, W].

    Ice crystals: sharp-edged polygons (radius in ``crystal_radius``, Å), 100–800 Å thick, or
    300–2000 Å for the contamination class (frost from the transfer); ethane blobs: smooth
    domes (radius in ``blob_radius``), up to 5000 Å thick. ``thickness_scale`` multiplies the
    drawn thickness of the small contaminants (not the contamination class's, ``big``): the
    realistic preset's calibration to real micrographs (``docs/simulator.md``); 1 = classic.
    """
    thickness = np.zeros(shape, np.float32)
    crystal = np.zeros(shape, np.float32)
    # Outside the contamination class no contaminant is wider than ~6 % of the field
    # (≤ ~1 % of its area), whatever the pixel size.
    cap = np.inf if big else 0.06 * min(shape)
    scale = 1.0 if big else thickness_scale
    for _ in range(n_crystals):
        centre = rng.uniform(0, 1, 2) * np.array(shape)
        radius = min(rng.uniform(*crystal_radius) / pixel_size, cap)
        mask = _polygon_mask(shape, centre, radius, int(rng.integers(5, 9)), rng)
        thickness += mask * (rng.uniform(300, 2000) if big else rng.uniform(100, 800) * scale)
        crystal = np.maximum(crystal, mask)
    for _ in range(n_blobs):
        centre = rng.uniform(0, 1, 2) * np.array(shape)
        radius = min(rng.uniform(*blob_radius) / pixel_size, cap)
        if (dome := _dome(shape, centre, radius)) is not None:
            window, profile = dome
            thickness[window] += profile * (rng.uniform(1000, 5000) * scale)
    return thickness, crystal


def _dome(
    shape: tuple[int, int], centre: np.ndarray, radius: float
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """A hemispherical profile ``sqrt(1 - r²/radius²)`` (0..1) on its bounding window of
    ``shape``: (window, profile), or None when the window lies outside the image."""
    y0, y1 = max(0, int(centre[0] - radius)), min(shape[0], int(centre[0] + radius) + 1)
    x0, x1 = max(0, int(centre[1] - radius)), min(shape[1], int(centre[1] + radius) + 1)
    if y1 <= y0 or x1 <= x0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / radius**2
    return (slice(y0, y1), slice(x0, x1)), np.sqrt(np.clip(1 - r2, 0, None))


def debris(
    rng: np.random.Generator, shape: tuple[int, int], pixel_size: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Particle-sized contaminants: extra ice in Å [H, W] and its crystalline part [H, W].

    Real micrographs carry small ice balls and frost crystals about the size of a particle;
    they are dark and roughly round, which is what false picks of general pickers land on.
    60 % are smooth ice balls (domes 60–250 Å across, 200–800 Å thick at the centre), 40 %
    small crystals (polygons 60–250 Å across, 100–500 Å thick).
    """
    thickness = np.zeros(shape, np.float32)
    crystal = np.zeros(shape, np.float32)
    for _ in range(n):
        centre = rng.uniform(0, 1, 2) * np.array(shape)
        radius = rng.uniform(30, 125) / pixel_size
        if rng.random() < 0.6:
            if (dome := _dome(shape, centre, radius)) is not None:
                window, profile = dome
                thickness[window] += profile * rng.uniform(200, 800)
        else:
            mask = _polygon_mask(shape, centre, radius, int(rng.integers(5, 9)), rng)
            thickness += mask * rng.uniform(100, 500)
            crystal = np.maximum(crystal, mask)
    return thickness, crystal
