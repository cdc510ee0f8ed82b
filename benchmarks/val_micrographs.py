"""Whole-micrograph PSNR of models on a run's held-back validation micrographs (docs/model-card.md).

The same split and the same scoring as ``draco pretrain``'s ``val_psnr_mic``: the manifest is
split with the run's validation fraction and seed, every held-back micrograph with a clean image
is denoised whole as ``draco denoise`` does it and scored at its own pixel size. Raw and a 20 Å
Gaussian low-pass are scored beside the models.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/val_micrographs.py --data /work/bundle/all.star \\
        --weights src/draco_em/weights/draco_tiny.safetensors \\
        src/draco_em/weights/draco_denoise_tiny.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from draco_em.evaluate.denoise_metrics import psnr
from draco_em.imaging.filters import gaussian_lowpass
from draco_em.io.mrc import read_image
from draco_em.model.weights import load_model
from draco_em.runtime import resolve_device
from draco_em.train.data import load_manifest, split_train_val
from draco_em.train.engine import evaluate_micrographs
from draco_em.train.stage_model import StageModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the run's manifest")
    ap.add_argument("--weights", nargs="+", required=True, help="weights files to score")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (benchmarks/gpu_recipe.sh)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    _, val = split_train_val(load_manifest(args.data), args.val_fraction, args.seed)
    val = [r for r in val if r.clean is not None]
    lowpass = [
        psnr(gaussian_lowpass(read_image(r.full)[0], r.pixel_size, 20.0), read_image(r.clean)[0])
        for r in val
    ]
    out: dict[str, float] = {"micrographs": len(val), "lowpass_20A": float(np.mean(lowpass))}
    for weights in args.weights:
        model, _, meta = load_model(weights, device)
        # float32 on any device: the CPU's scores are the reference (pretrain's own val_psnr_mic
        # on a GPU runs under bf16 autocast)
        scores = evaluate_micrographs(StageModel(model, "denoise"), val, meta["pixel_size"], device)
        out["raw"] = scores["val_psnr_mic_raw"]
        out[Path(weights).stem] = scores["val_psnr_mic"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
