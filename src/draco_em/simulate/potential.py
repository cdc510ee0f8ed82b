"""Scattering potentials of particles: atomic models, MRC density maps, and their disk cache.

Every structure becomes a :class:`Structure`: a cubic volume in **phase per voxel** (radians,
σ_e · ΔV · Δz), so that summing it along the beam gives the projected phase of the particle
*in ice*, i.e. the potential of the protein minus that of the water it displaces.

* Atomic models (PDB/mmCIF, optionally gzipped, read with gemmi): the potential is the sum of
  the atoms' electron form factors (five-Gaussian fits of Peng et al. 1996, Acta Cryst. A52,
  257; International Tables C 4.3.2.2) broadened by each atom's B-factor, rendered on the grid
  in Fourier space (Rullgård et al. 2011, J. Microsc. 243, 234; Vulović et al. 2013, J. Struct.
  Biol. 183, 19). Water displaced by the molecule is subtracted over a solvent-excluded envelope
  whose volume follows from the mass (0.81 Da/Å³, Fischer et al. 2004).
* MRC maps: values are taken as relative density; the map is centred on its centre of mass and
  scaled so that the mean contrast inside its envelope equals that of an atomic model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.mrc import read_mrc, write_mrc
from draco_em.io.validate import validate_image

#: h² / (2π m₀ e) in V·Å²: converts an electron form factor (Å) to a potential.
FORM_FACTOR_TO_VOLTS = 47.878
#: Mean inner potential of vitreous ice in V (Shang & Sigworth 2012, J. Struct. Biol. 180, 10).
WATER_POTENTIAL_V = 4.5
#: Mean contrast of protein against ice in V; used to scale maps and phantoms.
PROTEIN_CONTRAST_V = 2.5
#: Protein density in Da/Å³ (Fischer, Polikarpov & Craievich 2004, Protein Sci. 13, 2825).
PROTEIN_DA_PER_A3 = 0.81
#: Bump this when the potential recipe changes, so cached potentials are recomputed.
POTENTIAL_VERSION = 1

# Peng et al. (1996) elastic form factors f(s) = Σ a_i exp(-b_i s²), s = q / 2 in 1/Å:
# (a_1..a_5 in Å, b_1..b_5 in Å²). Elements not listed fall back to carbon.
PENG = {
    "H": ((0.0349, 0.1201, 0.197, 0.0573, 0.1195), (0.5347, 3.5867, 12.3471, 18.9525, 38.6269)),
    "C": ((0.0893, 0.2563, 0.757, 1.0487, 0.3575), (0.2465, 1.71, 6.4094, 18.6113, 50.2523)),
    "N": ((0.1022, 0.3219, 0.7982, 0.8197, 0.1715), (0.2451, 1.7481, 6.1925, 17.3894, 48.1431)),
    "O": ((0.0974, 0.2921, 0.691, 0.699, 0.2039), (0.2067, 1.3815, 4.6943, 12.7105, 32.4726)),
    "NA": ((0.2142, 0.6853, 0.7692, 1.6589, 1.4482), (0.3334, 2.3446, 10.083, 48.3037, 138.27)),
    "MG": ((0.2314, 0.6866, 0.9677, 2.1882, 1.1339), (0.3278, 2.272, 10.9241, 39.2898, 101.97)),
    "P": ((0.2548, 0.6106, 1.4541, 2.3204, 0.8477), (0.2908, 1.874, 8.5176, 24.3434, 63.2996)),
    "S": ((0.2497, 0.5628, 1.3899, 2.1865, 0.7715), (0.2681, 1.6711, 7.0267, 19.5377, 50.3888)),
    "CL": ((0.2443, 0.5397, 1.3919, 2.0197, 0.6621), (0.2468, 1.5242, 6.1537, 16.6687, 42.3086)),
    "K": ((0.4115, 1.4031, 2.2784, 2.6742, 2.2162), (0.3703, 3.3874, 13.1029, 68.9592, 194.43)),
    "CA": ((0.4054, 1.388, 2.1602, 3.7532, 2.2063), (0.3499, 3.0991, 11.9608, 53.9353, 142.39)),
    "MN": ((0.3796, 1.2094, 1.7815, 2.542, 1.5937), (0.2699, 2.0455, 7.4726, 31.0604, 91.5622)),
    "FE": ((0.3946, 1.2725, 1.7031, 2.314, 1.4795), (0.2717, 2.0443, 7.6007, 29.9714, 86.2265)),
    "CU": ((0.4314, 1.3208, 1.5236, 1.4671, 0.8562), (0.2694, 1.9223, 7.3474, 28.9892, 90.6246)),
    "ZN": ((0.4288, 1.2646, 1.4472, 1.8294, 1.0934), (0.2593, 1.7998, 6.75, 25.586, 73.5284)),
    "SE": ((0.4477, 1.1678, 1.5843, 2.8087, 1.1956), (0.2405, 1.5442, 6.3231, 19.461, 52.0233)),
}


@dataclass
class Structure:
    """A particle ready for projection.

    Attributes:
        name: short name written to the coordinate files (``dracoStructure``).
        volume: [d, d, d] float32, phase per voxel in radians (contrast against ice), with the
            particle's centre of mass at voxel ``d // 2`` on every axis.
        voxel_size: Å per voxel.
        radius: radius in Å of the sphere around the centre that holds the particle.
    """

    name: str
    volume: np.ndarray
    voxel_size: float
    radius: float


def interaction_constant(voltage_kv: float) -> float:
    """σ_e in rad/(V·Å): phase shift per volt and Å of path (relativistic; Kirkland 2010, 5.6)."""
    mc2 = 510.99895e3  # electron rest energy, eV
    ev = voltage_kv * 1e3
    wavelength = 12.2643 / math.sqrt(ev * (1 + 0.97845e-6 * ev))  # Å
    return 2 * math.pi / (wavelength * ev) * (mc2 + ev) / (2 * mc2 + ev)


def _read_atoms(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, float]:
    """Atom positions [n, 3] (x, y, z in Å), element symbols, B-factors (Å²), mass (Da)."""
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - gemmi is a dependency
        raise DracoInputError("reading atomic models needs gemmi (pip install gemmi)") from exc
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:
        raise DracoInputError(f"not a readable PDB/mmCIF model ({exc})", path) from exc
    if len(st) == 0:
        raise DracoInputError("the model holds no atoms", path)
    st.remove_hydrogens()
    xyz, elements, bfac, mass = [], [], [], 0.0
    for chain in st[0]:
        for residue in chain:
            for atom in residue:
                p = atom.pos
                xyz.append((p.x, p.y, p.z))
                elements.append(atom.element.name.upper())
                bfac.append(atom.b_iso)
                mass += atom.element.weight * atom.occ
    if not xyz:
        raise DracoInputError("the model holds no atoms", path)
    # Hydrogens (removed above, absent from most cryo-EM models) add ~8 % of the mass.
    return np.asarray(xyz), elements, np.clip(np.asarray(bfac), 5.0, 300.0), mass * 1.08


def _splat(grid_shape: int, idx: np.ndarray) -> np.ndarray:
    """Trilinear splat of fractional voxel positions [n, 3] (z, y, x) onto a [d, d, d] grid."""
    d = grid_shape
    out = np.zeros(d**3, dtype=np.float64)
    base = np.floor(idx).astype(np.int64)
    frac = idx - base
    for corner in range(8):
        offs = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        w = np.prod(np.where(offs, frac, 1 - frac), axis=1)
        ijk = np.clip(base + offs, 0, d - 1)
        np.add.at(out, (ijk[:, 0] * d + ijk[:, 1]) * d + ijk[:, 2], w)
    return out.reshape(d, d, d)


def _freq_sq(d: int, voxel_size: float) -> np.ndarray:
    """|q|² in 1/Å² on the rfftn grid of a [d, d, d] volume."""
    f = np.fft.fftfreq(d, voxel_size)
    fr = np.fft.rfftfreq(d, voxel_size)
    return f[:, None, None] ** 2 + f[None, :, None] ** 2 + fr[None, None, :] ** 2


def _sinc2_correction(d: int) -> np.ndarray:
    """1 / (trilinear splat transfer) on the rfftn grid: undoes the splat's low-pass."""
    f = np.fft.fftfreq(d)
    fr = np.fft.rfftfreq(d)
    s = np.sinc(f[:, None, None]) * np.sinc(f[None, :, None]) * np.sinc(fr[None, None, :])
    return 1.0 / np.maximum(s**2, 0.05)


