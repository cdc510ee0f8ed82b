"""A curation head per input domain: raw sums and pre-denoised renderings (issue 19, session 12).

The rule is in docs/benchmarks.md ("Session 12, step 2"), written before anything here ran.
A raw sum carries shot noise, white up to Nyquist; a pre-denoised 8-bit picture (EMPIAR-10017's
JPEGs) holds almost nothing near Nyquist. :func:`domain_statistic` measures that, a threshold
chosen on simulated micrographs routes each micrograph to the installed (raw-trained) head or to
a head trained on renderings only, and the routed system is scored beside the installed head.

Steps (features cached in the recipe's shared folder, so the raw validation sets are reused):

    python benchmarks/curate_domains.py render --labels /work/cur19/train_s11both.csv \\
        --out /work/cur19/domain_train --seed 1212          # the raw rows only, rendered once
    python benchmarks/curate_domains.py render --labels /work/cur19/val7_noice_xtal.csv \\
        --out /work/cur19/domain_val7 --seed 1213           # and val4, val2
    python benchmarks/curate_domains.py threshold --raw /work/cur19/train_s11both.csv \\
        --rendered /work/cur19/domain_train.csv --json /work/cur19/domain_tau.json
    python benchmarks/curate_domains.py train --labels /work/cur19/domain_train.csv \\
        --val /work/cur19/domain_val{7,4,2}.csv --root /work/cur19
    python benchmarks/curate_domains.py score --rendered-head HEAD --tau T \\
        --val /work/cur19/val{7,4,2}_noice_xtal.csv /work/cur19/domain_val{7,4,2}.csv \\
        --sim test7=/work/cur19/test7/micrographs.star ... --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from draco_em.curate.augment import denoised_rendering
from draco_em.curate.config import CurateTrainConfig, FeatureConfig
from draco_em.curate.domain import DOMAIN_PX, nyquist_ratio
from draco_em.curate.head import Curator, load_curator
from draco_em.curate.spread import check_spread
from draco_em.curate.train import train_curator
from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale
from draco_em.io.classes import GOOD
from draco_em.io.labels import read_labels
from draco_em.io.mrc import read_image, write_mrc
from draco_em.model.encoder import load_encoder
from draco_em.pick.evidence import ParticleEvidence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import curate_real as cr  # the real sets' loaders, featurizer and scoring
import train_bundled_curator as tbc  # validation of a head on labelled sets

#: The statistic D and its sampling live in the package (``curate/domain.py``, added after this
#: step was scored: ``draco curate predict`` records D and warns on pre-denoised batches).
domain_statistic = nyquist_ratio


# ------------------------------------------------------------------------------ render
def render(labels: Path, out: Path, seed: int, local_contrast_p: float = 0.0) -> Path:
    """Every raw micrograph of ``labels`` (rows from a ``render*`` folder left out) rendered
    once, from the raw sum or from clean + residual noise (p = ½ each); returns the CSV."""
    dest_csv = out.parent / f"{out.name}.csv"  # named after the set (validation reports by name)
    if dest_csv.is_file():
        return dest_csv
    ls = read_labels(labels)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = ["micrograph,label,pixel_size,source,raw"]
    for path, lab, px in zip(ls.paths, ls.labels, ls.pixel_sizes, strict=True):
        if path.parent.name.startswith("render"):
            continue
        px = float(px or 1.0)
        image, _ = read_image(path, px)
        from_clean = bool(rng.random() < 0.5)
        clean = None
        if from_clean:
            clean, _ = read_image(path.parent.parent / "clean" / path.name, px)
        sigma = None
        if local_contrast_p > 0 and rng.random() < local_contrast_p:  # step 3
            sigma = float(rng.uniform(100.0, 400.0))
        picture = denoised_rendering(image, px, rng, clean=clean, local_contrast=sigma)
        dest = out / f"{path.parent.parent.name}_{path.stem}.mrc"
        write_mrc(dest, picture.astype(np.float32), px)
        source = ("clean" if from_clean else "raw") + (f"+lc{sigma:.0f}" if sigma else "")
        rows.append(f"{dest},{lab},{px},{source},{path}")
    dest_csv.write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} renderings → {dest_csv}", flush=True)
    return dest_csv


# ----------------------------------------------------------------------------- realism
def local_contrast_cv(image: np.ndarray, pixel_size: float | None, window: int = 40) -> float:
    """Coefficient of variation over the field of the local standard deviation in
    ``window``² px windows at :data:`DOMAIN_PX` (image standardised, a 3 % border cut):
    low where every region has the same contrast (CLAHE-like pictures)."""
    img = np.asarray(image, np.float32)
    if pixel_size and pixel_size < DOMAIN_PX - 1e-3:
        img, _ = fourier_rescale(img, pixel_size, DOMAIN_PX)
    h, w = img.shape
    cut_y, cut_x = int(0.03 * h), int(0.03 * w)
    img = img[cut_y : h - cut_y, cut_x : w - cut_x]
    img = (img - img.mean()) / max(float(img.std()), 1e-12)
    ny, nx = img.shape[0] // window, img.shape[1] // window
    blocks = img[: ny * window, : nx * window].reshape(ny, window, nx, window)
    local = blocks.std(axis=(1, 3))
    return float(local.std() / max(float(local.mean()), 1e-12))


def realism(csvs: list[Path]) -> dict:
    """Median local-contrast CV of EMPIAR-10017 (no labels read) and of each rendering set;
    for a set whose ``source`` column marks equalised renderings (``+lc``), also the median
    of those and of the others apart (issue 18 session 13: a mixture's median can match where
    neither part does)."""
    empiar = sorted((cr.DATA / "empiar10017" / "micrographs").glob("*.jpg"))
    cvs = [local_contrast_cv(read_image(p, cr.EMPIAR_PX)[0], cr.EMPIAR_PX) for p in empiar]
    out = {"empiar10017": float(np.median(cvs))}
    for csv in csvs:
        ls = read_labels(csv)
        values = np.array([local_contrast_cv(read_image(p, px)[0], px)
                           for p, px in zip(ls.paths, ls.pixel_sizes, strict=True)])  # fmt: skip
        out[csv.stem] = float(np.median(values))
        out[csv.stem + "_distance_to_empiar"] = abs(out[csv.stem] - out["empiar10017"])
        source = pd.read_csv(csv).get("source")
        if source is not None and source.str.contains("lc").any():
            lc = source.str.contains("lc").to_numpy()
            for part, rows in (("equalised", lc), ("not_equalised", ~lc)):
                out[f"{csv.stem}_{part}"] = {
                    "n": int(rows.sum()), "median": float(np.median(values[rows])),
                    "p10_p90": np.percentile(values[rows], [10, 90]).round(3).tolist()}  # fmt: skip
    return out


# --------------------------------------------------------------------------- threshold
def best_threshold(raw: np.ndarray, rendered: np.ndarray) -> tuple[float, int]:
    """τ misrouting the fewest (raw < τ or rendered ≥ τ): the geometric middle of the best
    interval between consecutive sorted values; returns (τ, misrouted count)."""
    values = np.sort(np.concatenate([raw, rendered]))
    cuts = np.sqrt(values[:-1] * values[1:])  # geometric middles between neighbours
    errors = np.array([(raw < c).sum() + (rendered >= c).sum() for c in cuts])
    best = np.flatnonzero(errors == errors.min())
    # the best cuts may form several runs; take the middle of the widest contiguous one
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    run = max(runs, key=lambda r: values[r[-1] + 1] / values[r[0]])
    lo, hi = values[run[0]], values[run[-1] + 1]
    return float(np.sqrt(lo * hi)), int(errors.min())


def threshold(raw_csv: Path, rendered_csv: Path) -> dict:
    raw_ls, ren_ls = read_labels(raw_csv), read_labels(rendered_csv)
    raw = np.array(
        [
            domain_statistic(read_image(p, px)[0], px)
            for p, px in zip(raw_ls.paths, raw_ls.pixel_sizes, strict=True)
            if not p.parent.name.startswith("render")
        ]
    )
    ren = np.array(
        [
            domain_statistic(read_image(p, px)[0], px)
            for p, px in zip(ren_ls.paths, ren_ls.pixel_sizes, strict=True)
        ]
    )
    tau, errors = best_threshold(raw, ren)
    q = [0, 0.01, 0.1, 0.5, 0.9, 0.99, 1]
    return {
        "tau": tau,
        "misrouted": errors,
        "n_raw": len(raw),
        "n_rendered": len(ren),
        "raw_below_tau": int((raw < tau).sum()),
        "rendered_at_or_above_tau": int((ren >= tau).sum()),
        "raw_quantiles": dict(zip(map(str, q), np.quantile(raw, q).round(4).tolist(), strict=True)),
        "rendered_quantiles": dict(
            zip(map(str, q), np.quantile(ren, q).round(4).tolist(), strict=True)
        ),
    }


# ------------------------------------------------------------------------------- train
def train(
    labels: Path, val: list[Path], root: Path, l2s: list[float], epochs: int, tag: str = "domainR"
) -> dict:
    run = root / "runs" / "shared"  # the recipe's folder: one feature cache
    results = {}
    for l2 in l2s:
        train_curator(
            CurateTrainConfig(
                labels=labels, out_dir=run, l2=l2, epochs=epochs,
                features=FeatureConfig(blocks="encoder"), progress=False,
            ),
            evidence=ParticleEvidence(),
        )  # fmt: skip
        head = root / "runs" / f"curator_{tag}_l2_{l2:g}.safetensors"
        shutil.copyfile(run / "curator.safetensors", head)
        results[str(head)] = tbc.validate(head, val, run / "features")
        print(head.name, json.dumps(results[str(head)], default=str), flush=True)
    passing = [k for k, v in results.items() if v["spread_ok"]]
    best = max(passing, key=lambda k: (results[k]["score"], k)) if passing else None
    return {"heads": results, "chosen": best}


# ------------------------------------------------------------------------------- score
class Routed:
    """The installed head where D ≥ τ, the rendering head where D < τ."""

    def __init__(self, raw: Curator, rendered: Curator, tau: float) -> None:
        self.raw, self.rendered, self.tau = raw, rendered, tau

    def rows(self, items: list[cr.Item], d: np.ndarray) -> list[dict]:
        raw_rows = cr.zero_shot(self.raw, items)
        ren_rows = cr.zero_shot(self.rendered, items)
        out = []
        for r_raw, r_ren, value in zip(raw_rows, ren_rows, d, strict=True):
            row = dict(r_ren if value < self.tau else r_raw)
            row["route"] = "rendered" if value < self.tau else "raw"
            row["D"] = round(float(value), 4)
            out.append(row)
        return out


def labelled_items(path: Path) -> list[cr.Item]:
    """A labelled CSV or STAR as benchmark items (decision right = accept iff good)."""
    ls = read_labels(path)
    return [
        cr.Item(p, px, lab, lab == GOOD, (lab,) if lab != GOOD else ())
        for p, px, lab in zip(ls.paths, ls.pixel_sizes, ls.labels, strict=True)
    ]


def score(args: argparse.Namespace) -> dict:
    raw_head = load_curator(args.raw_head)
    ren_head = load_curator(args.rendered_head)
    if raw_head.encoder != ren_head.encoder or raw_head.features != ren_head.features:
        raise SystemExit("both heads must share one encoder and feature configuration")
    encoder = load_encoder(raw_head.encoder, torch.device("cpu"), raw_head.features.pixel_size)
    cache = args.root / "runs" / "shared" / "features"
    routed = Routed(raw_head, ren_head, args.tau)
    sets: dict[str, list[cr.Item]] = {}
    for v in args.val:
        sets[f"val:{v.stem}"] = labelled_items(v)
    if cr.DATA.is_dir():
        sets |= cr.real_sets()
    for spec in args.sim:
        name, _, star = spec.partition("=")
        sets[f"sim:{name}"] = labelled_items(Path(star))
    out: dict = {"tau": args.tau}
    for name, items in sets.items():
        cr.featurize(encoder, raw_head.features, items, cache)
        d = np.array([domain_statistic(read_image(it.path, it.pixel_size)[0], it.pixel_size)
                      for it in items])  # fmt: skip
        installed = cr.summarize(cr.zero_shot(raw_head, items), items)
        system = cr.summarize(routed.rows(items, d), items)
        try:
            decisions = [r["decision"] for r in system["rows"]]
            reasons = [r["reason"] for r in system["rows"]]
            spread = check_spread(decisions, reasons, name=name)
        except DracoInputError as exc:
            spread = str(exc)
        out[name] = {
            "installed": {k: v for k, v in installed.items() if k != "rows"},
            "routed": system,
            "routed_spread": spread,
            "n_rendered_route": int((d < args.tau).sum()),
            "D_quantiles": np.quantile(d, [0, 0.5, 1]).round(4).tolist(),
        }
        print(
            f"{name}: installed {installed['balanced_accuracy']:.3f} "
            f"(accepted {installed['accepted']}/{len(items)}), routed "
            f"{system['balanced_accuracy']:.3f} (accepted {system['accepted']}/{len(items)}), "
            f"{int((d < args.tau).sum())}/{len(items)} to the rendering head",
            flush=True,
        )
    vals = [k for k in out if k.startswith("val:")]
    if vals:
        out["val_score_installed"] = float(
            np.mean([out[k]["installed"]["balanced_accuracy"] for k in vals])
        )
        out["val_score_routed"] = float(
            np.mean([out[k]["routed"]["balanced_accuracy"] for k in vals])
        )
    return out


# ------------------------------------------------------------------------------ figure
def figure(rendered: Path, out: Path, n: int = 2) -> None:
    """EMPIAR-10017 beside our renderings of good and crystalline-ice fields, all at 7 Å/px.

    Crops of 280 px (1,960 Å), each in its own 1–99 % window: the first EMPIAR-10017
    micrograph by name past its striped border, then the first ``n`` 2 Å renderings of each
    class in ``rendered`` (a ``render`` CSV).
    """
    from PIL import Image  # plotting only

    def crop(path: Path, px: float, offset: int = 0) -> np.ndarray:
        image, _ = read_image(path, px)
        if px < DOMAIN_PX - 1e-3:
            image, _ = fourier_rescale(image, px, DOMAIN_PX)
        tile = image[offset : offset + 280, offset : offset + 280]
        lo, hi = np.percentile(tile, [1, 99])
        return (np.clip((tile - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    empiar = sorted((cr.DATA / "empiar10017" / "micrographs").glob("*.jpg"))[0]
    panels = [crop(empiar, cr.EMPIAR_PX, offset=40)]
    ls = read_labels(rendered)
    for label in (GOOD, "crystalline_ice"):
        rows = [
            (p, px)
            for p, lab, px in zip(ls.paths, ls.labels, ls.pixel_sizes, strict=True)
            if lab == label and px == 2.0
        ]
        panels += [crop(p, px) for p, px in rows[:n]]
    gap = np.full((280, 6), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)
    Image.fromarray(row).save(out)
    print(f"EMPIAR-10017 {empiar.stem} | {n} good | {n} crystalline_ice renderings → {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("render")
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument(
        "--local-contrast-p", type=float, default=0.0,
        help="share of renderings also locally contrast-normalised (step 3: 0.5)",
    )  # fmt: skip
    p = sub.add_parser("realism")
    p.add_argument("--rendered", type=Path, nargs="+", required=True)
    p = sub.add_parser("threshold")
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--rendered", type=Path, required=True)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("train")
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--val", type=Path, nargs="+", required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--tag", default="domainR", help="head files curator_TAG_l2_*.safetensors")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("figure")
    p.add_argument("--rendered", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("score")
    p.add_argument("--raw-head", default="bundled")
    p.add_argument("--rendered-head", required=True)
    p.add_argument("--tau", type=float, required=True)
    p.add_argument("--root", type=Path, default=Path("/work/cur19"))
    p.add_argument("--val", type=Path, nargs="*", default=[])
    p.add_argument("--sim", nargs="*", default=[], help="NAME=STAR held-out sets")
    p.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "render":
        render(args.labels, args.out, args.seed, args.local_contrast_p)
        return
    if args.cmd == "realism":
        print(json.dumps(realism(args.rendered), indent=1))
        return
    if args.cmd == "figure":
        figure(args.rendered, args.out)
        return
    if args.cmd == "threshold":
        result = threshold(args.raw, args.rendered)
    elif args.cmd == "train":
        result = train(args.labels, args.val, args.root, args.l2, args.epochs, args.tag)
    else:
        result = score(args)
    text = json.dumps(result, indent=1, default=str)
    print(text if args.cmd != "score" else json.dumps({k: v for k, v in result.items()
                                                         if not isinstance(v, dict)}))  # fmt: skip
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
