"""Pick previews (issue 16): drawn on a low-pass filtered micrograph, with a score legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from draco_em.io.coords import make_coords
from draco_em.pick.report import LEGEND_PX, save_overlay


def _load(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_overlay_is_filtered_and_has_a_score_legend(tmp_path, rng) -> None:
    image = rng.normal(size=(200, 240)).astype(np.float32)  # white noise: filtering shows
    picks = make_coords("m", [60.0, 180.0], [50.0, 50.0], score=[0.3, 0.9])
    raw = _load(save_overlay(tmp_path / "raw.png", image, picks, 10.0))
    low = _load(save_overlay(tmp_path / "low.png", image, picks, 10.0, pixel_size=2.0,
                             threshold=0.5))  # fmt: skip
    assert raw.shape == low.shape == (200, 240 + LEGEND_PX, 3)
    band = np.s_[120:190, 10:230]  # far from the circles: grey micrograph only
    assert (low[band][..., 0] == low[band][..., 1]).all()
    # A 20 Å low-pass at 2 Å/px smooths white noise: neighbouring pixels become alike.
    step = lambda a: np.abs(np.diff(a[band][..., 0], axis=1)).mean()  # noqa: E731
    assert step(low) < 0.3 * step(raw)
    legend = low[20:180, 240:]
    colour = (legend.max(axis=-1) - legend.min(axis=-1)) > 40  # viridis, not grey
    assert colour.sum() > 500
    assert np.abs(low[:, :240] - raw[:, :240]).sum() > 0


def test_overlay_circles_have_the_particle_diameter(tmp_path) -> None:
    """The circles were drawn 8 % wider than the particle (a scatter size in points² taken
    as pixels²)."""
    picks = make_coords("m", [150.0], [150.0], score=[0.9])
    png = _load(save_overlay(tmp_path / "o.png", np.zeros((300, 300), np.float32), picks, 40.0))
    ring = (png[:, :300].max(axis=-1) - png[:, :300].min(axis=-1)) > 40  # viridis on black
    cols = np.flatnonzero(ring.any(axis=0))
    assert abs((cols[-1] - cols[0]) - 80) <= 2  # outer edge to outer edge: 2 radii + a line
