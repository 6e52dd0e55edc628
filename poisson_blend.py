"""Gradient-domain (Poisson) blending of a restoration into its photo (Perez et al. 2003, as
GLCIC composes its fills): inside the hole the result keeps the restoration's gradients, on
the hole's edge it meets the photo exactly, so no seam is left where fill meets context.

Solved exactly, as one sparse linear system per photo (scipy's LU factorisation, shared by
the colour channels), for any hole shape; cv2.seamlessClone would solve it too but can shift
the patch by a pixel (opencv issues #21902, #10627)."""
import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

NEIGHBOURS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def poisson_blend(photo, fill, hole, side=None):
    """photo, fill: float [h, w, c]; hole: bool [h, w]. Returns the photo with the hole
    replaced by the f that solves, at every hole pixel p with neighbours q (in the image):
    sum_q (f_p - f_q) = sum_q (fill_p - fill_q), with f = photo outside the hole.

    With `side`, a region larger than side x side is solved in two parts whose cost does
    not grow with the photo's area. f - fill is harmonic in the hole: a smooth correction
    that meets the photo at the hole's edge. Its smooth part is solved at side x side, with
    the hole grown to every small pixel it touches, and scaled back up; what the small solve
    cannot hold, the photo's fine detail along the edge, is solved exactly at full
    resolution in a band inside the edge as wide as two small pixels, where it dies out."""
    if side is not None and max(hole.shape) > side:
        return _poisson_blend_scaled(np.asarray(photo, np.float32), np.asarray(fill, np.float32),
                                     hole, side)
    photo = np.asarray(photo, np.float64)
    fill = np.asarray(fill, np.float64)
    rows, cols = np.nonzero(hole)
    count = rows.size
    if count == 0:
        return photo.copy()
    height, width = hole.shape
    index = np.full(hole.shape, -1, np.int64)
    index[rows, cols] = np.arange(count)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, photo.shape[2]))
    entries_i, entries_j = [], []
    for dy, dx in NEIGHBOURS:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        p, r, c = np.flatnonzero(inside), r[inside], c[inside]
        diagonal[p] += 1.0
        rhs[p] += fill[rows[p], cols[p]] - fill[r, c]
        q = index[r, c]
        unknown = q >= 0
        entries_i.append(p[unknown])
        entries_j.append(q[unknown])
        known = ~unknown  # a neighbour in the context: its photo value is fixed
        rhs[p[known]] += photo[r[known], c[known]]
    i = np.concatenate([np.arange(count), *entries_i])
    j = np.concatenate([np.arange(count), *entries_j])
    values = np.concatenate([diagonal, -np.ones(i.size - count)])
    system = coo_matrix((values, (i, j)), shape=(count, count)).tocsc()
    result = photo.copy()
    result[rows, cols] = splu(system).solve(rhs)
    return result


def _poisson_blend_scaled(photo, fill, hole, side):
    height, width = hole.shape
    scale = side / max(height, width)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    difference = cv2.resize(photo - fill, small, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), small, interpolation=cv2.INTER_AREA) > 0
    difference = difference.reshape(small[1], small[0], -1)
    correction = poisson_blend(difference, np.zeros_like(difference), small_hole)
    correction = cv2.resize(correction.astype(np.float32), (width, height),
                            interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
    estimate = photo.copy()
    estimate[hole] = fill[hole] + correction[hole]
    band = 2 * int(np.ceil(1 / scale))
    inside = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_C, 3)
    return poisson_blend(estimate, fill, hole & (inside <= band))
