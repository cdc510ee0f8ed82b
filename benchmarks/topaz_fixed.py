"""Topaz's CLI with one bug of Topaz 0.3.20 fixed in memory (run with Topaz's own Python).

``topaz.stats.pixels_given_radius(radius, dims=2)`` builds a *3-D* ``meshgrid`` and then
ignores z for ``dims == 2``, so it counts the disc ``2·radius + 1`` times: 17,777 pixels for
``radius=14`` instead of 613, 203 for the default ``radius=3`` instead of 29. ``topaz train``
uses it twice, for the labelled fraction ``p_observed`` and for ``pi`` from ``-n`` (expected
particles per micrograph), so both come out ``2r + 1`` times too large. With ``-r 14`` on
1024² images and ``-n 624``, ``pi`` = 10.6 and ``p_observed`` = 1.13 (Topaz prints both): the
GE-binomial penalty is then the log-pmf of a binomial with p > 1, NaN from the first step, and
the weights NaN from the second. With ``-r 3`` the run is finite but ``pi`` is 7× too large.

This wrapper replaces the function with the 2-D/3-D disc count and then runs ``topaz`` with
the same arguments, so ``python benchmarks/topaz_fixed.py train ...`` (with
``/work/venvs/topaz/bin/python``) is ``topaz train ...`` with ``pi`` as Topaz documents it.
Run it from outside Topaz's package folder (Topaz ships a ``torch.py`` that shadows torch).
"""

from __future__ import annotations

import sys

import numpy as np
import topaz.stats
import topaz.training
from topaz.main import main


def pixels_given_radius(radius: int, dims: int = 2) -> int:
    """Pixels (voxels) within ``radius`` of a centre pixel: a disc in 2-D, a ball in 3-D."""
    grid = np.arange(-radius, radius + 1)
    axes = np.meshgrid(*([grid] * dims), indexing="ij")
    return int((sum(a**2 for a in axes) <= radius**2).sum())


# topaz.stats.calculate_pi looks the name up in its module; topaz.training imported it by name.
topaz.stats.pixels_given_radius = pixels_given_radius
topaz.training.pixels_given_radius = pixels_given_radius

if __name__ == "__main__":
    sys.exit(main())
