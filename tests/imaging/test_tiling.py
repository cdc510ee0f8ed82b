"""Tiling: coverage, exact round trips, and seamless blending."""

from __future__ import annotations

import numpy as np
import pytest

from draco_em.imaging.tiling import (
    TileBlender,
    TileGrid,
    apply_tiled,
    blend_tiles,
    iter_tiles,
    tile_image,
)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((256, 256), 64, 8), ((300, 481), 256, 32), ((927, 959), 256, 32), ((64, 100), 64, 0)],
)
def test_grid_covers_the_image(shape: tuple[int, int], tile: int, overlap: int) -> None:
    grid = TileGrid(shape, tile, overlap)
    covered = np.zeros(shape, int)
    for y0, x0 in grid.origins:
        covered[y0 : y0 + tile, x0 : x0 + tile] += 1
    assert covered.min() >= 1
    for origins, size in ((grid.origins_y, shape[0]), (grid.origins_x, shape[1])):
        assert origins[0] == 0 and origins[-1] == size - tile  # last tile flush with the border
        assert np.all(np.diff(origins) <= tile - overlap)  # every overlap >= overlap


def test_default_overlap_is_an_eighth() -> None:
    assert TileGrid((512, 512), 256).overlap == 32


def test_bad_overlap_is_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TileGrid((512, 512), 64, 40)


@pytest.mark.parametrize("shape", [(200, 333), (927, 959), (40, 70), (1, 90)])
def test_constant_image_round_trips_exactly(shape: tuple[int, int]) -> None:
    img = np.full(shape, 6802.123, np.float32)
    grid = TileGrid(shape, 64, 8)
    tiles = tile_image(img, grid)
    assert tiles.shape == (len(grid), 64, 64)
    assert np.array_equal(blend_tiles(tiles, grid), img)


@pytest.mark.parametrize("shape", [(200, 333), (50, 130), (129, 129)])
def test_identity_model_round_trips_exactly(
    shape: tuple[int, int], rng: np.random.Generator
) -> None:
    img = rng.normal(size=shape).astype(np.float32)
    assert np.array_equal(apply_tiled(img, lambda batch: batch, 64, 16, batch_size=3), img)


def test_small_images_are_padded_by_reflection() -> None:
    img = np.arange(20, dtype=np.float32).reshape(4, 5)
    grid = TileGrid(img.shape, 8, 2)
    (tile,) = tile_image(img, grid)
    assert np.array_equal(tile[:4, :5], img)  # sample 0 stays in place
    assert np.array_equal(tile[4, :5], img[2])  # reflected about the last row
    assert np.array_equal(tile[:4, 5], img[:, 3])


def test_weight_is_one_where_one_tile_covers() -> None:
    grid = TileGrid((300, 481), 128, 16)
    total = np.zeros(grid.shape)
    single = np.zeros(grid.shape, int)
    for i, (y0, x0) in enumerate(grid.origins):
        total[y0 : y0 + 128, x0 : x0 + 128] += grid.weight(i)
        single[y0 : y0 + 128, x0 : x0 + 128] += 1
    for i, (y0, x0) in enumerate(grid.origins):
        only = single[y0 : y0 + 128, x0 : x0 + 128] == 1
        assert np.all(grid.weight(i)[only] == 1.0)
    assert total.min() > 0


def test_regular_overlaps_form_a_partition_of_unity() -> None:
    grid = TileGrid((64 * 3 - 16 * 2, 64 * 2 - 16), 64, 16)  # strides exactly tile - overlap
    total = np.zeros(grid.shape)
    for i, (y0, x0) in enumerate(grid.origins):
        total[y0 : y0 + 64, x0 : x0 + 64] += grid.weight(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.parametrize("shape", [(400, 500), (300, 481)])
def test_no_seams_for_a_per_tile_linear_function(
    shape: tuple[int, int], rng: np.random.Generator
) -> None:
    tile, overlap = 96, 24
    grid = TileGrid(shape, tile, overlap)
    offsets = rng.uniform(0, 1, size=len(grid))
    slopes = rng.uniform(-0.01, 0.01, size=len(grid))
    ramp = np.arange(tile)[None, :]
    tiles = np.stack([offsets[i] + slopes[i] * ramp + 0 * ramp.T for i in range(len(grid))])
    out = blend_tiles(tiles, grid, dtype=np.float64)
    spread = offsets.max() - offsets.min()
    # A raised-cosine ramp of length L changes a weight by at most pi / (2 L) per pixel, so a
    # jump between tiles of size `spread` becomes steps of at most ~spread * pi / (2 L).
    bound = spread * np.pi / (2 * overlap) + 0.01 * 2
    step = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert step <= bound
    # Hard stitching (each pixel from the last tile covering it) has jumps of ~spread.
    hard = np.zeros(shape)
    for i, (y0, x0) in enumerate(grid.origins):
        hard[y0 : y0 + tile, x0 : x0 + tile] = tiles[i]
    assert np.abs(np.diff(hard, axis=1)).max() > 3 * bound


def test_streaming_equals_one_shot(rng: np.random.Generator) -> None:
    img = rng.normal(size=(300, 481)).astype(np.float32)
    grid = TileGrid(img.shape, 128, 16)
    one_shot = blend_tiles(tile_image(img, grid) * 2.0, grid)
    blender = TileBlender(grid)
    sizes = []
    for idx, batch in iter_tiles(img, grid, batch_size=4):
        sizes.append(len(idx))
        blender.add(idx, batch * 2.0)
    assert max(sizes) == 4 and sum(sizes) == len(grid)
    np.testing.assert_array_equal(blender.result(), one_shot)
    np.testing.assert_allclose(one_shot, 2.0 * img, rtol=1e-6)


def test_torch_model_output_is_accepted(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    img = rng.normal(size=(130, 150)).astype(np.float32)
    done = []
    out = apply_tiled(img, lambda b: torch.from_numpy(b) + 1.0, 64, 8, 5, progress=done.append)
    np.testing.assert_allclose(out, img + 1.0, atol=1e-6)
    assert sum(done) == len(TileGrid(img.shape, 64, 8))


def test_missing_tiles_are_detected() -> None:
    grid = TileGrid((200, 200), 64, 8)
    blender = TileBlender(grid)
    blender.add(np.array([0]), np.zeros((1, 64, 64)))
    with pytest.raises(RuntimeError, match="no tile"):
        blender.result()


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((200, 317), 64, 8), ((50, 40), 64, 8), ((256, 256), 64, 32), ((130, 90), 32, 0)],
)
def test_the_weight_sum_is_the_outer_product_of_the_axis_sums(
    shape: tuple[int, int], tile: int, overlap: int
) -> None:
    # TileBlender divides by outer(Wy, Wx) instead of accumulating every tile's weight.
    grid = TileGrid(shape, tile, overlap)
    total = np.zeros(grid.padded_shape)
    for i in range(len(grid)):
        y0, x0 = grid.origin(i)
        total[y0 : y0 + tile, x0 : x0 + tile] += grid.weight(i)
    wy, wx = grid.axis_weight_sums()
    np.testing.assert_allclose(np.outer(wy, wx), total, rtol=1e-12)
