"""The exact Poisson blend: the restoration's gradients inside the hole, the photo outside,
in float32, with its unknowns bounded whatever the hole's shape."""
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

import holes
import losses
import tf_process
from poisson_blend import MAX_EXACT, poisson_blend


def _random_hole(rng, side):
    hole = np.zeros((side, side), bool)
    hole[5:20, 8:25] = True
    hole[rng.random((side, side)) < 0.05] = True  # scattered pixels, some on the border
    return hole


def test_a_fill_offset_by_a_constant_blends_back_to_the_photo():
    rng = np.random.default_rng(0)
    photo = rng.random((32, 32, 3))
    hole = _random_hole(rng, 32)
    np.testing.assert_allclose(poisson_blend(photo, photo + 0.3, hole), photo, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_solution_has_the_fills_laplacian_and_keeps_the_context(channels):
    rng = np.random.default_rng(1)
    photo, fill = rng.random((32, 32, channels)), rng.random((32, 32, channels))
    hole = _random_hole(rng, 32)
    result = poisson_blend(photo, fill, hole)
    assert result.dtype == np.float32
    assert np.array_equal(result[~hole], photo[~hole].astype(np.float32))
    for y, x in zip(*np.nonzero(hole)):
        got, want = 0.0, 0.0
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            if 0 <= y + dy < 32 and 0 <= x + dx < 32:
                got += result[y, x] - result[y + dy, x + dx]
                want += fill[y, x] - fill[y + dy, x + dx]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_an_empty_hole_returns_the_photo():
    photo = np.random.default_rng(2).random((8, 8, 3))
    assert np.array_equal(poisson_blend(photo, 1 - photo, np.zeros((8, 8), bool)),
                          photo.astype(np.float32))


def test_a_striped_hole_is_refused_before_any_solve_and_a_solid_one_is_solved():
    """Thin stripes put every hole pixel in the exact band along the edge: past MAX_EXACT
    unknowns the blend gives None at once (the caller feathers). A solid hole of the same
    region is solved, its exact band a thin ring."""
    side = 2000
    photo = np.full((side, side, 3), 100, np.float32)
    striped = np.zeros((side, side), bool)
    striped[200:1800:2, 200:1800] = True
    assert striped.sum() > MAX_EXACT
    process = psutil.Process()
    start, before = time.perf_counter(), process.memory_info().rss
    assert poisson_blend(photo, photo + 5, striped, 256) is None
    assert time.perf_counter() - start < 2
    solid = np.zeros((side, side), bool)
    solid[500:1500, 500:1500] = True
    blended = poisson_blend(photo, photo + 5, solid, 256)
    np.testing.assert_allclose(blended[solid], 100, atol=0.01)  # the offset is solved away
    assert process.memory_info().rss - before < 1e9


def test_poisson_composite_removes_the_seam_of_a_shifted_fill():
    """A fill that is the photo 0.2 brighter pastes with a visible outline; blended, it is
    the photo itself."""
    images = tf.constant(np.random.default_rng(3).random((2, 32, 32, 3)), tf.float32)
    masks = holes.make_masks("center", 2, 32, [0, 0])
    pasted = images * (1 - masks) + (images + 0.2) * masks
    blended = tf_process.poisson_composite(images, images + 0.2, masks)
    assert float(tf.reduce_mean(losses.seam(images, pasted, masks))) > 10
    np.testing.assert_allclose(blended.numpy(), images.numpy(), atol=1e-5)
