"""The two pictures of issue 18/20 session 4 (docs/img), from outputs the benchmarks wrote.

* ``ribo4A``: raw, clean, draco, draco at 4 Å without upsampling, Topaz, best Gaussian on a
  256² crop of cryoJAX ``ribo70s_4A_000`` (``benchmarks/denoise_indep.py`` output folder W,
  with ``W/pred/draco_native`` from the command in docs/benchmarks.md);
* ``scales``: picks at the stored threshold, default and ``--diameter-scales 1,0.85``, over the
  expert picks on a 1600² crop of one EMPIAR-10017 micrograph (STARs written at threshold 0.05
  by the picker into V1/ and V2/ folders).

    python benchmarks/figures_session4.py ribo4A --pred /work/runs/cj_ribo4/pred \\
        --out docs/img/denoise_ribo4A.png
    python benchmarks/figures_session4.py scales --pred /work/h18/scales_test/empiar_V1 \\
        /work/h18/scales_test/empiar_V2 --out docs/img/pick_scales_empiar.png
    python benchmarks/figures_session4.py scales --pred /work/h18/tta_real/draco_tta2 \\
        /work/h18/autoscale_real/draco --titles "given diameter (before)" \\
        "multiple chosen (x0.85, now)" --out docs/img/pick_autoscale_empiar.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_real import EMPIAR, PIXEL

from draco_em.io.coords import read_coords
from draco_em.io.mrc import read_image

RIBO4 = Path("/work/indep_sets/ribo70s_4A")


def ribo4a(pred: Path, out: Path, name: str = "ribo70s_4A_000.mrc") -> None:
    panels = [("raw", RIBO4 / "micrographs" / name), ("clean (truth)", RIBO4 / "clean" / name),
              ("draco bundled", pred / "draco" / name),
              ("draco at 4 Å (no upsampling)", pred / "draco_native" / name),
              ("Topaz-Denoise unet", pred / "topaz_unet" / name),
              ("best Gaussian", pred / "oracle_gaussian" / name)]  # fmt: skip
    _, axes = plt.subplots(1, len(panels), figsize=(24, 4.4))
    for ax, (title, path) in zip(axes, panels, strict=True):
        crop = read_image(path)[0][200:456, 200:456]
        lo, hi = np.percentile(crop, [1, 99])
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    plt.tight_layout()
    plt.savefig(out, dpi=60)
    # grey panels only: an 8-bit greyscale PNG is a third of the RGBA one matplotlib writes
    Image.open(out).convert("L").save(out)


def _star(folder: Path, stem: str) -> Path:
    """A micrograph's picks: ``<stem>.star``, or a `draco pick predict` folder's STAR."""
    plain = folder / f"{stem}.star"
    return plain if plain.is_file() else folder / "coordinates" / f"{stem}_autopick.star"


def scales(
    v1: Path, v2: Path, out: Path, stem: str = "Falcon_2012_06_12-16_26_22_0",
    threshold: float = 0.3748, y0: int = 1200, x0: int = 1200, side: int = 1600,
    titles: tuple[str, str] = ("default", "--diameter-scales 1,0.85"),
) -> None:  # fmt: skip
    image = read_image(EMPIAR / "micrographs" / f"{stem}.jpg", PIXEL)[0]
    truth = read_coords(EMPIAR / "coordinates" / f"{stem}.star")
    runs = [(titles[0] + ": {} picks on the micrograph", v1), (titles[1] + ": {} picks", v2)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.6))
    for ax, (title, folder) in zip(axes, runs, strict=True):
        picks = read_coords(_star(folder, stem))
        picks = picks[picks["score"] >= threshold]
        crop = image[y0 : y0 + side, x0 : x0 + side][::2, ::2]
        lo, hi = np.percentile(crop, [1, 99])
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        for df, r, colour, lw in ((truth, 20, "lime", 1.0), (picks, 13, "red", 1.4)):
            inside = df[(df.x >= x0) & (df.x < x0 + side) & (df.y >= y0) & (df.y < y0 + side)]
            for x, y in zip(inside.x, inside.y, strict=True):
                ax.add_patch(Circle(((x - x0) / 2, (y - y0) / 2), r, fill=False, ec=colour, lw=lw))
        ax.set_title(title.format(len(picks)))
        ax.axis("off")
    fig.suptitle(
        f"EMPIAR-10017 {stem}, {side}² crop ({len(truth)} expert picks on the micrograph)\n"
        f"red: picks at the stored {threshold:.3f}; green: experts"
    )
    plt.tight_layout(rect=(0, 0, 1, 0.92))
    plt.savefig(out, dpi=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("figure", choices=["ribo4A", "scales"])
    ap.add_argument("--pred", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--titles", nargs=2, default=["default", "--diameter-scales 1,0.85"],
                    help="scales: the two panels' names")  # fmt: skip
    args = ap.parse_args()
    if args.figure == "ribo4A":
        ribo4a(args.pred[0], args.out)
    else:
        scales(args.pred[0], args.pred[1], args.out, titles=tuple(args.titles))


if __name__ == "__main__":
    main()
