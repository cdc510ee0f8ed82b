"""Projection of potentials in Fourier space (central-slice theorem) with torch-fourier-slice.

A :class:`Projector` does the expensive part of ``torch_fourier_slice.project_3d_to_2d`` (edge
subtraction, 2× zero padding, sinc² correction of the trilinear slice interpolation, the 3D FFT)
once per structure, then extracts central slices for any number of orientations.

Orientation convention: a particle's RELION Euler angles (rot, tilt, psi, degrees, ZYZ) give
``R = scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)``;
``R.as_matrix()`` maps image-frame (x, y, z) to map-frame coordinates, which is the matrix
torch-fourier-slice takes, and its transpose is RELION's ``A`` matrix (Heymann et al. 2005).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation
from torch_fourier_slice import extract_central_slices_rfft_3d
from torch_fourier_slice.volume_utils import compute_cube_face_averages, separable_sinc2_correction

from draco_em.imaging.fourier import fourier_resize
from draco_em.simulate.potential import Structure


class Projector:
    """Projects one :class:`Structure` onto the micrograph pixel grid.

    Attributes:
        structure: the potential.
        box: edge in micrograph pixels of each projection (even); the particle's centre of mass
            sits at pixel ``box // 2``.
        radius_px: particle radius in micrograph pixels.
    """

    def __init__(self, structure: Structure, pixel_size: float, pad_factor: float = 2.0) -> None:
        self.structure = structure
        vol = torch.from_numpy(np.ascontiguousarray(structure.volume, dtype=np.float32))
        d = vol.shape[-1]
        self._d = d
        self._edge = compute_cube_face_averages(vol, n=4)
        vol = vol - self._edge
        self._pad = int((d * (pad_factor - 1.0)) // 2)
        vol = F.pad(vol, [self._pad] * 6)
        self._padded = tuple(vol.shape)
        vol = vol / separable_sinc2_correction(self._padded)
        dft = torch.fft.rfftn(torch.fft.ifftshift(vol, dim=(-3, -2, -1)), dim=(-3, -2, -1))
        self._dft = torch.fft.fftshift(dft, dim=(-3, -2))
        box = round(d * structure.voxel_size / pixel_size)
        self.box = box + box % 2
        self.radius_px = structure.radius / pixel_size

    def project(self, rotations: np.ndarray, batch: int = 64) -> np.ndarray:
        """Projected phase images (radians), [n, box, box] float32, for [n, 3, 3] rotations."""
        out = []
        for start in range(0, len(rotations), batch):
            mats = torch.as_tensor(rotations[start : start + batch], dtype=torch.float32)
            slices = extract_central_slices_rfft_3d(volume_rfft=self._dft, rotation_matrices=mats)
            slices = torch.fft.ifftshift(slices, dim=(-2,))
            images = torch.fft.irfftn(slices, dim=(-2, -1), s=self._padded[-2:])
            images = torch.fft.fftshift(images, dim=(-2, -1))
            if self._pad:
                images = images[..., self._pad : -self._pad, self._pad : -self._pad]
            images = images + self._edge * self._d
            if images.shape[-1] != self.box:
                images = fourier_resize(images, (self.box, self.box))
            images = _recentre(images)
            out.append(images.numpy().astype(np.float32, copy=False))
        if not out:
            return np.zeros((0, self.box, self.box), np.float32)
        return np.concatenate(out)


def _recentre(images: torch.Tensor, max_shift: float = 2.0) -> torch.Tensor:
    """Shift each [n, b, b] projection so its centre of mass is exactly at pixel b // 2.

    The 3D map is centred exactly, but trilinear slice interpolation moves the projected centre
    by up to ~0.2 voxel; this keeps the ground-truth coordinates exact.
    """
    b = images.shape[-1]
    idx = torch.arange(b, dtype=images.dtype)
    total = images.sum(dim=(-2, -1))
    ok = total > 0.05 * images.abs().sum(dim=(-2, -1))  # a clear positive mass to centre on
    cy = (images.sum(dim=-1) * idx).sum(dim=-1) / total.clamp(min=1e-12)
    cx = (images.sum(dim=-2) * idx).sum(dim=-1) / total.clamp(min=1e-12)
    dy = torch.where(ok, (b // 2 - cy).clamp(-max_shift, max_shift), torch.zeros_like(cy))
    dx = torch.where(ok, (b // 2 - cx).clamp(-max_shift, max_shift), torch.zeros_like(cx))
    fy = torch.fft.fftfreq(b)[None, :, None]
    fx = torch.fft.rfftfreq(b)[None, None, :]
    ramp = torch.exp(-2j * torch.pi * (dy[:, None, None] * fy + dx[:, None, None] * fx))
    return torch.fft.irfft2(torch.fft.rfft2(images) * ramp, s=(b, b))


def random_orientations(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` orientations uniform over SO(3).

    Returns:
        (RELION Euler angles [n, 3] (rot, tilt, psi) in degrees, matrices [n, 3, 3]).
    """
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, 3, 3))
    rot = Rotation.random(n, random_state=rng)
    angles = rot.as_euler("ZYZ", degrees=True)
    return angles, Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
