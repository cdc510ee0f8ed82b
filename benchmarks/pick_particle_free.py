"""Picks on micrographs that hold no particle (issue 18, session 15).

A picker should find (almost) nothing on an empty hole or a field of clean ice. This counts
the picks ``draco pick predict`` makes with its defaults on:

* **MicAssess** (``shared/data/micassess``, real, 494 × 512 PNGs, ~7 Å/px): per class, with
  ``--pixel-size 7 --diameter 150``. The particle-free classes are ``Empty_no_ice`` and
  ``Empty_ice_no_particles_but_vitreous_ice`` (3 each); the good ones ``Great`` and ``Decent``
  (3 each). ``free_share`` = picks on the 6 particle-free micrographs / picks on those 12.
* **cryoJAX curation sets** (the second simulator, ``--indep DIR``: ``curate_{1p5A,3p0A}_
  {1024,2048}``, 4 good + 4 bad each, one bad one ``empty``): per micrograph and reason, with
  ``--diameter 200`` (the sets mix apoferritin and ribosomes).

    OMP_NUM_THREADS=2 python benchmarks/pick_particle_free.py --model bundled \\
        --out /work/s20/free_bundled --indep /work/indep_sets --json free_bundled.json

Real sets are read in place; nothing is copied. A missing set is skipped with a reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from draco_em.io.coords import read_coords
from draco_em.io.star import read_star
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.run import predict_all

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FREE = ("Empty_no_ice", "Empty_ice_no_particles_but_vitreous_ice")
GOOD = ("Great", "Decent")
CRYOJAX_SETS = ("curate_1p5A_1024", "curate_1p5A_2048", "curate_3p0A_1024", "curate_3p0A_2048")


def pick_counts(
    inputs: Path, out: Path, model: str, diameter: float, pixel_size: float | None = None,
    scales: str | None = None,
) -> dict[str, int]:  # fmt: skip
    """Picks per micrograph stem made by ``draco pick predict``'s defaults; ``scales`` =
    ``--diameter-scales`` (None: the default, 'auto' for the bundled picker only; 'auto'
    scores a candidate for the bundled picker the way it would run once installed)."""
    cfg = PickPredictConfig(inputs=[inputs], outdir=out, model=model, diameter=diameter,
                            pixel_size=pixel_size, previews=False,
                            diameter_scales=scales)  # fmt: skip
    predict_all(cfg, progress=False)
    return {
        f.name.removesuffix("_autopick.star"): len(read_coords(f))
        for f in sorted((out / "coordinates").glob("*_autopick.star"))
    }


def micassess(model: str, out: Path, scales: str | None = None) -> dict:
    """Picks per MicAssess class, and the particle-free share of the free + good picks."""
    labels = pd.read_csv(SHARED / "micassess" / "labels.csv")
    counts = pick_counts(SHARED / "micassess" / "micrographs", out, model, 150.0, 7.0, scales)
    by_class: dict[str, list[int]] = {}
    for name, cls in zip(labels["name"], labels["class"], strict=True):
        by_class.setdefault(str(cls), []).append(counts.get(Path(str(name)).stem, 0))
    free = sum(sum(by_class.get(c, [])) for c in FREE)
    good = sum(sum(by_class.get(c, [])) for c in GOOD)
    return {"by_class": by_class, "free_picks": free, "good_picks": good,
            "free_share": free / max(free + good, 1)}  # fmt: skip


def cryojax(model: str, indep: Path, out: Path, scales: str | None = None) -> dict:
    """Picks per micrograph of the cryoJAX curation sets, by the set's reason column."""
    res = {}
    for name in CRYOJAX_SETS:
        star = indep / name / "micrographs.star"
        if not star.is_file():
            res[name] = {"skipped": f"{star} not found"}
            continue
        table = read_star(star)["micrographs"]
        counts = pick_counts(star, out / name, model, 200.0, scales=scales)
        stems = table["rlnMicrographName"].map(lambda p: Path(str(p)).stem)
        reasons = dict(zip(stems, table["dracoReason"].astype(str), strict=True))
        res[name] = {stem: {"reason": reasons.get(stem, "?"), "picks": n}
                     for stem, n in counts.items()}  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--indep", type=Path, default=None, help="folder of the cryoJAX sets")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--diameter-scales", choices=("auto",), default=None,
                    help="auto: as the bundled picker runs by default (a candidate)")  # fmt: skip
    args = ap.parse_args()
    res: dict = {"model": args.model, "diameter_scales": args.diameter_scales}
    if (SHARED / "micassess" / "labels.csv").is_file():
        res["micassess"] = micassess(args.model, args.out / "micassess", args.diameter_scales)
        m = res["micassess"]
        print(f"MicAssess: {m['free_picks']} picks on the 6 particle-free micrographs, "
              f"{m['good_picks']} on the 6 good ones (free share {m['free_share']:.3f}); "
              f"{m['by_class']}", flush=True)  # fmt: skip
    else:
        print(f"MicAssess skipped: {SHARED / 'micassess'} not found")
    if args.indep is not None:
        res["cryojax"] = cryojax(args.model, args.indep, args.out / "cryojax", args.diameter_scales)
        for name, rows in res["cryojax"].items():
            if "skipped" in rows:
                print(name, rows["skipped"])
                continue
            good = [r["picks"] for r in rows.values() if r["reason"] == "none"]
            bad = {r["reason"]: r["picks"] for r in rows.values() if r["reason"] != "none"}
            print(name, bad | {"good": good}, flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
