"""Finding the faces in a photo and framing each as the run's training faces were framed.

MTCNN (PyPI's mtcnn, its weights inside the wheel: nothing is downloaded) looks at a copy of
the photo reduced to DETECT_SIDE pixels on its long side and gives each face's box and five
landmarks. A run records where its training faces' eyes lie in the square (its Framing,
measured with the same detector, so the detector's own bias cancels out); a face is then
framed by the square that puts its found eyes there."""
import dataclasses
import threading

import numpy as np
from PIL import Image

DETECT_SIDE = 1000  # the detector's copy of a photo: enough for faces down to ~2 % of it
SAMPLE = 100  # training images the framing is measured on
MIN_FOUND = 0.5  # of the sample: fewer faces than this and the framing is not recorded


@dataclasses.dataclass(frozen=True)
class Framing:
    """Where the eyes lie in a training square, as fractions of its side: their midpoint
    and their distance apart."""
    eye_x: float
    eye_y: float
    eye_distance: float


# The framing --align_faces gives every image, and the one assumed for a run that recorded
# none: what MTCNN measures on the built-in synthetic faces (eyes drawn at 0.5, 0.40 and
# 0.21 apart; it sees the pupils a little higher and closer), the eye distance of
# CelebA's aligned crops, and the eyes high enough for the surgical-mask hole to cover
# the nose bridge to the chin.
STANDARD = Framing(0.496, 0.387, 0.195)


# RNet/ONet at 0.6 rather than 0.7/0.7: on 150 faces pasted into 1600x1200 scenes this found
# 143 instead of 130, with no extra box (docs/faces.md)
THRESHOLDS = {"threshold_rnet": 0.6, "threshold_onet": 0.6}
# What a cache of found faces depends on: another detector or setting finds other faces.
DETECTOR = {"detector": "mtcnn 1.0.0", "side": DETECT_SIDE, **THRESHOLDS}


@dataclasses.dataclass(frozen=True)
class Face:
    """One face found in a photo, in the photo's pixels."""
    box: tuple  # left, top, width, height
    confidence: float
    landmarks: dict  # left_eye, right_eye, nose, mouth_left, mouth_right: (x, y)

    @property
    def eyes(self):
        return np.array(self.landmarks["left_eye"], float), np.array(self.landmarks["right_eye"], float)


_detector = None
_lock = threading.Lock()  # one detection at a time: MTCNN's networks are shared


def _detect(arrays):
    global _detector
    with _lock:
        if _detector is None:
            import tensorflow as tf  # imported on first use: most commands never detect
            from mtcnn import MTCNN
            # Built in float32 whatever the run's mixed precision: in bfloat16 it found other
            # faces (20 of 21 in tests/test_real_faces.py's photos), so a cache, the page and
            # the CLI would disagree.
            policy = tf.keras.mixed_precision.global_policy()
            tf.keras.mixed_precision.set_global_policy("float32")
            try:
                _detector = MTCNN()
            finally:
                tf.keras.mixed_precision.set_global_policy(policy)
        return _detector.detect_faces(arrays, **THRESHOLDS)


def _faces(found, scale):
    faces = [Face(tuple(float(v) * scale for v in f["box"]), float(f["confidence"]),
                  {k: (float(x) * scale, float(y) * scale) for k, (x, y) in f["keypoints"].items()})
             for f in found]
    return sorted(faces, key=lambda f: (f.box[0], f.box[1]))


