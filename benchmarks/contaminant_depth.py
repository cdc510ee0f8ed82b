"""How dark contaminants are against the background, real micrographs vs a simulated set.

The calibration behind the realistic preset's ``contaminant_thickness_scale`` and
``bragg_loss_scale`` (docs/simulator.md, "Contaminant depth"). Every micrograph loses its padded
border, is Fourier-rescaled to 7 Å/px (MicAssess's sampling) and standardised with the package's
contrast-clipped mean and std (as ``draco evaluate realism``); then per micrograph:

* excess kurtosis and skewness, the 0.01/0.1/1/99/99.9 percentiles (σ units);
* dark blobs: connected regions of the 1-px Gaussian-smoothed image below −3 σ with ≥ 12 px
  (≥ 590 Å²): their count, area share and the darkest point of each (median and minimum).

``real`` measures MicAssess (18), EMPIAR-10017 (11) and the UCSF sum (its contamination mask's
components too); a STAR measures a simulated set:

    python benchmarks/contaminant_depth.py real
    python benchmarks/contaminant_depth.py /tmp/sim/micrographs.star
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from draco_em.evaluate.realism import read_cropped
from draco_em.imaging.fourier import fourier_rescale
from draco_em.imaging.normalize import clip_stats
from draco_em.io.mrc import read_image
from draco_em.io.star import read_micrographs_star

COMMON = 7.0  # Å/px
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def standardised(path: Path, px: float | None) -> np.ndarray:
    """The micrograph at 7 Å/px in units of its contrast-clipped std, mean 0."""
    img, px_, _ = read_cropped(path, px)
    if abs(px_ - COMMON) > 1e-3:
        img, _ = fourier_rescale(img, px_, COMMON)
    img = np.asarray(img, np.float64)
    mean, std = clip_stats(img.astype(np.float32))
    return (img - mean) / std


def blobs(z: np.ndarray, threshold: float = -3.0, min_area: int = 12) -> list[tuple]:
    """(area px, darkest smoothed value, median value) of each dark region."""
    smooth = ndimage.gaussian_filter(z, 1.0)
    labels, _ = ndimage.label(smooth < threshold)
    out = []
    for i, window in enumerate(ndimage.find_objects(labels), 1):
        region = labels[window] == i
        if region.sum() >= min_area:
            out.append(
                (int(region.sum()), float(smooth[window][region].min()),
                 float(np.median(z[window][region])))
            )  # fmt: skip
    return out


def summary(name: str, z: np.ndarray) -> dict:
    found = blobs(z)
    darkest = [b[1] for b in found]
    return {
        "name": name,
        "kurtosis": round(float(stats.kurtosis(z.ravel())), 2),
        "skewness": round(float(stats.skew(z.ravel())), 2),
        "percentiles": [round(float(v), 2) for v in np.percentile(z, [0.01, 0.1, 1, 99, 99.9])],
        "blobs": len(found),
        "blob_area_share": round(sum(b[0] for b in found) / z.size, 4),
        "blob_darkest_median": round(float(np.median(darkest)), 2) if darkest else None,
        "blob_darkest_min": round(float(min(darkest)), 2) if darkest else None,
    }


def real_rows() -> list[dict]:
    labels = pd.read_csv(DATA / "micassess/labels.csv").set_index("name")["class"]
    rows = [
        summary(f"micassess:{labels[p.stem]}", standardised(p, 7.0))
        for p in sorted((DATA / "micassess/micrographs").glob("*.png"))
    ]
    rows += [
        summary(f"empiar10017:{p.stem}", standardised(p, 1.77))
        for p in sorted((DATA / "empiar10017/micrographs").glob("*.jpg"))
    ]
    ucsf = DATA / "micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc"
    z = standardised(ucsf, 4.0)  # ~4 Å/px ASSUMED (header 1.0 is a placeholder)
    rows.append(summary("ucsf", z))
    mask, _ = read_image(ucsf.with_name("Ucsf_stack_1142_DW_mask.mrc"))
    mask, _ = fourier_rescale(mask.astype(np.float64), 4.0, COMMON)
    mask = np.asarray(mask)[: z.shape[0], : z.shape[1]]
    labels_, _ = ndimage.label(mask > 0.5)
    for i, window in enumerate(ndimage.find_objects(labels_), 1):
        region = labels_[window] == i
        if region.sum() >= 5:
            rows.append({"name": f"ucsf mask component {i}", "area_px": int(region.sum()),
                         "median": round(float(np.median(z[window][region])), 2)})  # fmt: skip
    return rows


def sim_rows(star: Path) -> list[dict]:
    table = read_micrographs_star(star)
    rows = []
    for i in range(len(table.micrographs)):
        path = table.resolve(str(table.micrographs.iloc[i]["rlnMicrographName"]))
        rows.append(summary(f"sim:{path.stem}", standardised(path, table.pixel_size(i))))
    return rows


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "real"
    rows = real_rows() if which == "real" else sim_rows(Path(which))
    for row in rows:
        print(json.dumps(row))
    scored = [r for r in rows if "kurtosis" in r]
    darkest = [r["blob_darkest_min"] for r in scored if r["blob_darkest_min"] is not None]
    print(
        f"median kurtosis {np.median([r['kurtosis'] for r in scored]):.2f}, median 0.01 % "
        f"percentile {np.median([r['percentiles'][0] for r in scored]):.2f} σ, median 99.9 % "
        f"{np.median([r['percentiles'][4] for r in scored]):.2f} σ; micrographs with dark "
        f"blobs {len(darkest)}/{len(scored)}, darkest blob per micrograph "
        f"{min(darkest, default=float('nan')):.2f}…{max(darkest, default=float('nan')):.2f} σ"
    )


if __name__ == "__main__":
    main()
