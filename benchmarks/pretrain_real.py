"""Issue 17 item 6: do real micrographs in the MAE pretraining move the real-data figures?

Compares encoders (``--encoder NAME=WEIGHTS``, e.g. the bundled ``draco_tiny`` and the same
model after a short ``draco pretrain --stage mae --init-weights bundled`` on simulations only or
on simulations plus real micrographs) on three real-data figures, all with the encoder frozen:

* **realism feature gap** (``draco evaluate realism``'s encoder figure): distance between the
  pooled features' set means of a simulated set (``--sim``) and a real set, over the real set's
  RMS spread, against MicAssess (18, 7 Å/px) and EMPIAR-10017 (11, 1.77 Å/px);
* **curation probe, MicAssess**: leave-one-out balanced accuracy of the curation head refitted
  on the other 17 (``benchmarks/curate_real.py``'s probe: the bundled curator's feature
  configuration, the library's ``fit_head``);
* **particle probe, EMPIAR-10017**: a logistic regression on the encoder's pooled 64-px tile
  (127 Å at 1.98 Å/px) at the expert picks against tiles at background points at least
  ``--min-gap`` particle diameters from every pick, leave-one-micrograph-out over the 11:
  balanced accuracy and ROC AUC.

To avoid leakage, an encoder that saw EMPIAR-10017 in pretraining is judged on MicAssess and
one that saw MicAssess on EMPIAR-10017 (the script reports every figure; the reader picks the
clean ones, docs/training.md lists them).

    OMP_NUM_THREADS=2 python benchmarks/pretrain_real.py --encoder bundled=bundled \\
        --encoder sims=/tmp/enc_A.safetensors --sim /tmp/sim_realism/micrographs.star \\
        --json /tmp/pretrain_real.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.head import load_curator
from draco_em.evaluate.realism import Micrograph, _feature_figures, encoder_features
from draco_em.imaging.normalize import padded_border
from draco_em.io.classes import GOOD
from draco_em.io.coords import read_coords
from draco_em.io.mrc import read_image
from draco_em.io.star import read_micrographs_star
from draco_em.model.encoder import curate_input, encode_tiles, load_encoder, working_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_real import featurize, loo_probe, micassess_items

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EMPIAR_PX, EMPIAR_DIAMETER_PX = 1.77, 108  # README: 108 px ≈ 190 Å
TILE = 64  # px at the encoder's working pixel size, as curation's tiles


def _mics(paths: list[Path], px: float) -> list[Micrograph]:
    return [Micrograph(str(p), px, (0, 0), (0, 0, 0, 0), 0.0) for p in paths]


def feature_gap(weights: str, sim_star: Path) -> dict:
    """Mean gap / real spread of the pooled encoder features, sim set against each real set."""
    table = read_micrographs_star(sim_star)
    sim = [
        Micrograph(str(table.resolve(str(n))), float(table.pixel_size(i) or 0), (0, 0),
                   (0, 0, 0, 0), 0.0)
        for i, n in enumerate(table.micrographs["rlnMicrographName"])
    ]  # fmt: skip
    encoder_features(sim, weights, "cpu")
    out = {}
    for name, paths, px in (
        ("micassess", sorted((DATA / "micassess/micrographs").glob("*.png")), 7.0),
        ("empiar10017", sorted((DATA / "empiar10017/micrographs").glob("*.jpg")), EMPIAR_PX),
    ):
        real = _mics(paths, px)
        encoder_features(real, weights, "cpu")
        fig = _feature_figures(sim, real)
        out[name] = round(float(fig["mean_distance_over_real_spread"]), 3)
    return out


def curation_loo(weights: str, work: Path) -> dict:
    """MicAssess leave-one-out with the bundled curator's feature configuration."""
    cfg = load_curator("bundled").features
    encoder = load_encoder(weights, torch.device("cpu"), cfg.pixel_size)
    items = micassess_items(DATA / "micassess")
    featurize(encoder, cfg, items, work / "features")
    classes = [GOOD, "contamination", "no_ice", "crystalline_ice", "no_particles"]
    r = loo_probe(encoder, cfg, items, classes)
    return {"balanced_accuracy": round(r["balanced_accuracy"], 3),
            "classes_right": sum(row["reason_right"] for row in r["rows"])}  # fmt: skip


