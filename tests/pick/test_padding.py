"""Picks on a padded border (renderings padded to a square) are dropped; others are kept."""

import numpy as np

from draco_em.pick.predict import inside_padding


def _image(pad_top: int = 0, pad_right: int = 0) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(512, 512)).astype(np.float32)
    if pad_top:
        img[:pad_top] = img[pad_top]  # replicate the first real row, as a striped pad does
    if pad_right:
        img[:, img.shape[1] - pad_right :] = 0.0  # a constant pad
    return img


def test_picks_on_padding_are_dropped_and_inner_ones_kept():
    img = _image(pad_top=40, pad_right=30)
    xy = np.array([[100.0, 10.0], [100.0, 45.0], [495.0, 200.0], [470.0, 200.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    kept, s = inside_padding(xy, scores, img)
    assert kept.tolist() == [[100.0, 45.0], [470.0, 200.0]]
    assert s.tolist() == [0.8, 0.6]


def test_an_unpadded_micrograph_keeps_every_pick():
    img = _image()
    xy = np.array([[0.0, 0.0], [511.0, 511.0], [256.0, 3.0]])
    kept, s = inside_padding(xy, np.ones(3), img)
    assert np.array_equal(kept, xy) and len(s) == 3