def _smooth(volume: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Gaussian blur of a [d, d, d] volume (sigma in voxels), periodic, via the FFT."""
    import scipy.fft

    q2 = _freq_sq(volume.shape[0], 1.0)
    spec = scipy.fft.rfftn(volume, workers=-1) * np.exp(-2 * math.pi**2 * sigma_vox**2 * q2)
    return scipy.fft.irfftn(spec, s=volume.shape, workers=-1)


def solvent_envelope(density: np.ndarray, n_voxels: float, voxel_size: float) -> np.ndarray:
    """Soft [d, d, d] mask (0..1) of the ``n_voxels`` densest voxels of a 2 Å-smoothed map.

    This is the volume from which the particle displaces water (ice).
    """
    smooth = _smooth(density, 2.0 / voxel_size)
    n = int(np.clip(round(n_voxels), 1, smooth.size - 1))
    threshold = np.partition(smooth.ravel(), smooth.size - n)[smooth.size - n]
    hard = (smooth >= threshold).astype(np.float64)
    return np.clip(_smooth(hard, 1.0 / voxel_size), 0.0, 1.0)


def box_size(radius: float, voxel_size: float) -> int:
    """Even cube edge in voxels holding a sphere of ``radius`` Å plus a 6-voxel margin."""
    d = math.ceil(2 * radius / voxel_size) + 6
    return d + (d % 2)


def atomic_structure(path: str | Path, voxel_size: float, voltage: float) -> Structure:
    """Phase-per-voxel volume of an atomic model, solvent-subtracted (module docstring).

    Args:
        path: PDB or mmCIF file, optionally ``.gz``.
        voxel_size: Å per voxel (use the micrograph pixel size, or an integer multiple of it).
        voltage: kV, for the interaction constant.
    """
    import scipy.fft

    path = Path(path)
    xyz, elements, bfac, mass = _read_atoms(path)
    xyz = xyz - xyz.mean(axis=0)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max()) + 3.0
    d = box_size(radius, voxel_size)
    idx = xyz[:, ::-1] / voxel_size + d // 2  # (z, y, x) voxel positions, origin at d // 2
    q2 = _freq_sq(d, voxel_size)
    spec = np.zeros(q2.shape, dtype=np.complex128)
    elements_arr = np.asarray([e if e in PENG else "C" for e in elements])
    # Atoms are grouped by element and B-factor quartile: one splat + FFT per group keeps the
    # per-atom Debye-Waller broadening to within a quartile's spread.
    edges = np.quantile(bfac, [0.25, 0.5, 0.75])
    bins = np.searchsorted(edges, bfac)
    for element in np.unique(elements_arr):
        a, b = (np.asarray(v) for v in PENG[element])
        for k in range(4):
            sel = (elements_arr == element) & (bins == k)
            if not sel.any():
                continue
            b_mean = float(bfac[sel].mean())
            # f(q) = Σ a_i exp(-(b_i + B) q² / 4): Peng's s = q / 2, Debye-Waller exp(-B s²).
            ff = a[:, None, None, None] * np.exp(-(b + b_mean)[:, None, None, None] * q2 / 4)
            spec += scipy.fft.rfftn(_splat(d, idx[sel]), workers=-1) * ff.sum(axis=0)
    spec *= _sinc2_correction(d)
    volts = scipy.fft.irfftn(spec, s=(d, d, d), workers=-1) * FORM_FACTOR_TO_VOLTS / voxel_size**3
    envelope = solvent_envelope(volts, mass / PROTEIN_DA_PER_A3 / voxel_size**3, voxel_size)
    sigma = interaction_constant(voltage)
    phase = sigma * (volts - WATER_POTENTIAL_V * envelope) * voxel_size
    return Structure(_stem(path), phase.astype(np.float32), voxel_size, radius)


def _fourier_shift_3d(volume: np.ndarray, shift_zyx: np.ndarray) -> np.ndarray:
    """Shift a [d, d, d] volume by a sub-voxel (z, y, x) amount, periodically."""
    import scipy.fft

    d = volume.shape[0]
    f = np.fft.fftfreq(d)
    fr = np.fft.rfftfreq(d)
    ramp = np.exp(
        -2j
        * math.pi
        * (
            shift_zyx[0] * f[:, None, None]
            + shift_zyx[1] * f[None, :, None]
            + shift_zyx[2] * fr[None, None, :]
        )
    )
    return scipy.fft.irfftn(scipy.fft.rfftn(volume) * ramp, s=volume.shape)


def _resize_cube(volume: np.ndarray, n_out: int) -> np.ndarray:
    """Fourier crop or pad a [d, d, d] volume to [n, n, n] (keeps values per voxel)."""
    import scipy.fft

    d = volume.shape[0]
    if n_out == d:
        return volume
    spec = np.fft.fftshift(scipy.fft.fftn(volume, workers=-1))
    out = np.zeros((n_out,) * 3, dtype=spec.dtype)
    lo_in, lo_out = max(0, (d - n_out) // 2), max(0, (n_out - d) // 2)
    m = min(d, n_out)
    out[lo_out : lo_out + m, lo_out : lo_out + m, lo_out : lo_out + m] = spec[
        lo_in : lo_in + m, lo_in : lo_in + m, lo_in : lo_in + m
    ]
    vol = scipy.fft.ifftn(np.fft.ifftshift(out), workers=-1).real
    return vol * (n_out / d) ** 3


def map_structure(
    path: str | Path, pixel_size: float, voltage: float, map_pixel_size: float | None = None
) -> Structure:
    """Phase-per-voxel volume of an MRC density map at (an integer multiple of) ``pixel_size``.

    The map is resampled to a voxel size that matches the micrograph grid, centred on the centre
    of mass of its density, and scaled so its envelope (the densest voxels, 10 % of the 99.9th
    percentile) has a mean contrast of ``PROTEIN_CONTRAST_V`` against ice.
    """
    path = Path(path)
    mrc = read_mrc(path, pixel_size=map_pixel_size, ndim=(3,))
    vs = mrc.pixel_size
    if vs is None or (mrc.pixel_size_is_placeholder and map_pixel_size is None and vs == 0):
        raise DracoInputError("the map header has no voxel size; pass --map-pixel-size", path)
    vol = np.asarray(mrc.data, dtype=np.float64)
    # One NaN voxel would spread to every voxel through the Fourier resampling below.
    validate_image(vol, path, "the map", unit="voxel")
    if len(set(vol.shape)) != 1:
        side = max(vol.shape)
        padded = np.zeros((side,) * 3)
        o = [(side - n) // 2 for n in vol.shape]
        padded[
            o[0] : o[0] + vol.shape[0], o[1] : o[1] + vol.shape[1], o[2] : o[2] + vol.shape[2]
        ] = vol
        vol = padded
    faces = np.concatenate(
        [vol[[0, -1]].ravel(), vol[:, [0, -1]].ravel(), vol[..., [0, -1]].ravel()]
    )
    vol = vol - np.median(faces)
    # Resample to the micrograph grid (or an integer multiple when the box would be huge).
    target = pixel_size * max(1, math.ceil(vol.shape[0] * vs / pixel_size / 320))
    n_out = max(8, round(vol.shape[0] * vs / target))
    n_out += n_out % 2
    vol = _resize_cube(vol, n_out)
    peak = float(np.percentile(vol, 99.9))
    if peak <= 0:
        raise DracoInputError("the map has no positive density", path)
    envelope = _smooth(vol, 1.0) > 0.1 * peak
    weights = np.where(envelope, vol, 0.0)
    com = (
        np.array(
            [
                (weights.sum(axis=tuple(j for j in range(3) if j != i)) * np.arange(n_out)).sum()
                for i in range(3)
            ]
        )
        / weights.sum()
    )
    vol = _fourier_shift_3d(vol, n_out // 2 - com)
    envelope = _fourier_shift_3d(envelope.astype(np.float64), n_out // 2 - com) > 0.5
    scale = PROTEIN_CONTRAST_V * interaction_constant(voltage) * target / vol[envelope].mean()
    zz, yy, xx = np.nonzero(envelope)
    radius = float(
        np.sqrt((zz - n_out // 2) ** 2 + (yy - n_out // 2) ** 2 + (xx - n_out // 2) ** 2).max()
    )
    return Structure(_stem(path), (vol * scale).astype(np.float32), target, (radius + 1) * target)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".cif", ".mmcif", ".pdb", ".ent", ".mrc", ".map"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def load_structure(
    path: str | Path,
    pixel_size: float,
    voltage: float,
    cache_dir: Path | None,
    map_pixel_size: float | None = None,
) -> Structure:
    """A structure file as a :class:`Structure`, read from / written to the disk cache.

    MRC maps (``.mrc``, ``.map``) are density maps; anything else is an atomic model. The cache
    key is the file's content hash plus every parameter the potential depends on.
    """
    path = Path(path)
    if not path.is_file():
        raise DracoInputError("structure file not found", path)
    is_map = path.suffix.lower() in (".mrc", ".map")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    key = (
        f"{_stem(path)}-{digest}-{pixel_size:.4f}-{voltage:g}-{map_pixel_size}-v{POTENTIAL_VERSION}"
    )
    cached = None if cache_dir is None else Path(cache_dir) / f"{key}.mrc"
    if cached is not None and cached.exists() and cached.with_suffix(".json").exists():
        meta = json.loads(cached.with_suffix(".json").read_text())
        vol = np.asarray(read_mrc(cached, ndim=(3,)).data, dtype=np.float32)
        return Structure(meta["name"], vol, meta["voxel_size"], meta["radius"])
    if is_map:
        structure = map_structure(path, pixel_size, voltage, map_pixel_size)
    else:
        # Atomic models at the micrograph pixel size; coarser (integer multiple) if huge.
        structure = atomic_structure(path, pixel_size, voltage)
    if cached is not None:
        write_mrc(cached, structure.volume, structure.voxel_size, stack=False)
        meta = {
            "name": structure.name,
            "voxel_size": structure.voxel_size,
            "radius": structure.radius,
            "source": str(path),
        }
        cached.with_suffix(".json").write_text(json.dumps(meta))
    return structure
