import numpy as np

import holes


def test_center_mask_at_128_is_the_42_square_at_43():
    assert holes.center_box(128) == (43, 43, 42)
    mask = holes.make_masks("center", 2, 128, [0, 0]).numpy()
    assert mask.shape == (2, 128, 128, 1)
    rows, cols = np.nonzero(mask[0, ..., 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (43, 84, 43, 84)
    assert mask.sum() == 2 * 42 * 42
    assert np.array_equal(mask[0], mask[1])


def test_random_masks_are_one_box_per_image_within_bounds():
    size = 128
    masks = holes.make_masks("random", 400, size, [3, 4]).numpy()[..., 0]
    tops, heights, widths = [], [], []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        top, left = rows.min(), cols.min()
        height, width = rows.max() - top + 1, cols.max() - left + 1
        assert mask.sum() == height * width  # one solid rectangle
        assert 0 <= top < size // 2 and 0 <= left < size // 2
        assert size // 4 <= height <= size // 2 and size // 4 <= width <= size // 2
        tops.append(top), heights.append(height), widths.append(width)
    # drawn per image, covering the whole allowed range
    assert len(set(tops)) > 40 and min(heights) == 32 and max(widths) == 64


def test_random_masks_are_reproducible_for_a_seed():
    a = holes.make_masks("random", 8, 64, [1, 2]).numpy()
    b = holes.make_masks("random", 8, 64, [1, 2]).numpy()
    c = holes.make_masks("random", 8, 64, [1, 3]).numpy()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_facemask_covers_the_lower_face_from_nose_to_chin():
    size = 128
    mask = holes.make_masks("facemask", 1, size, [0, 0]).numpy()[0, ..., 0]
    rows, cols = np.nonzero(mask)
    # nose bridge to chin, cheek to cheek, and nothing above the eyes' line
    assert 0.45 * size <= rows.min() <= 0.5 * size and 0.8 * size <= rows.max() <= 0.88 * size
    assert 0.22 * size <= cols.min() and cols.max() <= 0.78 * size
    assert mask[: int(0.45 * size)].sum() == 0
    # symmetric, and the lower edge is rounded: narrower at the chin than at the cheeks
    assert np.array_equal(mask, mask[:, ::-1])
    widths = mask.sum(axis=1)
    assert widths[rows.max()] < 0.5 * widths[rows.min()]
    assert 0.15 < mask.mean() < 0.3


def test_mixed_masks_are_half_centred_a_quarter_facemasks_and_the_rest_random_boxes():
    size, batch = 64, 400
    mixed = holes.make_masks("mixed", batch, size, [3, 4]).numpy()
    boxes = holes.make_masks("random", batch, size, [3, 4]).numpy()
    face = holes.make_masks("facemask", 1, size, [0, 0]).numpy()[0]
    centre = holes.make_masks("center", 1, size, [0, 0]).numpy()[0]
    is_face = np.all(mixed == face, axis=(1, 2, 3))
    is_centre = np.all(mixed == centre, axis=(1, 2, 3))
    is_box = ~is_face & ~is_centre
    # the boxes are the "random" boxes of the same seed, so a resumed run draws the same
    assert np.array_equal(mixed[is_box], boxes[is_box])
    # binomial(400, 0.25): 100 +- 8.7, binomial(400, 0.5): 200 +- 10; outside 70..130 and
    # 170..230 the odds are below 1 in 1,000
    assert 70 <= is_face.sum() <= 130 and 170 <= is_centre.sum() <= 230
    assert 70 <= is_box.sum() <= 130
    assert np.array_equal(mixed, holes.make_masks("mixed", batch, size, [3, 4]).numpy())
