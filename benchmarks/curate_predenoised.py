"""Reasons the curation head cannot judge on a pre-denoised picture (issue 19, session 13).

Applies the rule written in docs/benchmarks.md (issue 19, "Session 13"): the installed head's
answers, and two variants that accept a pre-denoised micrograph (Nyquist ratio below
``PRE_DENOISED_BELOW``) the head rejected for a reason it cannot judge there:

* V1: ``crystalline_ice``; V2: ``crystalline_ice``, ``thick_ice`` or ``drift``.

``--stage val`` scores them on session 12's six rendered validation sets (and reports the raw
ones); ``--stage test`` scores the variant named by ``--variant`` on the real sets, the cryoJAX
sets and ours, beside H0 (run only after the choice)::

    OMP_NUM_THREADS=2 python benchmarks/curate_predenoised.py --root /work/cur19 --stage val \\
        --json /work/cur19/predenoised_val.json
    OMP_NUM_THREADS=2 python benchmarks/curate_predenoised.py --root /work/cur19 --stage test \\
        --variant V1 --sim cj1p5_1024=/work/indep_sets/curate_1p5A_1024/micrographs.star ... \\
        --json /work/cur19/predenoised_test.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import curate_real as cr
from curate_domains import labelled_items

from draco_em.curate.features import micrograph_nyquist_ratio
from draco_em.curate.head import load_curator
from draco_em.curate.spread import check_spread
from draco_em.errors import DracoInputError
from draco_em.imaging.nyquist import PRE_DENOISED_BELOW
from draco_em.model.encoder import load_encoder

VARIANTS = {"H0": (), "V1": ("crystalline_ice",), "V2": ("crystalline_ice", "thick_ice", "drift")}
RENDERED = [f"{p}_val{s}.csv" for p in ("domain", "domainlc") for s in (7, 4, 2)]
RAW = [f"val{s}_noice_xtal.csv" for s in (7, 4, 2)]


def apply(rows: list[dict], ratios: np.ndarray, items: list[cr.Item], unjudged: tuple) -> list:
    """Rows with pre-denoised rejections for an ``unjudged`` reason turned into accepts."""
    out = []
    for row, ratio, it in zip(rows, ratios, items, strict=True):
        row = dict(row)
        if row["decision"] == "reject" and row["reason"] in unjudged and ratio < PRE_DENOISED_BELOW:
            row.update(decision="accept", reason="good", decision_right=it.good,
                       reason_right=it.good)  # fmt: skip
        out.append(row)
    return out


def score_set(curator, encoder, cache: Path, items: list[cr.Item], names) -> dict:
    cr.featurize(encoder, curator.features, items, cache)
    # the ratio as `draco curate predict` records it (curation reader, cached per file)
    ratios = np.array([micrograph_nyquist_ratio(it.path, it.pixel_size, cache) for it in items])
    base = cr.zero_shot(curator, items)
    res = {"n": len(items), "pre_denoised": int((ratios < PRE_DENOISED_BELOW).sum())}
    for v in names:
        s = cr.summarize(apply(base, ratios, items, VARIANTS[v]), items)
        try:
            check_spread([r["decision"] for r in s["rows"]], [r["reason"] for r in s["rows"]])
            s["spread"] = "passes"
        except DracoInputError as exc:
            s["spread"] = str(exc)
        res[v] = s
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/work/cur19"))
    ap.add_argument("--head", default="bundled")
    ap.add_argument("--stage", choices=("val", "test"), required=True)
    ap.add_argument("--variant", default="V1", choices=tuple(VARIANTS))
    ap.add_argument("--sim", nargs="*", default=[], help="NAME=labelled STAR (test stage)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    curator = load_curator(args.head)
    encoder = load_encoder(curator.encoder, torch.device("cpu"), curator.features.pixel_size)
    cache = args.root / "runs" / "shared" / "features"
    sets: dict[str, list[cr.Item]] = {}
    if args.stage == "val":
        names = tuple(VARIANTS)
        for f in RENDERED + RAW:
            sets[Path(f).stem] = labelled_items(args.root / f)
    else:
        names = ("H0", args.variant)
        sets |= cr.real_sets()
        for spec in args.sim:
            name, _, star = spec.partition("=")
            sets[name] = labelled_items(Path(star))
    out: dict = {}
    for name, items in sets.items():
        out[name] = score_set(curator, encoder, cache, items, names)
        line = "  ".join(f"{v} {out[name][v]['balanced_accuracy']:.3f} "
                         f"({out[name][v]['accepted']}/{len(items)})" for v in names)  # fmt: skip
        print(f"{name}: {out[name]['pre_denoised']}/{len(items)} pre-denoised  {line}", flush=True)
    if args.stage == "val":
        rendered = [Path(f).stem for f in RENDERED]
        for v in names:
            out[f"score_{v}"] = float(np.mean([out[k][v]["balanced_accuracy"] for k in rendered]))
            spread = [out[k][v]["spread"] for k in rendered]
            out[f"spread_{v}"] = "passes" if all(s == "passes" for s in spread) else spread
        print({k: v for k, v in out.items() if k.startswith(("score_", "spread_"))})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
