"""Where ``draco denoise``'s time goes on one large micrograph (issue 20, speed target).

Runs the steps of :meth:`draco_em.infer.denoise.Denoiser.denoise_image` one by one on the same
image and times each: read, rescale to the working pixel size (Fourier crop), normalisation
statistics, tiling + model (split into the ViT and the pixel refiner by timing the refiner's
forward with hooks), blend, restore + Fourier pad back, write. Then the whole ``draco denoise``
command (start-up included) for the wall time users see, with the 1-minute load average before
and after (the 2 cores are shared).

Usage:
    OMP_NUM_THREADS=2 python benchmarks/denoise_speed.py IMAGE.mrc --pixel-size 1.77 \\
        [--weights bundled] [--tile 256 --overlap 32 --batch-size 8] [--no-bf16] [--command]
        [--blend-halves] [--pseudo-halves [--one-pass]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from draco_em.imaging.fourier import fourier_resize
from draco_em.imaging.tiling import TileBlender, TileGrid, iter_tiles
from draco_em.infer.denoise import Denoiser
from draco_em.io.mrc import read_image, write_mrc
from draco_em.model.encoder import DENOISE, working_image
from draco_em.model.weights import BUNDLED_DENOISER, load_model, resolve_weights
from draco_em.runtime import cpu_has_bf16


def timed_command(cmd: list[str]) -> dict:
    """Wall time and peak RSS of one command (a fresh process: its own peak), with the 1-minute
    load average before and after (also used by ``large_fields.py``)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # time -v would need GNU time; a wrapper process reports the child's own peak instead.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_gb": round(int(out.split()[-1]) / 1024**2, 2),
        "load_1min_before": load, "load_1min_after": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--pixel-size", type=float, required=True)
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: as draco denoise (on for bf16-capable CPUs)",
    )
    ap.add_argument("--command", action="store_true", help="also time the whole CLI command")
    ap.add_argument(
        "--blend-halves", action="store_true",
        help="with --command, also time `draco denoise --blend-halves` (IMAGE_EVN/IMAGE_ODD "
        "beside IMAGE) right after the plain command",
    )  # fmt: skip
    ap.add_argument(
        "--pseudo-halves", action="store_true",
        help="with --command, also time `draco denoise --pseudo-halves` on IMAGE alone (linked "
        "into a folder of its own, so halves beside it are not used)",
    )  # fmt: skip
    ap.add_argument(
        "--one-pass", action="store_true",
        help="with --pseudo-halves, also time it with --blend-passes 1",
    )  # fmt: skip
    args = ap.parse_args()
    t: dict[str, float] = {}
    load0 = os.getloadavg()[0]

    t0 = time.perf_counter()
    model, _, meta = load_model(resolve_weights(args.weights, BUNDLED_DENOISER))
    model.eval()
    t["load_model"] = time.perf_counter() - t0
    bf16 = cpu_has_bf16() if args.bf16 is None else args.bf16
    den = Denoiser(model, meta["pixel_size"], args.tile, args.overlap, args.batch_size, bf16=bf16)

    t0 = time.perf_counter()
    image = np.asarray(read_image(args.image, args.pixel_size)[0], dtype=np.float32)
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    work = working_image(image, args.pixel_size, den.working_pixel_size, DENOISE)
    t["rescale+normalise"] = time.perf_counter() - t0

    refiner_s = [0.0]
    if model.refiner is not None:
        start: list[float] = []
        model.refiner.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
        model.refiner.register_forward_hook(
            lambda *_: refiner_s.__setitem__(0, refiner_s[0] + time.perf_counter() - start[-1])
        )
    grid = TileGrid(work.image.shape, den.tile, den.overlap)
    blender = TileBlender(grid)
    model_s = blend_s = 0.0
    t0 = time.perf_counter()
    for indices, batch in iter_tiles(work.image, grid, den.batch_size):
        t1 = time.perf_counter()
        out = den._run_tiles(batch)
        t2 = time.perf_counter()
        blender.add(indices, out)
        model_s += t2 - t1
        blend_s += time.perf_counter() - t2
    result = blender.result()
    t["tiles_total"] = time.perf_counter() - t0
    t["model (ViT+refiner)"] = model_s
    t["  of which refiner"] = refiner_s[0]
    t["tile cut + blend"] = t["tiles_total"] - model_s
    t0 = time.perf_counter()
    restored = work.restore(result)
    back = fourier_resize(restored, image.shape).astype(np.float32)
    t["restore+fourier pad"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_mrc(Path(tmp) / "out.mrc", back, args.pixel_size)
        t["write"] = time.perf_counter() - t0
        info = {
            "image": list(image.shape), "working": list(work.image.shape),
            "tiles": len(grid), "tile": den.tile, "overlap": grid.overlap,
            "batch_size": den.batch_size, "threads": torch.get_num_threads(), "bf16": bf16,
            "seconds": {k: round(v, 2) for k, v in t.items()},
            "load_1min_before": load0, "load_1min_after": os.getloadavg()[0],
        }  # fmt: skip
        if args.command:
            cmd = [sys.executable, "-m", "draco_em", "denoise", str(args.image), "-o", tmp + "/c",
                   "--pixel-size", str(args.pixel_size), "--model", args.weights, "-q",
                   "--workers", "0", "--tile", str(args.tile), "--batch-size",
                   str(args.batch_size), "--bf16" if bf16 else "--no-bf16"]  # fmt: skip
            if args.overlap is not None:
                cmd += ["--overlap", str(args.overlap)]
            info["command"] = timed_command(cmd)
            if args.blend_halves:
                cmd[cmd.index("-o") + 1] = tmp + "/b"
                info["command_blend_halves"] = timed_command([*cmd, "--blend-halves"])
            if args.pseudo_halves:
                alone = Path(tmp) / "alone" / args.image.name
                alone.parent.mkdir()
                alone.symlink_to(args.image.resolve())
                cmd[cmd.index(str(args.image))] = str(alone)
                cmd[cmd.index("-o") + 1] = tmp + "/p"
                info["command_pseudo_halves"] = timed_command([*cmd, "--pseudo-halves"])
                if args.one_pass:
                    cmd[cmd.index("-o") + 1] = tmp + "/p1"
                    info["command_pseudo_halves_one_pass"] = timed_command(
                        [*cmd, "--pseudo-halves", "--blend-passes", "1"]
                    )
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
