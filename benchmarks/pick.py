"""Picking benchmark on held-out simulated ribosome micrographs (results: docs/benchmarks.md).

Methods, all scored by ``draco evaluate pick``'s rule (one-to-one, greedy by score, within half
a diameter) against the simulator's true centres:

* ``draco``: the bundled general picker (never trained on ribosomes);
* ``draco_ft``: that picker fine-tuned on ≈200 labelled ribosomes from *other* micrographs;
* ``log``: Laplacian-of-Gaussian blob picker at the same working pixel size;
* ``topaz``: Topaz's pretrained general model ``resnet16_u64`` (own venv), ``-r 14`` at the
  downsampling that makes the particle radius ≈14 px, at threshold 0 and at its best threshold.

    python benchmarks/pick_data.py ribo 12 101 && python benchmarks/pick_data.py ribo 8 200
    OMP_NUM_THREADS=2 python benchmarks/pick.py --methods draco,draco_ft,log,topaz
    python benchmarks/pick.py --timing    # 4096² micrograph, 2 threads

Another held-out set (e.g. the cryoJAX sets of benchmarks/indep_sim), zero-shot methods only:
    python benchmarks/pick.py --methods draco,log --held-out /work/indep_sets/apof_1p5A \
        --diameter 130 --pixel-size 1.5 --out /work/indep_sets/bench/pick_apof
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick
from draco_em.io.coords import read_coords, scale_coords, write_topaz
from draco_em.io.mrc import read_image
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.log_picker import log_pick
from draco_em.pick.model_io import load_picker
from draco_em.pick.train import train_picker

DATA = Path("/tmp/pick_data")
HELD_OUT = DATA / "ribo_101"
FINETUNE = DATA / "ribo_200"
DIAMETER = 260.0  # Å: the simulator's ribosome radius is 140 Å including a margin
PIXEL = 2.0  # Å/px of the simulated micrographs
TOPAZ = Path("/work/venvs/topaz/bin/topaz")  # its own venv (torch 2.14.1+cpu)


def mics(folder: Path) -> list[Path]:
    """Full-sum micrographs of a simulated set (not the _EVN/_ODD halves)."""
    files = (folder / "micrographs").glob("*.mrc")
    return sorted(p for p in files if not p.stem.endswith(("_EVN", "_ODD")))


def score(picks: pd.DataFrame, out: Path, threshold: float | None = None) -> dict:
    """Write ``picks`` as Topaz text and evaluate them against the held-out truth."""
    out.mkdir(parents=True, exist_ok=True)
    write_topaz(out / "picks.txt", picks)
    cfg = EvaluatePickConfig(pred=out / "picks.txt", truth=HELD_OUT / "coordinates",
                             diameter_px=DIAMETER / PIXEL, threshold=threshold)  # fmt: skip
    return evaluate_pick(cfg)


def run_picker(model: str, out: Path) -> dict:
    picker = load_picker(model, diameter=DIAMETER)
    frames, t = [], time.time()
    for path in mics(HELD_OUT):
        image, _ = read_image(path)
        frames.append(picker.pick_image(image, PIXEL, path.name, threshold=0.02))
    seconds = (time.time() - t) / len(frames)
    picks = pd.concat(frames, ignore_index=True)
    res = score(picks, out, threshold=picker.threshold)
    res["all_thresholds"] = score(picks, out / "all")
    res.update(stored_threshold=picker.threshold, seconds_per_micrograph=seconds)
    if (HELD_OUT / "regions").is_dir():
        res["errors"] = error_breakdown(picks[picks["score"] >= picker.threshold])
    return res


def error_breakdown(picks: pd.DataFrame) -> dict:
    """Where the false picks and the missed particles lie, from the simulator's region truth
    (``regions/<stem>.mrc``: 0 clear, 1 contamination, 2 carbon; ``draco simulate
    --region-masks``). False picks off contamination and carbon are split into *near a particle*
    (within a diameter of a true centre: a duplicate or a cluster neighbour), *edge* (within half a
    radius of the image border) and *clear ice*; missed particles into clear ice and carbon."""
    from scipy.spatial import cKDTree

    from draco_em.evaluate.pick import match_picks

    radius = DIAMETER / PIXEL / 2
    false, missed = dict.fromkeys(("contamination", "carbon", "near a particle", "edge",
                                   "clear ice"), 0), {"clear ice": 0, "carbon": 0}  # fmt: skip
    for path in mics(HELD_OUT):
        regions = read_image(HELD_OUT / "regions" / f"{path.stem}.mrc")[0]
        h, w = regions.shape
        true_xy = read_coords(HELD_OUT / "coordinates" / f"{path.stem}.star")[["x", "y"]]
        true_xy = true_xy.to_numpy(float)
        mine = picks[picks["micrograph"].map(lambda m: Path(str(m)).stem) == path.stem]
        xy, s = mine[["x", "y"]].to_numpy(float), mine["score"].to_numpy(float)
        tp = match_picks(xy, s, true_xy, radius)
        tree = cKDTree(true_xy)
        for (x, y), ok in zip(xy, tp, strict=True):
            if ok:
                continue
            code = regions[min(int(y), h - 1), min(int(x), w - 1)]
            near = tree.query([x, y])[0] < 2 * radius
            edge = min(x, y, w - x, h - y) < radius / 2
            kind = {1: "contamination", 2: "carbon"}.get(int(code)) or (
                "near a particle" if near else "edge" if edge else "clear ice"
            )
            false[kind] += 1
        found = (
            cKDTree(xy[tp]).query(true_xy)[0] <= radius
            if tp.any()
            else np.zeros(len(true_xy), bool)
        )
        for (x, y), ok in zip(true_xy, found, strict=True):
            if not ok:
                on_carbon = regions[min(int(y), h - 1), min(int(x), w - 1)] == 2
                missed["carbon" if on_carbon else "clear ice"] += 1
    return {"false_picks": false, "missed": missed}


def finetune(general: str, out: Path, n_particles: int = 200, epochs: int = 15) -> str:
    """Fine-tune on the fewest ribo_200 micrographs that hold ≥ ``n_particles`` particles."""
    chosen, coords, n = [], [], 0
    for path in mics(FINETUNE):
        if n >= n_particles:
            break
        df = read_coords(FINETUNE / "coordinates" / f"{path.stem}.star")
        chosen.append(path)
        coords.append(FINETUNE / "coordinates" / f"{path.stem}.star")
        n += len(df)
    cfg = PickTrainConfig(micrographs=chosen, coords=coords, diameter=DIAMETER, outdir=out,
                          weights=general, finetune_blocks=2, epochs=epochs, crops_per_epoch=64,
                          val_fraction=0.15)  # fmt: skip
    t = time.time()
    train_picker(cfg)
    print(f"fine-tuned on {n} particles from {len(chosen)} micrographs in {time.time() - t:.0f} s")
    return str(out)


def run_log(out: Path) -> dict:
    frames = [log_pick(read_image(p)[0], PIXEL, DIAMETER, p.name, threshold=0.5)
              for p in mics(HELD_OUT)]  # fmt: skip
    picks = pd.concat(frames, ignore_index=True)
    res = score(picks, out)
    res["note"] = "all peaks with score ≥ 0.5 (LoG z-score ≥ 0); best F1 over thresholds"
    return res


def run_topaz(out: Path, factor: int) -> dict:
    """Topaz preprocess (downsample ×factor + normalise) and extract with resnet16_u64, -r 14."""
    pre = out / f"pre_s{factor}"
    pre.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in mics(HELD_OUT)]
    subprocess.run([str(TOPAZ), "preprocess", "-s", str(factor), "-d", "-1", "-o", str(pre),
                    *paths], check=True, capture_output=True)  # fmt: skip
    txt = out / f"topaz_s{factor}.txt"
    t = time.time()
    subprocess.run([str(TOPAZ), "extract", "-m", "resnet16_u64", "-r", "14", "-d", "-1",
                    "-t", "-6", "-o", str(txt), *sorted(str(p) for p in pre.glob("*.mrc"))],
                   check=True, capture_output=True)  # fmt: skip
    seconds = (time.time() - t) / len(paths)
    picks = scale_coords(read_coords(txt), factor)  # binned x = x / f, so unbinned = x · f
    at0 = score(picks, out / f"s{factor}_t0", threshold=0.0)
    best = score(picks, out / f"s{factor}_all")
    return {"factor": factor, "at_threshold_0": at0, "all_thresholds": best,
            "seconds_per_micrograph_extract": seconds}  # fmt: skip


def timing(model: str) -> dict:
    """Seconds to pick a 4096² micrograph at 1 Å/px (2×2 held-out images, Fourier-padded)."""
    from draco_em.imaging.fourier import fourier_resize

    torch.set_num_threads(2)
    tiles = [read_image(p)[0] for p in mics(HELD_OUT)[:4]]
    big = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
    big = fourier_resize(big.astype(np.float32), (4096, 4096))  # 2 Å → 1 Å/px
    out = {}
    for name, d in (("ribosome 260 Å", DIAMETER), ("apoferritin 140 Å", 140.0)):
        picker = load_picker(model, diameter=d)
        picker.pick_image(big[:1024, :1024], 1.0, "warm")
        t = time.time()
        picks = picker.pick_image(big, 1.0, "big")
        out[name] = {"seconds": round(time.time() - t, 2), "picks": len(picks)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="picking benchmark")
    ap.add_argument("--methods", default="draco,draco_ft,log,topaz")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--out", type=Path, default=DATA / "bench")
    ap.add_argument("--topaz-factors", default="4,5")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--ft-epochs", type=int, default=15, help="epochs of the draco_ft fine-tune")
    ap.add_argument("--held-out", type=Path, default=HELD_OUT)
    ap.add_argument("--finetune-set", type=Path, default=FINETUNE)
    ap.add_argument("--diameter", type=float, default=DIAMETER, help="particle diameter (Å) "
                    "of the held-out set (default: the ribosome)")  # fmt: skip
    ap.add_argument("--pixel-size", type=float, default=PIXEL,
                    help="Å/px of the held-out micrographs (default: 2.0)")  # fmt: skip
    ap.add_argument("--topaz", type=Path, default=TOPAZ, help="the topaz executable")
    args = ap.parse_args()
    globals().update(HELD_OUT=args.held_out, FINETUNE=args.finetune_set, DIAMETER=args.diameter,
                     PIXEL=args.pixel_size, TOPAZ=args.topaz)  # fmt: skip
    results = {}
    methods = args.methods.split(",") if args.methods else []
    if "draco" in methods:
        results["draco"] = run_picker(args.model, args.out / "draco")
    if "draco_ft" in methods:
        ft = finetune(args.model, args.out / "ft_run", epochs=args.ft_epochs)
        results["draco_ft"] = run_picker(ft, args.out / "draco_ft")
    if "log" in methods:
        results["log"] = run_log(args.out / "log")
    if "topaz" in methods:
        for f in (int(x) for x in args.topaz_factors.split(",")):
            results[f"topaz_s{f}"] = run_topaz(args.out / "topaz", f)
    if args.timing:
        results["timing"] = timing(args.model)
    text = json.dumps(results, indent=1, default=float)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results_{int(time.time())}.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
