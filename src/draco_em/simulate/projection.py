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

from collections import OrderedDict
from collections.abc import Callable, Sequence

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
        vol = torch.from_numpy(np.require(structure.volume, np.float32, ["C", "W"]))
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


def preferred_orientations(
    rng: np.random.Generator, n: int, view: np.ndarray, spread_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` orientations concentrated around one view (preferred orientation on the grid).

    The direction of the map that points along the beam, ``R @ e_z``, scatters around
    ``view @ e_z`` by an angle with a Rayleigh distribution of scale ``spread_deg`` (a 2D
    Gaussian on the sphere), about a uniformly random tilt axis; the in-plane angle is uniform,
    as particles lying on an air-water interface spin freely about the beam.

    Args:
        view: [3, 3] rotation (image to map frame) of the preferred view.

    Returns:
        (RELION Euler angles [n, 3] in degrees, matrices [n, 3, 3]), as :func:`random_orientations`.
    """
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, 3, 3))
    tilt = np.deg2rad(rng.rayleigh(spread_deg, n))
    axis_angle = rng.uniform(0, 2 * np.pi, n)
    axes = np.stack([np.cos(axis_angle), np.sin(axis_angle), np.zeros(n)], 1)
    small = Rotation.from_rotvec(axes * tilt[:, None])
    spin_angle = rng.uniform(0, 2 * np.pi, n)
    spin = Rotation.from_rotvec(np.stack([np.zeros(n), np.zeros(n), spin_angle], 1))
    rot = Rotation.from_matrix(view) * small * spin
    angles = rot.as_euler("ZYZ", degrees=True)
    return angles, Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()


class ProjectorPool(Sequence):
    """Projectors of many structures, built on first use and at most ``keep`` alive at once.

    A library of dozens of structures would not fit in memory as projectors (each holds the
    Fourier transform of its 2×-padded volume); each micrograph uses a few of them.

    Args:
        sources: per structure, a :class:`Structure` or a picklable callable returning one
            (e.g. ``functools.partial(load_structure, path, ...)`` reading the potential cache).
    """

    def __init__(
        self,
        sources: list[Structure | Callable[[], Structure]],
        pixel_size: float,
        keep: int = 6,
    ) -> None:
        self._sources = list(sources)
        self._pixel_size = pixel_size
        self._keep = keep
        self._live: OrderedDict[int, Projector] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index in self._live:
            self._live.move_to_end(index)
            return self._live[index]
        source = self._sources[index]
        structure = source if isinstance(source, Structure) else source()
        projector = Projector(structure, self._pixel_size)
        self._live[index] = projector
        while len(self._live) > self._keep:
            self._live.popitem(last=False)
        return projector