def _tiles(work: np.ndarray, points: np.ndarray) -> np.ndarray:
    h = TILE // 2
    return np.stack([work[y - h : y + h, x - h : x + h] for x, y in points])


def empiar_patches(weights: str, per_class: int, min_gap: float, seed: int) -> list[tuple]:
    """Per micrograph: (features [2n, E], labels [2n]) at picks (1) and background (0)."""
    encoder = load_encoder(weights, torch.device("cpu"))
    rng = np.random.default_rng(seed)
    out = []
    for path in sorted((DATA / "empiar10017/micrographs").glob("*.jpg")):
        image, _ = read_image(path, pixel_size=EMPIAR_PX)
        top, bottom, left, right = padded_border(image)
        wi = working_image(image, EMPIAR_PX, encoder.pixel_size, curate_input(10.0))
        sx, sy = wi.scale
        picks = read_coords(DATA / "empiar10017/coordinates" / f"{path.stem}.star")
        xy = picks[["x", "y"]].to_numpy(np.float64)
        ny, nx = image.shape
        margin = TILE / min(sx, sy) / 2 + 2  # input px, so a working tile fits
        lo = np.array([left + margin, top + margin])
        hi = np.array([nx - right - margin, ny - bottom - margin])
        inside = xy[((xy >= lo) & (xy < hi)).all(axis=1)]
        pos = inside[rng.choice(len(inside), min(per_class, len(inside)), replace=False)]
        neg: list[np.ndarray] = []
        for _ in range(200 * per_class):
            if len(neg) == per_class:
                break
            p = rng.uniform(lo, hi)
            if np.min(np.hypot(*(xy - p).T)) >= min_gap * EMPIAR_DIAMETER_PX:
                neg.append(p)
        points = np.vstack([pos, np.array(neg).reshape(-1, 2)])
        work_xy = np.round(points * np.array([sx, sy])).astype(int)
        feats = encode_tiles(encoder, _tiles(wi.image, work_xy))
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        out.append((feats.astype(np.float64), labels))
    return out


def _fit_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        loss = loss + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.item())


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    npos, nneg = int(y.sum()), int((1 - y).sum())
    return float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def particle_probe(data: list[tuple]) -> dict:
    """Leave-one-micrograph-out logistic regression on standardised features."""
    scores, labels = [], []
    for i in range(len(data)):
        xtr = np.vstack([d[0] for j, d in enumerate(data) if j != i])
        ytr = np.concatenate([d[1] for j, d in enumerate(data) if j != i])
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        w, b = _fit_logreg((xtr - mu) / sd, ytr)
        scores.append(((data[i][0] - mu) / sd) @ w + b)
        labels.append(data[i][1])
    s, y = np.concatenate(scores), np.concatenate(labels)
    pred = s > 0
    bacc = 0.5 * (pred[y == 1].mean() + (~pred[y == 0]).mean())
    return {"balanced_accuracy": round(float(bacc), 3), "auc": round(_auc(s, y), 3),
            "n": len(y)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--encoder", action="append", required=True, help="NAME=weights")
    ap.add_argument("--sim", type=Path, required=True, help="Simulated set (realism gap).")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/pretrain_real"))
    ap.add_argument("--per-class", type=int, default=60, help="Patches per class per micrograph.")
    ap.add_argument("--min-gap", type=float, default=0.6, help="Background: diameters from picks.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    for spec in args.encoder:
        name, weights = spec.split("=", 1)
        t0 = time.time()
        r = {"feature_gap": feature_gap(weights, args.sim)}
        r["micassess_curation_loo"] = curation_loo(weights, args.work / name)
        data = empiar_patches(weights, args.per_class, args.min_gap, args.seed)
        r["empiar_particle_probe"] = particle_probe(data)
        r["seconds"] = round(time.time() - t0, 1)
        results[name] = r
        print(name, json.dumps(r), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
