"""Realism of a ``draco simulate`` set against every real micrograph set in ../shared/data.

Runs ``draco evaluate realism`` once per real set (each at its own pixel size, so each compares
at the coarser of the two samplings) and prints the Markdown table of docs/simulator.md,
"Realism against real micrographs". Re-run after any simulator change:

    .venv/bin/python benchmarks/realism.py                       # simulates /tmp/sim_realism
    .venv/bin/python benchmarks/realism.py --sim other/micrographs.star --out /tmp/realism2
    .venv/bin/python benchmarks/realism.py --plot docs/img/realism_micassess.png

Real sets (read in place):

* ``empiar10017``: 11 β-galactosidase micrographs, 1.77 Å/px, **denoised** 8-bit JPEG
  renderings with striped padding (not raw: their noise is filtered away);
* ``micassess``: 18 micrographs of many sessions (6 quality classes, bad ones included), ~7 Å/px,
  Fourier-downsampled and min-max scaled 8-bit PNG;
* ``micrograph_cleaner_em``: 1 raw-ish MotionCor2 dose-weighted sum (MRC, header 1.0 Å/px is a
  placeholder; ~4 Å/px for a 4×-binned K2 frame: an assumption).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
#: name → (inputs relative to DATA, pixel size in Å)
REAL_SETS = {
    "empiar10017": ("empiar10017/micrographs", 1.77),
    "micassess": ("micassess/micrographs", 7.0),
    "micrograph_cleaner_em": ("micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc", 4.0),
}
SIMULATE = ["--n-micrographs", "6", "--size", "1024", "--pixel-size", "1.5", "--no-movies"]
COLUMNS = [
    ("power spectrum (share of bins inside)", "power_spectrum"),
    ("NPS high-band slope", "hf_slope"),
    ("NPS log10 low/high", "low_high_log10"),
    ("skewness", "skewness"),
    ("excess kurtosis", "excess_kurtosis"),
    ("saturated fraction", "saturated_fraction"),
    ("encoder: mean gap / real spread", "encoder_features"),
]


def draco(*args: str) -> None:
    cmd = [sys.executable, "-m", "draco_em", *args]
    print("$ draco " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def cell(fig: dict, key: str, sets: dict) -> str:
    mark = "✓" if fig["inside"] else "✗"
    if key == "power_spectrum":
        return f"{100 * fig['inside_share']:.0f} % {mark}"
    if key == "encoder_features":
        ratio = fig["mean_distance_over_real_spread"]
        return f"{'n/a' if ratio is None else f'{ratio:.2f}'} {mark}"
    s, r = sets["sim"]["summary"][key], sets["real"]["summary"][key]
    return f"{s['median']:.3g} vs [{r['min']:.3g}, {r['max']:.3g}] {mark}"


def table(results: dict[str, dict]) -> str:
    head = "| real set (n, Å/px compared) | " + " | ".join(c for c, _ in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, res in results.items():
        sets = res["sets"]
        first = f"{name} ({sets['real']['n']}, {res['common_pixel_size']:.3g})"
        cells = [cell(res["figures"][key], key, sets) for _, key in COLUMNS]
        rows.append("| " + " | ".join([first, *cells]) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="/tmp/sim_realism/micrographs.star")
    ap.add_argument("--out", type=Path, default=Path("/tmp/realism"))
    ap.add_argument("--plot", type=Path, help="Copy one set's plot here (for the docs).")
    ap.add_argument("--plot-set", default="micassess", help="Which set's plot --plot copies.")
    ap.add_argument("--sets", default=",".join(REAL_SETS), help="Comma-separated real sets.")
    ap.add_argument("--table-only", action="store_true", help="Tabulate OUT/*/realism.json.")
    args = ap.parse_args()
    sim = Path(args.sim)
    if not sim.exists() and sim.name == "micrographs.star" and not args.table_only:
        draco("simulate", "-o", str(sim.parent), *SIMULATE)
    results = {}
    for name in args.sets.split(","):
        rel, px = REAL_SETS[name]
        if not (DATA / rel).exists():
            print(f"skipping {name}: {DATA / rel} is absent")
            continue
        out = args.out / name
        if not args.table_only:
            draco("evaluate", "realism", "--sim", str(sim), "--real", str(DATA / rel),
                  "--pixel-size", str(px), "-o", str(out), "-q")  # fmt: skip
        results[name] = json.loads((out / "realism.json").read_text())
    print(table(results))
    if args.plot and args.plot_set in results:
        shutil.copyfile(args.out / args.plot_set / "realism.png", args.plot)


if __name__ == "__main__":
    main()
