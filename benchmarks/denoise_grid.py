"""How visible the denoiser's 16-px patch grid is, at each ``--shifts`` (docs/benchmarks.md).

The decoder predicts every 16×16 patch from its own token (paper Eq. 4), so a step can appear
at each patch border. This measures it the way the eye sees it: the mean absolute difference
between neighbouring pixels *across* patch borders, divided by the same mean between
neighbours *inside* patches, along x and y (1.0: no grid; the raw input gives ≈ 1.0 as a
control). Each micrograph is brought to the model's working pixel size as ``draco denoise``
does, cut into whole non-overlapping tiles (``--tile``, so the tile and patch grids agree and
the overlap blend, which mixes two grids, is left out) and denoised by
:class:`draco_em.infer.denoise.Denoiser` exactly as ``draco denoise --shifts N`` would.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_grid.py MIC [MIC ...] --pixel-size 1.0 \\
        [--shifts 1 2] [--weights bundled] [--tiles 6] [--json OUT.json] [--figure OUT.png]

``--pixel-size`` overrides the header (needed for pictures, which carry none).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from draco_em.infer.denoise import Denoiser
from draco_em.io.mrc import read_image
from draco_em.model.encoder import DENOISE, working_image
from draco_em.model.weights import BUNDLED_DENOISER, load_model
from draco_em.runtime import cpu_has_bf16


def border_ratio(tiles: np.ndarray, patch: int) -> float:
    """Mean |step| across patch borders over the mean |step| inside patches, x and y averaged.

    Args:
        tiles: [B, T, T] images whose patch grid starts at pixel 0 of each tile.
        patch: patch side in px.
    """
    ratios = []
    for axis in (-1, -2):
        step = np.abs(np.diff(tiles.astype(np.float64), axis=axis))  # step k: pixel k → k+1
        at = np.arange(step.shape[axis])
        across = (at + 1) % patch == 0  # k = 15, 31, ...: from one patch into the next
        ratios.append(
            np.take(step, np.flatnonzero(across), axis=axis).mean()
            / np.take(step, np.flatnonzero(~across), axis=axis).mean()
        )
    return float(np.mean(ratios))


def cut_tiles(image: np.ndarray, tile: int, n: int, seed: int) -> np.ndarray:
    """[n, tile, tile]: whole non-overlapping tiles, drawn by ``seed`` among the image's."""
    ny, nx = image.shape[0] // tile, image.shape[1] // tile
    cells = np.random.default_rng(seed).permutation(ny * nx)[:n]
    return np.stack(
        [image[(c // nx) * tile : (c // nx + 1) * tile, (c % nx) * tile : (c % nx + 1) * tile]
         for c in cells]
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--pixel-size", type=float, default=None)
    ap.add_argument("--shifts", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=6, help="tiles per micrograph")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()

    model, _, meta = load_model(args.weights, device=torch.device("cpu"), bundled=BUNDLED_DENOISER)
    patch = model.patch_size
    rows, crops = [], {}
    for i, path in enumerate(args.inputs):
        image, px = read_image(path, args.pixel_size)
        work = working_image(image, px, meta.get("pixel_size"), DENOISE)
        tiles = cut_tiles(work.image, args.tile, args.tiles, args.seed + i)
        row = {"micrograph": path.name, "raw": round(border_ratio(tiles, patch), 3)}
        for s in args.shifts:
            den = Denoiser(model, meta.get("pixel_size"), args.tile, 0, 8,
                           bf16=cpu_has_bf16(), shifts=s)  # fmt: skip
            out = den._run_tiles(tiles)
            row[f"shifts{s}"] = round(border_ratio(out, patch), 3)
            if i == 0:
                crops[s] = out[0][:96, :96]
        crops.setdefault(0, tiles[0][:96, :96])
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "micrograph"]
    summary = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}
    print(json.dumps({"mean": summary}))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean": summary}, indent=1))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(crops), figsize=(3.2 * len(crops), 3.4))
        for ax, (s, crop) in zip(axes, sorted(crops.items()), strict=True):
            lo, hi = np.percentile(crop, (1, 99))
            ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title("input" if s == 0 else f"--shifts {s}")
            ax.set_xticks(np.arange(-0.5, 96, patch))
            ax.set_yticks(np.arange(-0.5, 96, patch))
            ax.tick_params(labelbottom=False, labelleft=False, length=3)
        fig.suptitle(f"{args.inputs[0].name}: 96 px at the working pixel size (ticks: patch grid)")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
