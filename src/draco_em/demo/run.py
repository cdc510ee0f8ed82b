"""``draco demo``: simulate → denoise with the bundled model → score against the truth.

1. Simulate one micrograph of the built-in phantoms (no files needed) with ``draco simulate``.
2. Denoise it with the model shipped in the package (``draco denoise`` engine).
3. Score raw, a 20 Å Gaussian low-pass (cryoSPARC's display filter), DRACO, DRACO with
   ``--blend-halves`` (the micrograph's odd/even halves denoised and blended with their sum) and
   with ``--pseudo-halves`` (the same from the sum alone) against the clean image with the same
   scorer as ``draco evaluate denoise``.
4. Write a side-by-side PNG and ``metrics.json`` and print a short table.

It runs in well under 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from draco_em.evaluate.denoise import format_table, score_image
from draco_em.evaluate.results import write_results
from draco_em.imaging.filters import gaussian_lowpass
from draco_em.infer.denoise import Denoiser
from draco_em.infer.halves_blend import blend_halves
from draco_em.infer.pseudo_halves import pseudo_halves
from draco_em.io.coords import read_coords
from draco_em.io.halves import find_halves
from draco_em.io.mrc import read_image, write_mrc
from draco_em.io.preview import downsample_for_view, to_uint8
from draco_em.model.weights import BUNDLED_DENOISER, load_model
from draco_em.runtime import resolve_device
from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.run import run_simulation


class DemoConfig(BaseModel):
    """Options of ``draco demo``."""

    outdir: Path = Field(Path("demo_output"), description="Output folder.")
    size: int = Field(1024, ge=256, description="Edge of the simulated micrograph in px.")
    pixel_size: float = Field(1.0, gt=0, description="Pixel size of the simulation in Å.")
    dose: float = Field(40.0, gt=0, description="Total exposure in e⁻/Å².")
    seed: int = Field(7, ge=0, description="Simulation seed.")
    weights: str = Field("bundled", description="Model to demo.")
    device: str = Field("auto", description="auto, cpu or cuda.")
    shifts: int = Field(4, description="Patch-grid offsets averaged (draco denoise --shifts).")
    progress: bool = Field(True, description="Show progress bars.")


def _simulate(cfg: DemoConfig) -> tuple[Path, Path, Path]:
    sim = SimulateConfig(  # classic: the demo's fixed dose and its measured numbers
        preset="classic", outdir=cfg.outdir / "simulated", n_micrographs=1, size=cfg.size,
        pixel_size=cfg.pixel_size, dose=cfg.dose, seed=cfg.seed, movies=False, bad_fraction=0.0,
    )  # fmt: skip
    run_simulation(sim, progress=cfg.progress)
    mic = sorted((sim.outdir / "micrographs").glob("*.mrc"))
    raw = next(p for p in mic if not p.stem.endswith(("_EVN", "_ODD")))
    return raw, sim.outdir / "clean" / raw.name, sim.outdir / "coordinates" / f"{raw.stem}.star"


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo; returns the metrics written to ``OUTDIR/metrics.json``."""
    t0 = time.perf_counter()
    raw_path, clean_path, coord_path = _simulate(cfg)
    t_sim = time.perf_counter() - t0
    raw, px = read_image(raw_path)
    clean, _ = read_image(clean_path)
    device = resolve_device(cfg.device)
    model, _, meta = load_model(cfg.weights, device=device, bundled=BUNDLED_DENOISER)
    t1 = time.perf_counter()
    denoiser = Denoiser(model, meta.get("pixel_size"), device=device, shifts=cfg.shifts)
    denoised, _ = denoiser.denoise_image(raw, px)
    t_den = time.perf_counter() - t1
    write_mrc(cfg.outdir / "denoised" / raw_path.name, denoised, px or 1.0)
    t2 = time.perf_counter()
    halves = [read_image(p)[0] for p in find_halves(raw_path) or ()]
    blended = None
    if halves:  # the recipe docs/denoising.md recommends for data with halves
        den = [denoiser.denoise_image(h, px)[0] for h in halves]
        blended = blend_halves(den[0], den[1], halves[0], halves[1])[0]
        write_mrc(cfg.outdir / "denoised_blend_halves" / raw_path.name, blended, px or 1.0)
    t_blend = time.perf_counter() - t2
    t3 = time.perf_counter()  # the same blend without halves (as draco denoise seeds it)
    made = pseudo_halves(raw, f"{raw_path.stem}:0")[:2]
    den = [denoiser.denoise_image(h, px)[0] for h in made]
    pseudo = blend_halves(den[0], den[1], made[0], made[1])[0]
    write_mrc(cfg.outdir / "denoised_pseudo_halves" / raw_path.name, pseudo, px or 1.0)
    t_pseudo = time.perf_counter() - t3
    lowpass = gaussian_lowpass(raw, px or 1.0, 20.0)
    coords = read_coords(coord_path)[["x", "y"]].to_numpy(dtype=np.float64)
    # The phantoms are 100–300 Å across: 40 Å disks sit inside one; backgrounds keep 190 Å clear.
    radius, exclusion = 40.0 / (px or 1.0), 190.0 / (px or 1.0)
    images = {"raw": raw, "lowpass_20A": lowpass, "draco": denoised}
    if blended is not None:
        images["draco_blend_halves"] = blended
    images["draco_pseudo_halves"] = pseudo
    scores = {k: score_image(v, clean, coords, radius, 20, exclusion) for k, v in images.items()}
    metrics = {
        "micrograph": str(raw_path), "size": list(raw.shape), "pixel_size": px,
        "model": cfg.weights, "model_pixel_size": meta.get("pixel_size"),
        "seconds": {"simulate": t_sim, "denoise": t_den,
                    **({"blend_halves": t_blend} if blended is not None else {}),
                    "pseudo_halves": t_pseudo,
                    "total": time.perf_counter() - t0},
        "scores": scores,
    }  # fmt: skip
    write_results(cfg.outdir / "metrics.json", metrics)  # atomic, strict JSON
    _figure(cfg.outdir / "demo.png", {**images, "clean": clean}, scores)
    return metrics


def _figure(path: Path, images: dict[str, np.ndarray], scores: dict[str, dict]) -> None:
    """Side-by-side panels (full view + a 4× zoomed corner), titled with PSNR/SSIM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(images), figsize=(4 * len(images), 8.4))
    for col, (name, img) in enumerate(images.items()):
        zoom = img[: img.shape[0] // 4, : img.shape[1] // 4]
        axes[0, col].imshow(to_uint8(downsample_for_view(img, 512)), cmap="gray")
        axes[1, col].imshow(to_uint8(zoom), cmap="gray")
        s = scores.get(name)
        title = name if s is None else f"{name}\nPSNR {s['psnr_db']:.2f} dB, SSIM {s['ssim']:.3f}"
        axes[0, col].set_title(title, fontsize=10)
        axes[1, col].set_title("top-left quarter", fontsize=8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary_table(metrics: dict) -> str:
    """The table ``draco demo`` prints."""
    table = format_table({k: {"mean": v} for k, v in metrics["scores"].items()})
    secs = metrics["seconds"]
    blend = f", --blend-halves {secs['blend_halves']:.1f} s" if "blend_halves" in secs else ""
    blend += f", --pseudo-halves {secs['pseudo_halves']:.1f} s" if "pseudo_halves" in secs else ""
    return f"{table}\n(simulate {secs['simulate']:.1f} s, denoise {secs['denoise']:.1f} s{blend})"


def load_metrics(outdir: Path) -> dict:
    """Read a finished demo's metrics.json."""
    return json.loads((outdir / "metrics.json").read_text())
