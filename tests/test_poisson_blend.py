"""The exact Poisson blend: the restoration's gradients inside the hole, the photo outside."""
import numpy as np
import pytest
import tensorflow as tf

import datamanager
import losses
import tf_process
from poisson_blend import poisson_blend


def _random_hole(rng, side):
    hole = np.zeros((side, side), bool)
    hole[5:20, 8:25] = True
    hole[rng.random((side, side)) < 0.05] = True  # scattered pixels, some on the border
    return hole


def test_a_fill_offset_by_a_constant_blends_back_to_the_photo():
    rng = np.random.default_rng(0)
    photo = rng.random((32, 32, 3))
    hole = _random_hole(rng, 32)
    np.testing.assert_allclose(poisson_blend(photo, photo + 0.3, hole), photo, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_solution_has_the_fills_laplacian_and_keeps_the_context(channels):
    rng = np.random.default_rng(1)
    photo, fill = rng.random((32, 32, channels)), rng.random((32, 32, channels))
    hole = _random_hole(rng, 32)
    result = poisson_blend(photo, fill, hole)
    assert np.array_equal(result[~hole], photo[~hole])
    for y, x in zip(*np.nonzero(hole)):
        got, want = 0.0, 0.0
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            if 0 <= y + dy < 32 and 0 <= x + dx < 32:
                got += result[y, x] - result[y + dy, x + dx]
                want += fill[y, x] - fill[y + dy, x + dx]
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_an_empty_hole_returns_the_photo():
    photo = np.random.default_rng(2).random((8, 8, 3))
    assert np.array_equal(poisson_blend(photo, 1 - photo, np.zeros((8, 8), bool)), photo)


def test_poisson_composite_removes_the_seam_of_a_shifted_fill():
    """A fill that is the photo 0.2 brighter pastes with a visible outline; blended, it is
    the photo itself."""
    images = tf.constant(np.random.default_rng(3).random((2, 32, 32, 3)), tf.float32)
    masks = datamanager.make_masks("center", 2, 32, [0, 0])
    pasted = images * (1 - masks) + (images + 0.2) * masks
    blended = tf_process.poisson_composite(images, images + 0.2, masks)
    assert float(tf.reduce_mean(losses.seam(images, pasted, masks))) > 10
    np.testing.assert_allclose(blended.numpy(), images.numpy(), atol=1e-5)
