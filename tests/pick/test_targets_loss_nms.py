"""Heatmap targets and offsets, the nnPU focal loss on a hand example, and NMS by distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from draco_em.pick.data import Example, random_crop
from draco_em.pick.loss import class_prior, make_targets, offset_loss, pu_focal_loss
from draco_em.pick.nms import distance_nms, find_peaks


def test_target_peak_cell_and_offset():
    # x = 21.5 → u = (21.5 − 1.5) / 4 = 5.0 (cell 5, offset 0); y = 10.0 → v = 2.125 (cell 2).
    heat, off, centres = make_targets(np.array([[21.5, 10.0]]), (32, 32), sigma_px=4.0)
    assert heat.shape == (8, 8) and off.shape == (2, 8, 8)
    assert np.argwhere(centres).tolist() == [[2, 5]]
    assert heat[2, 5] == 1.0 and heat.max() == 1.0
    np.testing.assert_allclose(off[:, 2, 5], [0.0, 0.125])
    # σ = 4 px = 1 cell: one cell away the target is exp(-1/2).
    np.testing.assert_allclose(heat[2, 6], np.exp(-0.5), rtol=1e-6)
    assert off[:, centres == 0].max() == 0  # offsets only at centres


def test_centre_outside_crop_leaves_halo_but_no_positive():
    heat, _, centres = make_targets(np.array([[-3.0, 16.0]]), (32, 32), sigma_px=4.0)
    assert not centres.any()
    assert heat[:, 0].max() > 0.3  # the visible edge of the particle is not a negative


def test_pu_loss_hand_example():
    # Two cells: one labelled centre (logit 0, p = 1/2), one unlabelled (logit 0, Y = 0).
    logits = torch.zeros(1, 1, 1, 2)
    heat = torch.tensor([[[[1.0, 0.0]]]])
    centres = torch.tensor([[[[True, False]]]])
    prior = 0.25
    ln2 = np.log(2.0)
    r_pp = 0.25 * ln2  # (1 − ½)² · log 2
    r_pm = 0.25 * ln2  # ½² · log 2
    r_um = 0.25 * ln2
    expected = (prior * r_pp + max(0.0, r_um - prior * r_pm)) / prior
    got = pu_focal_loss(logits, heat, centres, prior)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_pu_loss_non_negative_correction_clamps():
    # The unlabelled cell is confidently negative, so R_u⁻ ≈ 0 < π·R_p⁻: the clamp leaves R_p⁺.
    logits = torch.tensor([[[[0.0, -20.0]]]])
    heat = torch.tensor([[[[1.0, 0.0]]]])
    centres = torch.tensor([[[[True, False]]]])
    got = pu_focal_loss(logits, heat, centres, 0.5)
    np.testing.assert_allclose(float(got), 0.25 * np.log(2.0), rtol=1e-5)


def test_pu_loss_spares_cells_next_to_a_centre():
    logits = torch.zeros(1, 1, 1, 3)
    centres = torch.tensor([[[[True, False, False]]]])
    near = pu_focal_loss(logits, torch.tensor([[[[1.0, 0.9, 0.9]]]]), centres, 0.1)
    far = pu_focal_loss(logits, torch.tensor([[[[1.0, 0.0, 0.0]]]]), centres, 0.1)
    assert float(near) < float(far)


def test_offset_loss_only_at_centres():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    target[0, :, 0, 0] = torch.tensor([0.5, -0.25])
    target[0, :, 1, 1] = 9.0  # not a centre: ignored
    centres = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    centres[0, 0, 0, 0] = True
    np.testing.assert_allclose(float(offset_loss(pred, target, centres)), 0.375)


def test_class_prior():
    assert class_prior(16, 64 * 64) == 16 / 256


def test_distance_nms_keeps_best_and_far_picks():
    xy = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [5.0, 0.0]])
    scores = np.array([0.5, 0.9, 0.8, 0.1])
    kept, s = distance_nms(xy, scores, min_distance=5.5)
    # (3, 4) wins; (0, 0) is 5 px from it → dropped; (10, 0) is 8.06 px away → kept;
    # (5, 0) is 4.5 px from (3, 4) → dropped.
    np.testing.assert_allclose(kept, [[3.0, 4.0], [10.0, 0.0]])
    np.testing.assert_allclose(s, [0.9, 0.8])


def test_find_peaks_one_per_blob_with_threshold():
    score = np.zeros((40, 40), np.float32)
    score[10, 10], score[10, 13], score[30, 25], score[5, 35] = 0.9, 0.8, 0.7, 0.2
    xy, s = find_peaks(score, min_distance=4, threshold=0.5)
    np.testing.assert_allclose(xy, [[10, 10], [25, 30]])  # (13, 10) suppressed, 0.2 below cut
    np.testing.assert_allclose(s, [0.9, 0.7], rtol=1e-6)


def test_scale_jitter_crops_keep_centres_on_their_particles():
    """A jittered crop is resampled to the requested size and the centres move with it."""
    img = np.zeros((400, 400), np.float32)
    centres = np.array([[120.0, 200.0], [260.0, 90.0], [300.0, 310.0]])
    for x, y in centres:
        yy, xx = np.mgrid[:400, :400]
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2)).astype(np.float32)
    ex = Example("a", img, centres, (1.0, 1.0), img.shape)
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(20):
        crop, xy, _ = random_crop(ex, 128, rng, augment=True, jitter=0.3)
        assert crop.shape == (128, 128) and crop.dtype == np.float32
        for x, y in xy:
            if 8 <= x < 120 and 8 <= y < 120:  # inside, away from the border
                x0, y0 = int(x) - 6, int(y) - 6
                iy, ix = np.unravel_index(crop[y0 : y0 + 13, x0 : x0 + 13].argmax(), (13, 13))
                assert abs(x0 + ix - x) <= 1.0 and abs(y0 + iy - y) <= 1.0
                seen += 1
    assert seen >= 5


def test_junk_mask_takes_code_one_only_with_area_resampling():
    from draco_em.pick.data import junk_mask

    regions = np.zeros((8, 8), np.int8)
    regions[:4, :4] = 1  # contamination: junk
    regions[4:, 4:] = 2  # carbon: particles lie on it, so not junk
    regions[0, 4:6] = 1  # half of one 2×2 output block: not a majority
    got = junk_mask(regions, (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(got, expected)


def test_junk_cells_spare_labelled_particles():
    from draco_em.pick.data import junk_cells

    junk = np.ones((32, 32), bool)  # everything is "junk", but a particle sits at (16, 16)
    heat, _, _ = make_targets(np.array([[17.5, 17.5]]), (32, 32), sigma_px=4.0)
    cells = junk_cells(junk, heat)
    assert cells.shape == (8, 8)
    assert not cells[4, 4] and not cells[3:6, 3:6].any()  # within ~2σ of the centre: spared
    assert cells[0, 0] and cells[7, 7]
    assert not junk_cells(None, heat).any()


def test_junk_term_hand_example():
    # One labelled centre (logit 0) and one junk cell at p = 1/2: the junk cell leaves the
    # unlabelled risk (empty, so 0) and adds λ · ½² · log 2 per labelled centre.
    logits = torch.zeros(1, 1, 1, 2)
    heat = torch.tensor([[[[1.0, 0.0]]]])
    centres = torch.tensor([[[[True, False]]]])
    junk = torch.tensor([[[[False, True]]]])
    ln2 = np.log(2.0)
    prior = 0.25
    base = (prior * 0.25 * ln2 + max(0.0, 0.0 - prior * 0.25 * ln2)) / prior
    for lam in (1.0, 3.0):
        got = pu_focal_loss(logits, heat, centres, prior, junk, lam)
        np.testing.assert_allclose(float(got), base + lam * 0.25 * ln2, rtol=1e-6)
    # a junk cell the model already rejects costs (almost) nothing
    sure = pu_focal_loss(torch.tensor([[[[0.0, -20.0]]]]), heat, centres, prior, junk, 3.0)
    np.testing.assert_allclose(float(sure), base, atol=1e-6)


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_crops_keep_the_junk_mask_on_the_image(jitter):
    """Flips, transposes and jitter move the junk mask with the image."""
    rng = np.random.default_rng(3)
    img = rng.standard_normal((300, 260)).astype(np.float32)
    ex = Example("a", img, np.zeros((0, 2)), (1.0, 1.0), img.shape, junk=img > 1.0)
    for _ in range(12):
        crop, _, junk = random_crop(ex, 96, rng, augment=True, jitter=jitter)
        assert junk.shape == crop.shape == (96, 96) and junk.dtype == bool
        if jitter == 0:
            np.testing.assert_array_equal(junk, crop > 1.0)
        else:  # resampled: bilinear image vs nearest mask agree on clear-cut pixels
            clear = np.abs(crop - 1.0) > 0.8
            assert (junk[clear] == (crop[clear] > 1.0)).mean() > 0.9
    assert random_crop(Example("b", img, np.zeros((0, 2)), (1, 1), img.shape), 96, rng)[2] is None


def test_background_subtraction_flattens_a_carbon_step_and_keeps_particles():
    from draco_em.pick.data import to_working

    yy, xx = np.mgrid[:256, :256]
    step = np.where(xx < 128, 0.0, 5.0)  # a carbon edge: a big step in the background
    blob = -np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 4.0**2))  # a particle on "ice"
    blob2 = -np.exp(-((xx - 192) ** 2 + (yy - 192) ** 2) / (2 * 4.0**2))  # one on "carbon"
    image = (step + blob + blob2).astype(np.float32)
    plain, _ = to_working(image, 1.0, 1.0)
    flat, _ = to_working(image, 1.0, 1.0, background_px=16.0)
    # without it the step dominates; with it both halves sit at the same level away from the
    # edge itself (within ~3σ of the step a transient remains)
    assert abs(np.median(plain[:, 186:]) - np.median(plain[:, :70])) > 1.0
    assert abs(np.median(flat[:, 186:]) - np.median(flat[:, :70])) < 0.05
    # and the two particles have the same depth against their own surroundings
    d1 = flat[64, 64] - flat[64, 90]
    d2 = flat[192, 192] - flat[192, 218]
    assert d1 < -1.0 and abs(d1 - d2) < 0.1 * abs(d1)
