"""Does the bundled curator's decision on a real micrograph depend on its field size or pixel
size? (issue 19: "any field of view … and pixel size"; a diagnostic, it decides nothing.)

Issue 19 asks for ≥ 0.95 "whatever the field size and pixel size" on simulated sets, and for
the bundled head to sort real micrographs "at any field of view (a 1k² binned image to a 6k²
K3 micrograph) and pixel size". The simulated figures are in docs/benchmarks.md; this measures
the invariance on the real micrographs we have, without new labels: each real micrograph is
shown to ``draco curate predict`` as it is and in two altered forms a user could hand over,

* ``crop``: the central quarter of the field (half the side), same pixel size;
* ``bin2``: the whole field Fourier-binned ×2 (half the pixels per side, twice the pixel size),
* ``bin2_up``: ``bin2`` Fourier-padded back to the original shape and pixel size: the
  information of ``bin2`` at the original sampling, which tells a change due to the pixel size
  the head is shown from one due to the detail lost,

and the decisions are compared with the original's (agreement) and with the labels where there
are some (MicAssess balanced accuracy; EMPIAR-10017 all good; the contaminated micrograph bad,
for contamination). Sets, read in place from ``shared/data`` (pixel sizes as
``benchmarks/curate_real.py`` assumes them):

* MicAssess, 18 PNG, 494 × 512, ~7 Å/px (bin2: 14 Å, 247 × 256);
* EMPIAR-10017, 11 JPEG, 4096², 1.77 Å/px, pre-denoised (crop 2048²; bin2 3.54 Å);
* the contaminated micrograph ``Ucsf_stack_1142_DW``, 927 × 959, ~4 Å/px.

Variants are written as float32 MRC with their pixel size under ``--work``; each variant of
each set is one ``draco curate predict`` run with the bundled head (as a user runs it).

    OMP_NUM_THREADS=2 python benchmarks/curate_fields.py --work /work/s23/fields \\
        --json /work/s23/fields.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.imaging.fourier import fourier_resize
from draco_em.io.mrc import read_image, write_mrc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VARIANTS = ("orig", "crop", "bin2", "bin2_up")


def _sets(data: Path) -> dict[str, tuple[list[Path], float]]:
    """Set name → (micrographs, pixel size in Å)."""
    mica = sorted((data / "micassess" / "micrographs").glob("*.png"))
    emp = sorted((data / "empiar10017" / "micrographs").glob("*.jpg"))
    mce = [data / "micrograph_cleaner_em" / "Ucsf_stack_1142_DW.mrc"]
    return {"micassess": (mica, 7.0), "empiar10017": (emp, 1.77), "contaminated": (mce, 4.0)}


def _variant(image: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """(image, pixel-size factor) of one variant."""
    ny, nx = image.shape
    if name == "crop":
        return image[ny // 4 : ny // 4 + ny // 2, nx // 4 : nx // 4 + nx // 2], 1.0
    if name == "bin2":
        return fourier_resize(image, (ny // 2, nx // 2)), ny / (ny // 2)
    if name == "bin2_up":
        return fourier_resize(fourier_resize(image, (ny // 2, nx // 2)), (ny, nx)), 1.0
    return image, 1.0


def make_variants(work: Path, sets: dict) -> dict[tuple[str, str], tuple[Path, float]]:
    """Write every variant folder; (set, variant) → (folder, pixel size)."""
    out = {}
    for set_name, (paths, px) in sets.items():
        for var in VARIANTS:
            folder = work / "images" / set_name / var
            folder.mkdir(parents=True, exist_ok=True)
            factor = 1.0
            for path in paths:
                dst = folder / f"{path.stem}.mrc"
                image = read_image(path, px)[0].astype(np.float32)
                img, factor = _variant(image, var)
                if not dst.exists():
                    write_mrc(dst, np.ascontiguousarray(img, np.float32), px * factor)
            out[(set_name, var)] = (folder, px * factor)
    return out


def _labels(data: Path) -> dict[str, str]:
    """Micrograph stem → expected decision (accept / reject)."""
    lab = pd.read_csv(data / "micassess" / "labels.csv")
    out = {r["name"]: "accept" if r["quality"] == "good" else "reject" for _, r in lab.iterrows()}
    out.update({p.stem: "accept" for p in (data / "empiar10017" / "micrographs").glob("*.jpg")})
    out["Ucsf_stack_1142_DW"] = "reject"
    return out


def _balanced(rows: pd.DataFrame) -> float:
    acc = []
    for want in ("accept", "reject"):
        sub = rows[rows["want"] == want]
        if len(sub):
            acc.append(float((sub["decision"] == want).mean()))
    return float(np.mean(acc))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--model", default="bundled")
    args = ap.parse_args(argv)
    sets = _sets(args.data)
    if not all(paths for paths, _ in sets.values()):
        sys.exit(f"real data missing under {args.data} (see shared/data READMEs)")
    folders = make_variants(args.work, sets)
    labels = _labels(args.data)
    tables = {}
    for (set_name, var), (folder, px) in folders.items():
        out = args.work / "runs" / set_name / var
        if not (out / "curation.csv").exists():
            cmd = [sys.executable, "-m", "draco_em", "curate", "predict", str(folder), "-o",
                   str(out), "--model", args.model, "--pixel-size", f"{px:.6g}"]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
        table = pd.read_csv(out / "curation.csv")
        table["stem"] = [Path(m).stem for m in table["micrograph"]]
        table["want"] = table["stem"].map(labels)
        tables[(set_name, var)] = table.set_index("stem")
    summary = []
    for (set_name, var), table in tables.items():
        orig = tables[(set_name, "orig")]
        same = (table["decision"] == orig.loc[table.index, "decision"]).mean()
        same_reason = (table["reason"] == orig.loc[table.index, "reason"]).mean()
        row = {
            "set": set_name, "variant": var, "pixel_size": folders[(set_name, var)][1],
            "n": len(table), "accepted": int((table["decision"] == "accept").sum()),
            "balanced_accuracy": round(_balanced(table.reset_index()), 3),
            "decision_agrees_with_orig": round(float(same), 3),
            "reason_agrees_with_orig": round(float(same_reason), 3),
            "reasons": table["reason"].value_counts().to_dict(),
        }  # fmt: skip
        summary.append(row)
        print(json.dumps(row), flush=True)
    per_mic = {f"{s}/{v}": t[["decision", "reason", "p_accept", "want"]].reset_index()
               .to_dict(orient="records") for (s, v), t in tables.items()}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "per_micrograph": per_mic}, indent=1))


if __name__ == "__main__":
    main()
