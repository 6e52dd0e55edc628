"""The metrics and the training-free references, on images whose answers are known."""
import numpy as np
import pytest
import tensorflow as tf

import holes
import losses
import model
import references


def _ramp(batch=2, size=32):
    """Images that brighten left to right: a known, constant gradient."""
    row = np.linspace(0.1, 0.9, size, dtype=np.float32)
    return tf.constant(np.broadcast_to(row[None, None, :, None], (batch, size, size, 3)).copy())


def test_hole_l1_is_on_the_0_255_scale():
    images = tf.fill([2, 32, 32, 3], 0.5)
    masks = holes.make_masks("center", 2, 32, [0, 0])
    np.testing.assert_allclose(losses.hole_l1(images, images - 0.1 * masks, masks), [25.5] * 2,
                               rtol=1e-5)


def test_seam_and_detail_of_a_perfect_and_a_flat_fill():
    images = _ramp()
    masks = holes.make_masks("center", 2, 32, [0, 0])
    np.testing.assert_allclose(losses.seam(images, images, masks), [0, 0], atol=1e-4)
    np.testing.assert_allclose(losses.detail(images, images, masks), [1, 1], rtol=1e-5)
    flat = images * (1 - masks) + 0.5 * masks
    # inside a flat fill nothing changes: no texture at all
    np.testing.assert_allclose(losses.detail(images, flat, masks), [0, 0], atol=1e-6)
    # the ramp's own gradient is 0.8 / 31 per pixel; at the rim the flat fill has another
    assert float(losses.seam(images, flat, masks)[0]) > 0.3 * 255 * 0.8 / 31


def test_reconstruction_loss_is_the_sum_over_the_hole():
    images = tf.ones([2, 32, 32, 3])
    masks = holes.make_masks("center", 2, 32, [0, 0])
    loss = losses.reconstruction_loss(images, tf.zeros_like(images), masks).numpy()
    np.testing.assert_allclose(loss, [10 * 10 * 3] * 2)


def test_hole_psnr_and_mean_colour_fill():
    images = tf.concat([tf.fill([1, 32, 32, 3], 0.5), tf.zeros([1, 32, 32, 3])], 0)
    masks = holes.make_masks("center", 2, 32, [0, 0])
    # on a flat image the border's mean colour is exactly right
    np.testing.assert_allclose(references.mean_border_fill(images, masks, 1), images, atol=1e-6)
    np.testing.assert_allclose(losses.hole_psnr(images, images + 0.1 * masks, masks),
                               [20.0, 20.0], rtol=1e-5)


@pytest.mark.parametrize("name", ["telea", "navier_stokes"])
def test_opencv_fills_restore_a_flat_image_and_keep_the_context(name):
    images = tf.fill([2, 32, 32, 3], 100 / 255)
    masks = holes.make_masks("random", 2, 32, [1, 2])
    noisy = images + 0.3 * masks * tf.random.uniform([2, 32, 32, 3], seed=0)
    filled = references.REFERENCES[name](noisy, masks)
    np.testing.assert_allclose(filled, images, atol=2.5 / 255)  # Telea rounds by up to 2
    np.testing.assert_array_equal((filled * (1 - masks)).numpy(), (noisy * (1 - masks)).numpy())


def test_blend_weights_fade_linearly_across_the_band():
    masks = holes.make_masks("center", 1, 32, [0, 0])  # rows and columns 11..20
    alpha = holes.blend_weights(masks, 2).numpy()[0, 16, :, 0]
    np.testing.assert_allclose(alpha[8:14], [0, 1 / 3, 2 / 3, 1, 1, 1], atol=1e-6)
    assert alpha[:9].max() == 0 and alpha[23:].max() == 0
    assert np.array_equal(holes.blend_weights(masks, 0), masks)


def test_overlap_band_and_feather_follow_the_side():
    config = model.TrainConfig(img_size=256, band=4, feather=True)
    assert model.band_pixels(config) == 8
    masks = holes.make_masks("center", 1, 256, [0, 0])
    alpha = model.composite_weights(masks, config).numpy()[0, ..., 0]
    top, left, side = holes.center_box(256)
    assert alpha[top - 8, left + 5] > 0 and alpha[top - 9, left + 5] == 0
    assert np.all(alpha[top:top + side, left:left + side] == 1)
