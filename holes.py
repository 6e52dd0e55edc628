"""The holes a restoration fills: the centred square, the surgical mask's region and random
boxes, as training and every user of a trained run draw them, and the band they are
blended across. Masks are [batch, size, size, 1], 1 inside the hole, broadcast over the
channels."""
import numpy as np
import tensorflow as tf

MASKS = ("center", "random", "facemask", "mixed")
# mixed: the share of surgical-mask holes, and of centre squares, the rest random boxes
FACEMASK_SHARE = 0.25
CENTER_SHARE = 0.5



def center_box(size):
    """(top, left, side) of the centred square hole: (43, 43, 42) at 128."""
    side = size // 3
    return size // 2 - side // 2, size // 2 - side // 2, side


def _box_mask(top, left, height, width, size):
    """One [batch, size, size, 1] float mask from per-image box corners and sides."""
    rows = tf.range(size)[None, :, None]
    cols = tf.range(size)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + height)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + width)[:, None, None]))
    return tf.cast(inside, tf.float32)[..., None]


def facemask_region(size):
    """Where a surgical mask sits on an aligned face: nose bridge to chin, cheek to cheek,
    with a straight top and a rounded lower edge. float32 [size, size]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size + 0.5 / size
    top, bottom, half_width, round_from = 0.47, 0.84, 0.25, 0.62
    inside = (y >= top) & (y <= bottom) & (np.abs(x - 0.5) <= half_width)
    # Below round_from the outline is half an ellipse from cheek to cheek down to the chin.
    lower = ((x - 0.5) / half_width) ** 2 + ((y - round_from) / (bottom - round_from)) ** 2 <= 1
    return (inside & ((y <= round_from) | lower)).astype(np.float32)


def make_masks(kind, batch, size, seed):
    """A [batch, size, size, 1] mask; `seed` (int32 [2]) makes random boxes reproducible."""
    if kind == "center":
        top, left, side = center_box(size)
        return tf.broadcast_to(_box_mask(tf.constant([top]), tf.constant([left]),
                                         tf.constant([side]), tf.constant([side]), size),
                               [batch, size, size, 1])
    if kind == "facemask":
        return tf.broadcast_to(tf.constant(facemask_region(size))[None, ..., None],
                               [batch, size, size, 1])
    if kind == "random":
        # Corner uniform in [0, size/2); sides uniform in [size/4, size/2].
        u = tf.random.stateless_uniform([4, batch], seed, 0, 1)
        corner = tf.cast(u[:2] * (size // 2), tf.int32)
        sides = size // 4 + tf.cast(u[2:] * (size // 2 - size // 4 + 1), tf.int32)
        return _box_mask(corner[0], corner[1], sides[0], sides[1], size)
    if kind == "mixed":
        boxes = make_masks("random", batch, size, seed)
        wears_mask = tf.random.stateless_uniform(
            [batch, 1, 1, 1], tf.random.experimental.stateless_fold_in(seed, 1)) < FACEMASK_SHARE
        centred = tf.random.stateless_uniform(
            [batch, 1, 1, 1], tf.random.experimental.stateless_fold_in(seed, 2)
        ) < CENTER_SHARE / (1 - FACEMASK_SHARE)
        boxes = tf.where(centred, make_masks("center", batch, size, seed), boxes)
        return tf.where(wears_mask, make_masks("facemask", batch, size, seed), boxes)
    raise ValueError(f"unknown mask {kind!r}; choose one of {MASKS}")


def grow(masks, pixels):
    """The hole and every pixel within `pixels` of it (chessboard distance): `pixels` 3x3
    max-pools, each growing it by one pixel, a third of the work of one pool of side
    2 * pixels + 1 at the default band (README, Performance)."""
    for _ in range(pixels):
        masks = tf.nn.max_pool2d(masks, 3, 1, "SAME")
    return masks


def blend_weights(masks, band):
    """How much of the restoration a composite takes: 1 inside the hole, falling linearly to
    0 across `band` pixels around it (chessboard distance), so no hard edge shows."""
    rings = [masks]
    for _ in range(band):
        rings.append(grow(rings[-1], 1))
    return tf.add_n(rings) / (band + 1)
