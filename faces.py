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


def square_for(face, framing, photo_size):
    """(left, top, side): the square that puts the face's eyes where the framing has them,
    moved inside the photo (and shrunk to fit it) where it would stick out."""
    left_eye, right_eye = face.eyes
    middle = (left_eye + right_eye) / 2
    side = np.linalg.norm(right_eye - left_eye) / framing.eye_distance
    side = round(float(min(max(side, 8.0), *photo_size)))
    left = round(float(middle[0] - framing.eye_x * side))
    top = round(float(middle[1] - framing.eye_y * side))
    left = min(max(left, 0), photo_size[0] - side)
    top = min(max(top, 0), photo_size[1] - side)
    return left, top, side


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
