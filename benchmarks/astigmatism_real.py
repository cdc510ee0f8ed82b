"""The realistic simulator's astigmatism against the real CTF fits in ``shared/data``
(docs/simulator.md, "Realistic preset"; session 25 of issues 18–20).

Our draw: a set's maximum (dU − dV)/2 uniform in [0, ``RealismConfig.max_astigmatism``]
(``simulate.presets``), then each micrograph's (dU − dV)/2 uniform in [0, that maximum]
(``simulate.optics.draw_optics``); sampled here with those two draws. Real: |dU − dV| of each
micrograph of every STAR in ``shared/data`` that has ``rlnDefocusU``/``rlnDefocusV`` (one
value per micrograph name where the STAR names micrographs). Also the CTF phase between the
two axes at 4 Å and 300 kV, π λ |dU − dV| q².

Usage:
    python benchmarks/astigmatism_real.py [--data ../shared/data] [--samples 200000]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.star import read_star
from draco_em.simulate.presets import RealismConfig

WAVELENGTH_300KV = 0.0197  # Å
Q_4A = 1 / 4.0  # 1/Å


def ours(samples: int, seed: int = 0) -> np.ndarray:
    """|dU − dV| in Å of ``samples`` simulated micrographs, drawn as the preset draws them."""
    rng = np.random.default_rng(seed)
    set_max = rng.uniform(0, RealismConfig().max_astigmatism, samples)  # µm, per set
    half = rng.uniform(0, 1, samples) * set_max  # (dU − dV)/2 in µm, per micrograph
    return 2 * half * 1e4


def real(data: Path) -> dict[str, np.ndarray]:
    """|dU − dV| in Å per micrograph, per STAR file under ``data`` that has both columns."""
    found = {}
    for star in sorted(data.rglob("*.star")):
        try:
            blocks = read_star(star)
        except DracoInputError:  # a STAR we cannot read says nothing here
            continue
        for table in blocks.values():
            if not {"rlnDefocusU", "rlnDefocusV"} <= set(table.columns):
                continue
            diff = (table["rlnDefocusU"].astype(float) - table["rlnDefocusV"].astype(float)).abs()
            if "rlnMicrographName" in table:
                diff = diff.groupby(table["rlnMicrographName"]).first()
            found[str(star.relative_to(data))] = diff.to_numpy(float)
            break
    return found


def phase(diff_a: float) -> float:
    """CTF phase (rad) between the two axes at 4 Å and 300 kV for |dU − dV| = ``diff_a``."""
    return math.pi * WAVELENGTH_300KV * diff_a * Q_4A**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--samples", type=int, default=200_000)
    args = parser.parse_args()
    sim = ours(args.samples)
    print(f"ours (realistic preset): mean {sim.mean():.0f} Å, median {np.median(sim):.0f} Å, "
          f"phase at 4 Å {phase(sim.mean()):.2f} rad")  # fmt: skip
    for name, diff in real(args.data).items():
        print(f"{name}: {len(diff)} micrograph(s), mean {diff.mean():.0f} Å, median "
              f"{np.median(diff):.0f} Å, max {diff.max():.0f} Å, phase at 4 Å "
              f"{phase(diff.mean()):.2f} rad")  # fmt: skip


if __name__ == "__main__":
    main()
