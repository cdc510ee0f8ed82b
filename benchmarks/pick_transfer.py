"""Does training on EMPIAR-10017's expert picks help on the other sets? (issue 18, session 26)

Issue 18 asks to retrain the bundled picker "on the real ``shared/data/empiar10017`` picks if that
helps on the other real sets". Until this script it was never tried. A picker trained on them
can no longer be scored zero-shot on EMPIAR-10017, so its gain must show elsewhere.

**The rule, fixed and committed before the candidate was trained or scored:**

* Candidate ``E11``: ``draco pick train --weights bundled`` on all 11 EMPIAR-10017 micrographs
  (the pre-denoised JPEGs, ``--pixel-size 1.77``, ``--diameter 191``) with all 7,439 expert picks,
  ``--expected-particles 676`` (the labels' own mean count: they are near complete), 30 epochs
  as every few-shot row, everything else ``pick train``'s defaults.
* Scored beside the bundled picker, each with ``pick predict``'s defaults (stored thresholds,
  the diameter multiple chosen from the data), on:
  (a) the MicAssess ring micrograph, F1 against our template-matching reference
  (``pick_micassess_rings.py``; not expert picks);
  (b) the real contaminated micrograph, the share of picks on the MicrographCleaner mask, no
  exclusion (``pick_contamination.py``);
  (c) cryoJAX ``apof_1p5A`` (``--diameter 130``) and ``ribo70s_2A`` (``--diameter 260``), F1
  within a quarter of the diameter (second simulator; ribosomes are evaluation structures, never
  trained on).
* ``E11`` would replace the bundled picker only if it is better on both real sets, (a) by
  ≥ 0.02 F1 and (b) by ≥ 0.02 less share on the mask, and not worse than − 0.02 F1 on either
  cryoJAX set. Otherwise the finding is written down and the bundled picker stays.

    OMP_NUM_THREADS=2 python benchmarks/pick_transfer.py --out /work/s31/transfer
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pick_real import EMPIAR, micrographs, train_draco

from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick

HERE = Path(__file__).resolve().parent
EXPECTED = 676  # 7,439 expert picks / 11 micrographs
EPOCHS = 30
CRYOJAX = {"apof_1p5A": (130.0, 1.5), "ribo70s_2A": (260.0, 2.0)}  # diameter Å, pixel size


def score_cryojax(model: str, data: Path, out: Path) -> dict:
    """F1 (P, R) at the stored threshold within d/4, and the best F1, on each cryoJAX set."""
    res = {}
    for name, (diameter, pixel) in CRYOJAX.items():
        folder = data / name
        if not folder.is_dir():
            res[name] = "absent"
            continue
        picks = out / name
        subprocess.run([sys.executable, "-m", "draco_em", "pick", "predict",
                        str(folder / "micrographs"), "-o", str(picks), "--model", model,
                        "--diameter", str(diameter), "--pixel-size", str(pixel), "-q",
                        "--no-previews"], check=True)  # fmt: skip
        cfg = EvaluatePickConfig(pred=picks / "coordinates", truth=folder / "coordinates",
                                 radius=diameter / pixel / 4)  # fmt: skip
        r = evaluate_pick(cfg)
        res[name] = {k: round(float(r[k]), 3) for k in ("f1", "precision", "recall", "best_f1")}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/pick_transfer"))
    ap.add_argument("--cryojax", type=Path, default=Path("/work/indep_sets"))
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    run = out / "E11"
    result: dict = {"rule": "see the docstring"}
    if not (run / "picker.safetensors").is_file():
        result["train"] = train_draco(run, micrographs(), EMPIAR / "coordinates", EXPECTED,
                                      "bundled", EPOCHS)  # fmt: skip
    for tag, model in (("bundled", "bundled"), ("E11", str(run))):
        rings, contam = out / f"rings_{tag}", out / f"contam_{tag}"
        subprocess.run([sys.executable, str(HERE / "pick_micassess_rings.py"), "--out",
                        str(rings), "--model", model], check=True)  # fmt: skip
        subprocess.run([sys.executable, str(HERE / "pick_contamination.py"), "--out",
                        str(contam), "--model", model], check=True)  # fmt: skip
        rings_res = json.loads((rings / "results.json").read_text())
        contam_res = json.loads((contam / f"{Path(model).name}.json").read_text())
        result[tag] = {
            "rings_f1": rings_res["draco_default"],
            "contamination_share_on_mask": contam_res["none"],
            "cryojax": score_cryojax(model, args.cryojax, out / f"cryojax_{tag}"),
        }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
