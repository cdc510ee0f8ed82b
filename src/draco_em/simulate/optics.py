"""Image formation: the exit wave of the whole canvas through the objective lens (torch-ctf).

The CTF is applied to the entire micrograph, never per particle box, so delocalised fringes
of particles, carbon edges and contamination spread across the image as they do in a
microscope. The exit wave is ``ψ = exp(-a/2) · exp((i - η) φ)`` with φ the projected phase,
``a`` the inelastic attenuation and ``η = w / sqrt(1 - w²)`` turning the amplitude-contrast
fraction ``w`` into absorption (Wade 1992, Ultramicroscopy 46, 145); the image is
``|F⁻¹[F(ψ) · exp(-iχ) · E]|²`` (Kirkland 2010, Eq. 5.24; not linearised, so thick contamination
gives realistic strong fringes), with χ from ``torch_ctf.calculate_ctf_2d`` (defocus,
astigmatism, Cs, voltage) and the envelope ``E = exp(-B q² / 4)`` for partial coherence.

Sign conventions (tested): torch-ctf's astigmatism angle 0 puts defocus U along x, as RELION's
``_rlnDefocusAngle``; in the weak-phase limit the image is ``1 - 2 φ ⊛ CTF`` with torch-ctf's
real CTF, so protein is dark in underfocus, as in raw micrographs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch_ctf import calculate_ctf_2d


@dataclass
class OpticsParams:
    """Microscope settings of one micrograph.

    Attributes:
        defocus_u, defocus_v: defocus in Å along the major/minor axes (positive = underfocus;
            RELION's ``_rlnDefocusU/V``).
        defocus_angle: angle of U from the x axis in degrees (``_rlnDefocusAngle``).
        voltage: kV. cs: mm. amplitude_contrast: fraction. envelope_bfactor: Å².
    """

    defocus_u: float
    defocus_v: float
    defocus_angle: float
    voltage: float
    cs: float
    amplitude_contrast: float
    envelope_bfactor: float


def draw_optics(rng: np.random.Generator, cfg) -> OpticsParams:
    """Defocus uniform in ``cfg.defocus_range`` (µm), astigmatism up to ``cfg.max_astigmatism``."""
    mean = rng.uniform(*cfg.defocus_range) * 1e4
    astig = rng.uniform(0, cfg.max_astigmatism) * 1e4
    return OpticsParams(
        defocus_u=mean + astig,
        defocus_v=mean - astig,
        defocus_angle=float(rng.uniform(0, 180)),
        voltage=cfg.voltage,
        cs=cfg.cs,
        amplitude_contrast=cfg.amplitude_contrast,
        envelope_bfactor=cfg.envelope_bfactor,
    )


def lens_transfer(params: OpticsParams, shape: tuple[int, int], pixel_size: float) -> torch.Tensor:
    """``exp(-iχ) · E`` on the full (unshifted) fft2 grid, complex64 [H, W]."""
    wave = calculate_ctf_2d(
        defocus=(params.defocus_u + params.defocus_v) / 2e4,
        astigmatism=(params.defocus_u - params.defocus_v) / 2e4,
        astigmatism_angle=params.defocus_angle,
        voltage=params.voltage,
        spherical_aberration=params.cs,
        amplitude_contrast=0.0,  # amplitude contrast enters through the exit wave instead
        phase_shift=0.0,
        pixel_size=pixel_size,
        image_shape=shape,
        rfft=False,
        fftshift=False,
        return_complex_ctf=True,
    )
    fy = torch.fft.fftfreq(shape[0], pixel_size)[:, None]
    fx = torch.fft.fftfreq(shape[1], pixel_size)[None, :]
    envelope = torch.exp(-params.envelope_bfactor * (fy**2 + fx**2) / 4)
    return (wave * envelope).to(torch.complex64)


def absorption(particle_phase: torch.Tensor, amplitude_contrast: float) -> torch.Tensor:
    """Attenuation exponent ``2 η φ`` that gives protein its amplitude contrast ``w``.

    Only the particles get it: ice and carbon lose intensity through ``inelastic_mfp`` instead.
    """
    eta = amplitude_contrast / math.sqrt(1 - amplitude_contrast**2)
    return 2 * eta * particle_phase


def form_image(
    phase: torch.Tensor, attenuation: torch.Tensor, transfer: torch.Tensor
) -> torch.Tensor:
    """Intensity [H, W] relative to vacuum (1 = unattenuated beam) of the exit wave.

    Args:
        phase: [H, W] projected phase in radians.
        attenuation: [H, W] intensity attenuation exponent (transmission ``exp(-attenuation)``),
            including the particles' :func:`absorption`.
        transfer: [H, W] complex lens transfer from :func:`lens_transfer`.
    """
    wave = torch.polar(torch.exp(-attenuation / 2), phase)  # exp(-a/2) · exp(iφ)
    image = torch.fft.ifft2(torch.fft.fft2(wave) * transfer)
    return image.real**2 + image.imag**2
