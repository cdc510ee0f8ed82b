"""Micrograph curation benchmark (issue 7): DRACO linear probe vs MAE-only encoder, ResNet-18
from scratch and a power-spectrum logistic regression, on a held-out simulated labelled set.

Every method trains on the same labelled micrographs (``--train``) and is scored on the same
held-out ones (``--test``) with ``draco_em.evaluate.curate`` (accept = positive). The two
encoder probes run the real ``draco curate train`` / ``predict`` code; the real contaminated
micrograph (``micrograph_cleaner_em``, ~4 Å/px) is scored by each probe as well.

Example (data made with ``draco simulate``, kept outside the repo; the MAE-only encoder is the
bundled encoder's recipe with ``stage="mae"``, exported with ``draco export``):
    draco simulate -o /work/cur2/train --preset classic --n-micrographs 300 --size 1024 \\
        --pixel-size 2.0 --bad-fraction 0.5 --no-movies --seed 11 -j 2
    draco simulate -o /work/cur2/test --preset classic --n-micrographs 150 --size 1024 \\
        --pixel-size 2.0 --bad-fraction 0.5 --no-movies --seed 22 -j 2
    OMP_NUM_THREADS=2 python benchmarks/curate.py --train /work/cur2/train/micrographs.star \\
        --test /work/cur2/test/micrographs.star --encoder draco=bundled \\
        --encoder mae=/work/cur2/mae_tiny.safetensors --tokens-only --work /work/cur2/bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.baselines import LogisticRegression, ResNet18, resnet_input, spectrum_features
from draco_em.curate.config import CuratePredictConfig, CurateTrainConfig, FeatureConfig
from draco_em.curate.predict import predict_curation
from draco_em.curate.train import class_weights, train_curator
from draco_em.evaluate.curate import EvaluateCurateConfig, binary_metrics, evaluate_curate
from draco_em.io.labels import LabelSet, read_labels
from draco_em.io.mrc import read_image
from draco_em.pick.evidence import ParticleEvidence

REAL = (
    Path(__file__).resolve().parents[2] / "shared/data/micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"
)
REAL_PIXEL_SIZE = 4.0  # Å: 4x-binned K2 frame (README); the header's 1.0 is a placeholder


def probe(name: str, weights: str, args: argparse.Namespace, spectrum: bool = True) -> dict:
    """Train a head on one encoder with the library, predict the test set, score it.

    ``spectrum=False`` is the paper's head alone (pooled DRACO tokens, no spectrum features).
    """
    run, pred = args.work / f"run_{name}", args.work / f"pred_{name}"
    feats = FeatureConfig(tile=args.tile, spectrum=spectrum)
    t0 = time.time()
    train_curator(
        CurateTrainConfig(
            labels=args.train,
            out_dir=run,
            weights=weights,
            epochs=args.epochs,
            features=feats,
            finetune=args.finetune,
            progress=False,
        )
    )
    t_train = time.time() - t0
    predict_curation(
        CuratePredictConfig(
            inputs=[str(args.test)], out_dir=pred, model=str(run), progress=False, contact_sheet=6
        ),
        evidence=ParticleEvidence(),
    )
    out = evaluate_curate(EvaluateCurateConfig(pred=pred / "curation.csv", truth=args.test))
    out["train_seconds"] = round(t_train, 1)
    if REAL.is_file():
        real = predict_curation(
            CuratePredictConfig(
                inputs=[str(REAL)],
                out_dir=args.work / f"real_{name}",
                model=str(run),
                pixel_size=REAL_PIXEL_SIZE,
                progress=False,
                contact_sheet=1,
            ),
            evidence=ParticleEvidence(),
        )
        row = real.table.iloc[0]
        out["real"] = {
            "decision": row["decision"],
            "reason": row["reason"],
            "p_accept": float(row["p_accept"]),
        }
    return out


def bundled(args: argparse.Namespace) -> dict:
    """The bundled curator, zero-shot (no training on the test set's kind of data)."""
    pred = args.work / "pred_bundled"
    t0 = time.time()
    predict_curation(
        CuratePredictConfig(
            inputs=[str(args.test)], out_dir=pred, model="bundled", progress=False, contact_sheet=6
        ),
        evidence=ParticleEvidence(),
    )
    out = evaluate_curate(EvaluateCurateConfig(pred=pred / "curation.csv", truth=args.test))
    out["predict_seconds"] = round(time.time() - t0, 1)
    # balanced accuracy (the figure): mean of the accept and reject recalls
    pos, neg = out["tp"] + out["fn"], out["tn"] + out["fp"]
    recalls = [out["tp"] / pos] * bool(pos) + [out["tn"] / neg] * bool(neg)
    out["balanced_accuracy"] = float(np.mean(recalls))
    return out


def _score(labels: LabelSet, probs: np.ndarray, classes: list[str]) -> dict:
    y = np.array([classes.index(c) for c in labels.labels])
    out = binary_metrics(y == 0, probs[:, 0] >= 0.5)
    out["class_accuracy"] = float(np.mean(probs.argmax(1) == y))
    return out


def spectrum_inputs(items: list[tuple[Path, float | None]]) -> np.ndarray:
    """``[N, 10]`` power-spectrum features of (micrograph, pixel size in Å) pairs."""
    x = np.array([spectrum_features(read_image(p, px)[0], px or 1.0) for p, px in items])
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # as curate_real's leave-one-out


def fit_spectrum(x: np.ndarray, y: np.ndarray, n_classes: int) -> LogisticRegression:
    """The power-spectrum baseline: class-balanced multinomial logistic regression, L2 1e-3."""
    return LogisticRegression(1e-3).fit(x, y, n_classes, class_weights(y, n_classes, [0]))


def spectrum_baseline(train: LabelSet, test: LabelSet, classes: list[str]) -> dict:
    """Power-spectrum features + multinomial logistic regression."""
    y = np.array([classes.index(c) for c in train.labels])
    model = fit_spectrum(spectrum_inputs(_pairs(train)), y, len(classes))
    return _score(test, model.predict_proba(spectrum_inputs(_pairs(test))), classes)


def _pairs(ls: LabelSet) -> list[tuple[Path, float | None]]:
    return list(zip(ls.paths, ls.pixel_sizes, strict=True))


def resnet_inputs(items: list[tuple[Path, float | None]], size: int) -> torch.Tensor:
    """``[N, 1, size, size]`` ResNet inputs (whole micrograph Fourier-resized, standardised)."""
    return torch.from_numpy(
        np.stack([resnet_input(read_image(p, px)[0], px, size) for p, px in items])
    )[:, None]


def fit_resnet(x: torch.Tensor, y: torch.Tensor, n_classes: int, epochs: int) -> ResNet18:
    """ResNet-18 (width 64) from scratch on ``x [N, 1, H, W]``, labels ``y [N]``: AdamW, one-cycle
    learning rate (peak 2e-3), batch 16, flip/rot90 augmentation, class-balanced loss, seed 0."""
    torch.manual_seed(0)
    net = ResNet18(n_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, 2e-3, total_steps=epochs * ((len(y) + 15) // 16)
    )
    weight = torch.tensor(class_weights(y.numpy(), n_classes, [0]), dtype=torch.float32)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y)).split(16):
            if len(idx) < 2:
                continue
            xb = torch.rot90(x[idx], int(torch.randint(4, ())), (2, 3))
            xb = torch.flip(xb, (3,)) if torch.rand(()) < 0.5 else xb
            loss = torch.nn.functional.cross_entropy(net(xb), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def resnet_proba(net: ResNet18, x: torch.Tensor) -> np.ndarray:
    """Class probabilities ``[N, C]`` of ``x [N, 1, H, W]``."""
    return torch.cat([torch.softmax(net(b), -1) for b in x.split(32)]).numpy()


def resnet_baseline(
    train: LabelSet, test: LabelSet, classes: list[str], args: argparse.Namespace
) -> dict:
    """ResNet-18 from scratch on downsampled micrographs (flip/rot90 augmentation)."""
    xtr, xte = (
        resnet_inputs(_pairs(train), args.resnet_size),
        resnet_inputs(_pairs(test), args.resnet_size),
    )
    y = torch.tensor([classes.index(c) for c in train.labels])
    t0 = time.time()
    net = fit_resnet(xtr, y, len(classes), args.resnet_epochs)
    out = _score(test, resnet_proba(net, xte), classes)
    out["train_seconds"] = round(time.time() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train", type=Path, default=None, help="labelled training set (needed "
                    "by --encoder probes and the baselines)")  # fmt: skip
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--encoder", action="append", default=[], help="NAME=WEIGHTS (repeatable)")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/curate"))
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--finetune", type=int, default=0)
    ap.add_argument("--resnet-size", type=int, default=128)
    ap.add_argument("--resnet-epochs", type=int, default=30)
    ap.add_argument("--skip", nargs="*", default=[], help="resnet and/or spectrum")
    ap.add_argument(
        "--tokens-only",
        action="store_true",
        help="also score each encoder's head without the spectrum features (the paper's head)",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bundled", action="store_true",
                    help="also score the bundled curator zero-shot on --test")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict[str, dict] = {}
    if args.bundled:
        results["bundled_zero_shot"] = bundled(args)
        print("bundled", json.dumps({k: v for k, v in results["bundled_zero_shot"].items()
                                     if k not in ("confusion", "misses")}), flush=True)  # fmt: skip
    if args.train is None:
        args.skip = ["resnet", "spectrum"]
        if args.encoder:
            ap.error("--encoder needs --train")
        train = test = classes = None
    else:
        train, test = read_labels(args.train), read_labels(args.test)
        classes = train.classes()
    variants = [("", True)] + ([("_tokens_only", False)] if args.tokens_only else [])
    for spec in args.encoder:
        encoder_name, weights = spec.split("=", 1)
        for suffix, spectrum in variants:
            name = encoder_name + suffix
            r = results[f"probe_{name}"] = probe(name, weights, args, spectrum)
            shown = {k: v for k, v in r.items() if k not in ("confusion", "misses")}
            print(name, json.dumps(shown), flush=True)
    if "spectrum" not in args.skip:
        results["power_spectrum_logreg"] = spectrum_baseline(train, test, classes)
        print("spectrum", results["power_spectrum_logreg"], flush=True)
    if "resnet" not in args.skip:
        results["resnet18_scratch"] = resnet_baseline(train, test, classes, args)
        print("resnet18", results["resnet18_scratch"], flush=True)
    print("\n| method | accuracy | precision | recall | F1 | 7-class acc. | real micrograph |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        real = r.get("real", {})
        real_s = (
            f"{real.get('decision')} ({real.get('reason')}, p={real.get('p_accept', 0):.2f})"
            if real
            else "—"
        )
        cls = r.get("class_accuracy")
        if cls is None and "confusion" in r:
            cm = r["confusion"]
            cls = sum(cm[c].get(c, 0) for c in cm) / r["n"]
        print(
            f"| {name} | {r['accuracy']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {cls:.3f} | {real_s} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
