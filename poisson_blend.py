"""Gradient-domain (Poisson) blending of a restoration into its photo (Perez et al. 2003, as
GLCIC composes its fills): inside the hole the result keeps the restoration's gradients, on
the hole's edge it meets the photo exactly, so no seam is left where fill meets context.

Solved exactly, as one sparse linear system (scipy's LU factorisation, shared by the colour
channels), for any hole shape; cv2.seamlessClone would solve it too but can shift the patch
by a pixel (opencv issues #21902, #10627)."""
import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_cdt
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

NEIGHBOURS = ((0, 1), (0, -1), (1, 0), (-1, 0))
# Unknowns one exact solve may have: about 0.5 s and 100 MB for scipy's LU on 2 cores. A
# solid hole's band inside its edge stays far below it at any photo size; a hole made of
# thin stripes puts every pixel in that band, and is left to the caller's feathered blend.
MAX_EXACT = 250_000


def poisson_blend(photo, fill, hole, side=None):
    """photo, fill: float [h, w, c]; hole: bool [h, w]. Returns the photo (float32) with the
    hole replaced by the f that solves, at every hole pixel p with neighbours q (in the
    image): sum_q (f_p - f_q) = sum_q (fill_p - fill_q), with f = photo outside the hole.
    Returns None, having allocated nothing of the photo's size, when the exact solve would
    have more than MAX_EXACT unknowns.

    With `side`, a region larger than side x side is solved in two parts whose unknowns do
    not grow with the photo's area for a solid hole. f - fill is harmonic in the hole: a
    smooth correction that meets the photo at the hole's edge. Its smooth part is solved at
    side x side, with the hole grown to every small pixel it touches, and scaled back up;
    what the small solve cannot hold, the photo's fine detail along the edge, is solved
    exactly at full resolution in a band inside the edge as wide as two small pixels, where
    it dies out. Memory: a few float32 copies of the region, and the two solves."""
    if side is not None and max(hole.shape) > side:
        scale = side / max(hole.shape)
        band = 2 * int(np.ceil(1 / scale))
        edge = hole & (distance_transform_cdt(hole, "chessboard") <= band)
        if np.count_nonzero(edge) > MAX_EXACT:
            return None
        return _poisson_blend_scaled(np.asarray(photo, np.float32), np.asarray(fill, np.float32),
                                     hole, edge, scale)
    if np.count_nonzero(hole) > MAX_EXACT:
        return None
    return _solve(np.asarray(photo, np.float32), np.asarray(fill, np.float32), hole)


def _solve(photo, fill, hole):
    rows, cols = np.nonzero(hole)
    count = rows.size
    result = photo.copy()
    if count == 0:
        return result
    height, width = hole.shape
    index = np.full(hole.shape, -1, np.int32)
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
    result[rows, cols] = splu(system).solve(rhs)
    return result


def _resize(channels, size, resample):
    """Each channel of float32 [h, w, c] resized to size (width, height) by Pillow."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., k]), "F")
                                .resize(size, resample)) for k in range(channels.shape[2])], -1)


def _poisson_blend_scaled(photo, fill, hole, edge, scale):
    height, width = hole.shape
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    difference = _resize(photo - fill, small, Image.Resampling.BOX)
    small_hole = _resize(hole.astype(np.float32)[..., None], small, Image.Resampling.BOX)[..., 0] > 0
    correction = _solve(difference, np.zeros_like(difference), small_hole)
    correction = _resize(correction, (width, height), Image.Resampling.BILINEAR)
    estimate = photo.copy()
    estimate[hole] = fill[hole] + correction[hole]
    del correction
    return _solve(estimate, fill, edge)