def find_faces(image):
    """Every face in a Pillow image (upright, any size), left to right."""
    scale = max(image.size) / DETECT_SIDE
    if scale > 1:
        small = image.resize((max(1, round(image.width / scale)), max(1, round(image.height / scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
    else:
        small, scale = image, 1.0
    return _faces(_detect(np.asarray(small.convert("RGB"))), scale)


def largest(faces):
    return max(faces, key=lambda f: f.box[2] * f.box[3], default=None)


# A head turned by less than this is framed upright: the eyes then lie within 0.5 % of the
# side of their level place, and the square is cut and scaled without resampling twice.
LEVEL_DEGREES = 3.0


def square_for(face, framing):
    """(left, top, side, angle): the square that puts the face's eyes where the framing has
    them, turned by `angle` degrees about its centre so that they lie level (a similarity
    transform from the eye landmarks, as face-restoration pipelines align faces). It may
    reach beyond the photo; view() pads it there."""
    left_eye, right_eye = face.eyes
    middle = (left_eye + right_eye) / 2
    dx, dy = right_eye - left_eye
    side = max(float(np.hypot(dx, dy)) / framing.eye_distance, 8.0)
    angle = float(np.degrees(np.arctan2(dy, dx)))
    if abs(angle) < LEVEL_DEGREES:
        angle = 0.0
    # the square's centre, from the eyes' midpoint, in the square's own turned axes
    offset = _turn(np.array([(0.5 - framing.eye_x) * side, (0.5 - framing.eye_y) * side]), angle)
    centre = middle + offset
    side = round(side)
    return (round(float(centre[0] - side / 2)), round(float(centre[1] - side / 2)), side,
            round(angle, 1))


def _turn(vector, angle):
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return np.array([cos * vector[0] - sin * vector[1], sin * vector[0] + cos * vector[1]])


def box(square, photo_size):
    """(left, top, right, bottom): the photo's pixels a square covers, clipped to the photo."""
    left, top, side, angle = square
    half = side / 2 * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
    cx, cy = left + side / 2, top + side / 2
    return (max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half))),
            min(photo_size[0], int(np.ceil(cx + half))), min(photo_size[1], int(np.ceil(cy + half))))


def upright_inside(square, photo_size):
    """A square cut straight out of the photo: no turning, no padding."""
    left, top, side, angle = square
    return (angle == 0 and left >= 0 and top >= 0 and left + side <= photo_size[0]
            and top + side <= photo_size[1])


def view(image, square, size, resample=Image.Resampling.LANCZOS):
    """The square of an RGB (or L) Pillow image as the model sees it, size x size: cut and
    scaled; turned level; beyond the photo's edge, the photo mirrored (as training's
    shifted views are), so a face at the edge keeps its framing."""
    left, top, side, angle = square
    if upright_inside(square, image.size):
        cut = image.crop((left, top, left + side, top + side))
        return cut if side == size else cut.resize((size, size), resample, reducing_gap=3.0)
    half = side / 2 * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) + 2
    cx, cy = left + side / 2, top + side / 2
    x0, y0 = int(np.floor(cx - half)), int(np.floor(cy - half))
    x1, y1 = int(np.ceil(cx + half)), int(np.ceil(cy + half))
    inside = image.crop((max(x0, 0), max(y0, 0), min(x1, image.width), min(y1, image.height)))
    pixels = np.asarray(inside)
    pad = [(max(0, -y0), max(0, y1 - image.height)), (max(0, -x0), max(0, x1 - image.width))]
    region = Image.fromarray(np.pad(pixels, pad + [(0, 0)] * (pixels.ndim - 2), "symmetric"))
    # reduced by a whole factor first (each pixel the mean of f x f), so the turn, at most
    # a 2x reduction, does not alias
    scale = side / size
    factor = max(1, int(scale))
    if factor > 1:
        region = region.reduce(factor)
    k = scale / factor
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    ox, oy = (cx - x0) / factor, (cy - y0) / factor
    data = (k * cos, -k * sin, ox - k * (cos - sin) * size / 2,
            k * sin, k * cos, oy - k * (sin + cos) * size / 2)
    return region.transform((size, size), Image.Transform.AFFINE, data,
                            Image.Resampling.BICUBIC)


def to_photo(picture, square, photo_size, resample=Image.Resampling.BICUBIC):
    """A picture of the model's square (a Pillow image, size x size) laid back over the
    photo: the pixels of box(square) it covers, as the same mode; 0 where the turned
    square does not reach."""
    left, top, side, angle = square
    size = picture.width
    x0, y0, x1, y1 = box(square, photo_size)
    if upright_inside(square, photo_size):
        return picture if side == size else picture.resize((side, side), resample)
    if resample not in (Image.Resampling.NEAREST, Image.Resampling.BILINEAR):
        resample = Image.Resampling.BICUBIC  # the finest an affine transform takes
    k = side / size
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    dx, dy = x0 - (left + side / 2), y0 - (top + side / 2)
    data = (cos / k, sin / k, (cos * dx + sin * dy) / k + size / 2,
            -sin / k, cos / k, (-sin * dx + cos * dy) / k + size / 2)
    return picture.transform((x1 - x0, y1 - y0), Image.Transform.AFFINE, data, resample)


def measure_framing(images):
    """The median Framing of the largest face in each of uint8 squares [n, s, s, 3] (all one
    size), or None when the detector finds a face in fewer than MIN_FOUND of them."""
    side = images.shape[1]
    found = [largest(_faces(f, 1.0)) for f in _detect(list(images))]
    found = [f for f in found if f is not None]
    if not found or len(found) < MIN_FOUND * len(images):
        return None
    eyes = np.array([np.concatenate(f.eyes) for f in found]) / side
    middle = (eyes[:, :2] + eyes[:, 2:]) / 2
    distance = np.linalg.norm(eyes[:, 2:] - eyes[:, :2], axis=1)
    return Framing(*(round(float(np.median(v)), 4) for v in (middle[:, 0], middle[:, 1], distance)))
