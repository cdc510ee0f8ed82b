"""Diagnostics behind ``--adapt``'s Fourier pre-binning (issue 20, session 4; docs/benchmarks.md).

On a set with truth in ``draco simulate``'s layout (e.g. cryoJAX ``apof_1p5A``, 1.5 Å/px data
for a 1.98 Å/px model), all in the model's working sampling:

* ``jloss WEIGHTS...``: the Noise2Self loss of whole micrographs (the J-invariant prediction:
  16 passes, each hiding one pixel in 4 × 4 as ``DracoMAE.forward_blindspot`` does, scored
  against the noisy image; no truth), with the correlation SNR against the clean image of the
  J-invariant and of the plain prediction;
* ``bilinear``: the bundled denoiser fed an antialiased-bilinear resize of the input (what the
  crop loader does) instead of the inference's Fourier rescaling;
* ``noise``: is the set's noise white? The correlation of the residual (raw − least-squares
  fit of the clean image) with its neighbour one pixel away in x (lag 1), two away (lag 2) and
  on the diagonal, at the data's own sampling; with ``--binned PX`` after both images are
  Fourier-binned to PX Å/px as ``--adapt`` bins them (``train.adapt.binned_rows``, the
  inference's ``rescale_to_working``).

docs/benchmarks.md's rows were measured from the then-bundled denoiser v2 (since replaced by
v4, then v5):
``git show a02eb28:src/draco_em/weights/draco_denoise_tiny.safetensors > v2.safetensors``
and give ``v2.safetensors`` as WEIGHTS (``jloss`` and ``bilinear`` take a list, default the
bundled denoiser).

    OMP_NUM_THREADS=1 python benchmarks/denoise_adapt_diag.py --set /work/indep_sets/apof_1p5A \\
        --n 3 jloss v2.safetensors W/pred/bs/adapt/adapted.safetensors
    OMP_NUM_THREADS=1 python benchmarks/denoise_adapt_diag.py --set /work/indep_sets/apof_1p5A \\
        --n 4 bilinear v2.safetensors
    python benchmarks/denoise_adapt_diag.py --set /work/val_sets/real20 --n 1 noise
    python benchmarks/denoise_adapt_diag.py --set /work/indep_sets/apof_1p5A --n 2 noise \\
        --binned 1.98
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoise_indep import corr_snr_db

from draco_em.imaging.fourier import fourier_resize
from draco_em.infer.config import DenoiseConfig
from draco_em.infer.run_denoise import _load
from draco_em.io.mrc import read_image
from draco_em.model.draco import hide_pixels
from draco_em.model.encoder import rescale_to_working


def j_invariant(plain: Callable, spacing: int = 4) -> Callable:
    """``model.denoise`` → its J-invariant version (each pixel predicted while hidden)."""

    def run(image: torch.Tensor) -> torch.Tensor:
        b, c, h, w = image.shape
        img = image.float().reshape(b * c, 1, h, w)
        out = torch.zeros_like(img)
        ys, xs = torch.arange(h)[:, None], torch.arange(w)[None]
        for py in range(spacing):
            for px in range(spacing):
                m = ((ys % spacing == py) & (xs % spacing == px))[None, None].expand_as(img)
                pred = plain(hide_pixels(img, m).reshape(b, c, h, w).to(image.dtype)).float()
                out += pred.reshape(b * c, 1, h, w) * m
        return out.reshape(b, c, h, w)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--n", type=int, default=3, help="micrographs")
    ap.add_argument("mode", choices=["jloss", "bilinear", "noise"])
    ap.add_argument("weights", nargs="*", default=["bundled"])
    ap.add_argument("--binned", type=float, default=None,
                    help="noise: Fourier-bin raw and clean to this Å/px first")  # fmt: skip
    args = ap.parse_args()
    files = sorted(p for p in (args.set / "micrographs").glob("*.mrc")
                   if not p.stem.endswith(("_EVN", "_ODD")))[: args.n]  # fmt: skip
    if args.mode == "noise":
        for f in files:
            raw, px = read_image(f)
            clean = read_image(args.set / "clean" / f.name)[0]
            if args.binned is not None:
                raw = rescale_to_working(raw, px, args.binned)[0]
                clean = rescale_to_working(clean, px, args.binned)[0]
            raw, clean = raw.astype(np.float64), clean.astype(np.float64)
            fit = np.linalg.lstsq(np.c_[clean.ravel(), np.ones(clean.size)], raw.ravel(),
                                  rcond=None)[0]  # fmt: skip
            r = raw - fit[0] * clean - fit[1]
            r -= r.mean()
            v = np.mean(r * r)
            lag1, lag2 = np.mean(r[:, 1:] * r[:, :-1]) / v, np.mean(r[:, 2:] * r[:, :-2]) / v
            diag = np.mean(r[1:, 1:] * r[:-1, :-1]) / v
            print(f"{f.name}: residual correlation lag 1 {lag1:.3f}, lag 2 {lag2:.3f}, "
                  f"diagonal {diag:.3f}")  # fmt: skip
        return
    for weights in args.weights:
        cfg = DenoiseConfig(inputs=[str(files[0])], outdir=Path("unused"), weights=weights,
                            bf16=False)  # fmt: skip
        den = _load(cfg, torch.device("cpu"))
        plain = den.model.denoise
        rows = []
        for f in files:
            img, px = read_image(f)
            clean = read_image(args.set / "clean" / f.name)[0]
            if args.mode == "jloss":
                den.model.denoise = j_invariant(plain)
                jinv, _ = den.denoise_image(img, px, keep_binned=True)
                den.model.denoise = plain
                out, _ = den.denoise_image(img, px, keep_binned=True)
                noisy, ref = fourier_resize(img, jinv.shape), fourier_resize(clean, jinv.shape)
                loss = float(((jinv - noisy) ** 2).mean() / noisy.var())
                rows.append((loss, corr_snr_db(jinv, ref), corr_snr_db(out, ref)))
            else:
                fourier = den.denoise_image(img, px)[0]
                work, _ = rescale_to_working(img, px, den.working_pixel_size)
                t = torch.from_numpy(np.array(img))[None, None]
                small = F.interpolate(t, size=work.shape, mode="bilinear", antialias=True,
                                      align_corners=False)[0, 0].numpy()  # fmt: skip
                bilinear = fourier_resize(den.denoise_image(small, None)[0], img.shape)
                rows.append((corr_snr_db(fourier, clean), corr_snr_db(bilinear, clean)))
        mean = np.mean(rows, axis=0)
        if args.mode == "jloss":
            print(f"{weights}: Noise2Self loss {mean[0]:.5f}, J-invariant corr SNR {mean[1]:.3f}, "
                  f"plain {mean[2]:.3f} dB")  # fmt: skip
        else:
            print(f"{weights}: Fourier input {mean[0]:.3f} dB, bilinear input {mean[1]:.3f} dB")


if __name__ == "__main__":
    main()
