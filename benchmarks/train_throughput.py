"""Training throughput (crops/s) and peak memory of ``draco pretrain``'s step.

Builds a small synthetic manifest (micrographs with Poisson odd/even sums) in a temp folder and
times optimiser steps of the real pipeline: CropDataset → DataLoader → DracoMAE DRACO loss →
AdamW, after a few warm-up steps. Reports the model step alone (batches already in memory) and
end to end (crops read from memory-mapped MRCs, resized and normalised on the fly).

Examples:
    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py --preset tiny --threads 2
    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py --stage denoise --crop-size 128 \
        --batch-size 32 --overrides '{"depth": 8, "decoder_embed_dim": 192, ...}'
    python benchmarks/train_throughput.py --preset base --device cuda --batch-size 64 --workers 8
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from draco_em.io.mrc import write_mrc
from draco_em.io.star import MicrographTable, write_micrographs_star
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.train.data import CropDataset, ResumableSampler, load_manifest
from draco_em.train.engine import mask_generator
from draco_em.train.optim import build_optimizer


def make_manifest(folder: Path, n: int, size: int, pixel_size: float = 1.0) -> Path:
    """n micrographs [size, size] of smooth signal with independent Poisson odd/even sums."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        lam = 1.0 + np.abs(rng.normal(size=(size // 8, size // 8))).repeat(8, 0).repeat(8, 1)
        odd, even = rng.poisson(lam).astype(np.float32), rng.poisson(lam).astype(np.float32)
        for name, image in (("", odd + even), ("_ODD", odd), ("_EVN", even)):
            write_mrc(folder / f"m{i}{name}.mrc", image, pixel_size)
        rows.append({"rlnMicrographName": f"m{i}.mrc", "rlnOpticsGroup": 1,
                     "dracoMicrographOdd": f"m{i}_ODD.mrc", "dracoMicrographEven": f"m{i}_EVN.mrc",
                     "dracoHasPairs": 1})  # fmt: skip
    optics = pd.DataFrame({"rlnOpticsGroupName": ["g1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [pixel_size]})  # fmt: skip
    star = folder / "micrographs.star"
    write_micrographs_star(star, MicrographTable(star, optics, pd.DataFrame(rows)))
    return star


def peak_rss_mib() -> float:
    """Peak resident memory of this process plus its finished children (MiB, Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def step(model, optimizer, batch, device, amp, seed: int, tokens: int, stage: str) -> None:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    g = mask_generator(seed, 0, 0, 0, tokens)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        if stage == "denoise":  # N2N fine-tune: every patch visible, both directions
            loss, _, _ = model.forward_n2n(batch["odd"], batch["even"])
        else:
            loss, _, _ = model(batch["full"], batch["odd"], batch["even"], 0.75, g)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--micrograph-size", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--stage",
        choices=["draco", "denoise"],
        default="draco",
        help="draco: Eq. 5-10 two-view step; denoise: the N2N fine-tune step",
    )
    p.add_argument(
        "--refiner-channels",
        type=int,
        default=16,
        help="pixel refiner width for --stage denoise (0: none)",
    )
    p.add_argument(
        "--overrides",
        type=json.loads,
        default={},
        help="DracoConfig fields as JSON, e.g. '{\"depth\": 8}'",
    )
    p.add_argument("--json", type=Path, help="Also write the result here.")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    torch.manual_seed(0)
    refiner = args.refiner_channels if args.stage == "denoise" else 0
    config = DracoConfig.from_preset(args.preset, img_size=args.crop_size,
                                     refiner_channels=refiner, **args.overrides)  # fmt: skip
    model = DracoMAE(config).to(device).train()
    optimizer, _ = build_optimizer(model, 1e-4, 0.05, (0.9, 0.95), 0, 1000)
    tokens = config.grid_size**2

    with tempfile.TemporaryDirectory() as tmp:
        records = load_manifest(make_manifest(Path(tmp), 4, args.micrograph_size))
        # enough crops for the fixed batch plus `steps` fresh ones (4 micrographs)
        per_micrograph = max(64, -(-(args.steps + 1) * args.batch_size // 4))
        ds = CropDataset(records, args.crop_size, per_micrograph)
        sampler = ResumableSampler(len(ds), args.batch_size)
        loader = DataLoader(ds, args.batch_size, sampler=sampler, num_workers=args.workers,
                            pin_memory=amp, drop_last=True)  # fmt: skip
        batches = iter(loader)
        fixed = next(batches)
        for _ in range(args.warmup):
            step(model, optimizer, fixed, device, amp, 0, tokens, args.stage)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(model, optimizer, fixed, device, amp, 0, tokens, args.stage)
        sync()
        model_only = args.steps * args.batch_size / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = 0
        for batch in batches:
            step(model, optimizer, batch, device, amp, 0, tokens, args.stage)
            n += 1
            if n == args.steps:
                break
        sync()
        end_to_end = n * args.batch_size / (time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    result = {
        "preset": args.preset, "stage": args.stage, "params_M": round(params / 1e6, 1),
        "crop": args.crop_size, "batch": args.batch_size, "device": str(device),
        "threads": args.threads, "workers": args.workers, "steps": args.steps,
        "crops_per_s_model": round(model_only, 2), "crops_per_s_end_to_end": round(end_to_end, 2),
        "peak_rss_MiB": round(peak_rss_mib()), "torch": torch.__version__,
    }  # fmt: skip
    if device.type == "cuda":
        result["peak_gpu_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
