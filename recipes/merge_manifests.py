"""Merge several dataset manifests (micrographs STARs) into one, re-basing relative paths.

Usage: python recipes/merge_manifests.py OUT.star IN1.star IN2.star ...
Paths inside each input are made relative to OUT's folder, so `draco pretrain --data OUT.star`
finds every image. The optics block of the first input is kept (all inputs must share it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from draco_em.io.star import MicrographTable, read_micrographs_star, write_micrographs_star

PATH_COLUMNS = ("rlnMicrographName", "dracoMicrographEven", "dracoMicrographOdd", "dracoClean",
                "dracoCoordinates", "rlnMicrographMovieName", "dracoMotion",
                "dracoRegions")  # fmt: skip


def main(out: str, inputs: list[str]) -> None:
    out_dir = Path(out).resolve().parent
    tables = [read_micrographs_star(p) for p in inputs]
    frames = []
    for table in tables:
        rows = table.micrographs.copy()
        for col in PATH_COLUMNS:
            if col in rows:
                rows[col] = [
                    os.path.relpath(table.resolve(v), out_dir) if isinstance(v, str) and v else v
                    for v in rows[col]
                ]
        frames.append(rows)
    merged = pd.concat(frames, ignore_index=True)
    write_micrographs_star(out, MicrographTable(Path(out), tables[0].optics, merged))
    print(f"{out}: {len(merged)} micrographs from {len(inputs)} manifests")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
