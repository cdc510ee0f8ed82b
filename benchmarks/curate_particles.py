"""Why the particle-evidence block did not change a head's answer on EMPIAR-10017 (issue 19,
session 11 in docs/benchmarks.md).

Two tables:

1. **Block contributions**: for a head that reads ``both`` + ``--particles``, the
   good-minus-``crystalline_ice`` logit each feature block adds on the real EMPIAR-10017
   micrographs (the head's batch-norm statistics and linear weights applied to each block of the
   standardised vector), mean over the micrographs, and the norm of each block's weights.
2. **Evidence by class**: the cached particle evidence of the training micrographs (raw sums and
   renderings separately), mean per class, beside EMPIAR-10017's.

::

    python benchmarks/curate_particles.py \\
        --head /work/cur19/runs/curator_s11bothP_l2_0.001.safetensors \\
        --train /work/cur19/train_s11bothP.csv --cache /work/cur19/runs/shared/features \\
        --real-cache /work/s16/real_s11bothP/features --figure docs/img/curate_particles.png

``--time N``: seconds of the evidence (2 threads, the picker loaded once beforehand) on the
first N EMPIAR-10017 JPEGs (4096²) and MicAssess PNGs (494 × 512).

``--figure``: what the picker's evidence sees at 180 Å (candidates at or above its stored
threshold circled) on the central crop of an EMPIAR-10017 micrograph and of one simulated good
rendering, good raw micrograph, crystalline-ice and no-particle micrograph of the training set.

Features come from :func:`draco_em.curate.features.micrograph_features` with the caches of the
recipe (training) and of ``curate_real.py`` (EMPIAR-10017): nothing is recomputed that is cached.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.features import micrograph_features, micrograph_vector
from draco_em.curate.head import load_curator
from draco_em.curate.particles import N_PARTICLES
from draco_em.curate.stats import N_STATS
from draco_em.io.labels import read_labels
from draco_em.io.mrc import read_micrograph
from draco_em.model.encoder import load_encoder
from draco_em.pick.evidence import DIAMETERS, MAX_WORK_PX, ParticleEvidence, central_crop
from draco_em.pick.model_io import load_picker

EMPIAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "empiar10017" / "micrographs"
EMPIAR_PX = 1.77
#: Column of the coverage at 180 Å and of the best-blot score (max over diameters).
COVER_180 = DIAMETERS.index(180.0)
TOP_MAX = N_PARTICLES - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--head", type=Path, required=True, help="a both + --particles curator")
    ap.add_argument("--train", type=Path, required=True, help="its training labels (CSV)")
    ap.add_argument("--cache", type=Path, required=True, help="the recipe's feature cache")
    ap.add_argument("--real-cache", type=Path, required=True, help="a cache for EMPIAR-10017")
    ap.add_argument("--empiar", type=Path, default=EMPIAR)
    ap.add_argument("--figure", type=Path, default=None, help="PNG of the evidence's picks")
    ap.add_argument("--time", type=int, default=0, help="time the evidence on N real images")
    args = ap.parse_args()
    if not args.empiar.is_dir():
        raise SystemExit(f"skipped: {args.empiar} not found (the real data lives in ../shared)")
    curator = load_curator(args.head)
    cfg = curator.features
    if not (cfg.particles and cfg.blocks == "both"):
        raise SystemExit("the head must read --features both --particles")
    encoder = load_encoder("bundled", torch.device("cpu"), cfg.pixel_size)
    evidence = ParticleEvidence()
    head = curator.head.eval()
    weight = head.linear.weight.detach().numpy()
    mean = head.norm.running_mean.numpy()
    var = head.norm.running_var.numpy()
    tokens = 2 * encoder.dim
    blocks = {
        "tokens": slice(0, tokens),
        "statistics": slice(tokens, tokens + N_STATS),
        "spectrum": slice(tokens + N_STATS, weight.shape[1] - N_PARTICLES),
        "particle evidence": slice(weight.shape[1] - N_PARTICLES, weight.shape[1]),
    }
    good, xtal = curator.classes.index("good"), curator.classes.index("crystalline_ice")
    paths = sorted(p for p in args.empiar.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
    contrib, real_evidence = defaultdict(list), []
    for path in paths:
        tiles, extra, _ = micrograph_features(
            encoder, cfg, path, EMPIAR_PX, args.real_cache, evidence=evidence
        )
        vec = micrograph_vector(torch.from_numpy(tiles).float(), extra, cfg).numpy()
        z = (vec - mean) / np.sqrt(var + head.norm.eps)
        for name, cols in blocks.items():
            contrib[name].append(float((weight[good, cols] - weight[xtal, cols]) @ z[cols]))
        real_evidence.append(extra[-N_PARTICLES:])
    print(f"EMPIAR-10017 ({len(paths)} micrographs), head {args.head.name}")
    print("| block | good − crystalline_ice logit (mean) | weight norm |\n|---|---|---|")
    for name, cols in blocks.items():
        norm = np.linalg.norm(weight[:, cols])
        print(f"| {name} | {np.mean(contrib[name]):+.1f} | {norm:.2f} |")
    groups: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    labels = read_labels(args.train)
    for path, label, px in zip(labels.paths, labels.labels, labels.pixel_sizes, strict=True):
        _, extra, _ = micrograph_features(encoder, cfg, path, px, args.cache, evidence=evidence)
        kind = "renderings" if path.name.startswith("render") else "raw"
        groups[(kind, label)].append(extra[-N_PARTICLES:])
    print("\n| training micrographs | n | coverage at 180 Å (log10) | best-blot score |")
    print("|---|---|---|---|")
    for (kind, label), rows in sorted(groups.items()):
        a = np.asarray(rows)
        print(f"| {kind}, {label} | {len(a)} | {a[:, COVER_180].mean():.2f} | "
              f"{a[:, TOP_MAX].mean():.2f} |")  # fmt: skip
    r = np.asarray(real_evidence)
    print(f"| EMPIAR-10017 | {len(r)} | {r[:, COVER_180].mean():.2f} "
          f"({r[:, COVER_180].min():.2f} at least) | {r[:, TOP_MAX].mean():.2f} |")  # fmt: skip
    if args.figure:
        examples = [("EMPIAR-10017 (real, good)", paths[0], EMPIAR_PX)]
        wanted = [("renderings", "good"), ("raw", "good"), ("raw", "crystalline_ice"),
                  ("raw", "empty")]  # fmt: skip
        for kind, label in wanted:
            for path, lab, px in zip(labels.paths, labels.labels, labels.pixel_sizes, strict=True):
                if lab == label and path.name.startswith("render") == (kind == "renderings"):
                    examples.append((f"sim {kind}, {label} ({px:g} Å/px)", path, px))
                    break
        figure(examples, args.figure)
    if args.time:
        timing(evidence, args.empiar, args.time)


def timing(evidence: ParticleEvidence, empiar: Path, n: int) -> None:
    """Seconds of ``evidence`` per image on the first ``n`` EMPIAR-10017 and MicAssess images."""
    import time

    micassess = empiar.parents[1] / "micassess" / "micrographs"
    sets = [
        (sorted(empiar.glob("*.jpg"))[:n], EMPIAR_PX),
        (sorted(micassess.glob("*.png"))[:n], 7.0),
    ]
    evidence(np.zeros((512, 512), np.float32), 7.0)  # load the picker outside the timing
    for paths, px in sets:
        for path in paths:
            image, _ = read_micrograph(path, pixel_size=px)
            t0 = time.perf_counter()
            evidence(image, px)
            print(f"{path.name} {image.shape}: {time.perf_counter() - t0:.2f} s")


def figure(examples: list[tuple[str, Path, float]], out: Path, diameter: float = 180.0) -> None:
    """One panel per (title, micrograph, Å/px): the crop the evidence reads at ``diameter``,
    with the picker's candidates at or above its stored threshold circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picker = load_picker("bundled", diameter=diameter)
    fig, axes = plt.subplots(1, len(examples), figsize=(3.2 * len(examples), 3.9))
    for ax, (title, path, px) in zip(np.atleast_1d(axes), examples, strict=True):
        image, _ = read_micrograph(path, pixel_size=px)
        crop = central_crop(image, int(MAX_WORK_PX * diameter / picker.diameter_px / px))
        picks = picker.pick_image(crop, px, threshold=picker.threshold)
        lo, hi = np.percentile(crop, [1, 99])
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        r = diameter / px / 2
        for x, y in zip(picks["x"], picks["y"], strict=True):
            ax.add_patch(plt.Circle((x, y), r, fill=False, color="lime", lw=0.7))
        ax.set_title(f"{title}\n{len(picks)} picks ≥ {picker.threshold:.2f} at 180 Å", fontsize=8)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
