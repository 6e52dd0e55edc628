import subprocess
import sys
from pathlib import Path

import numpy as np

import holes
import synthetic_faces


def test_synthetic_faces_are_deterministic_and_varied():
    a = synthetic_faces.synthetic_face(0, 5, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_faces.synthetic_face(0, 5, 64))
    assert not np.array_equal(a, synthetic_faces.synthetic_face(1, 5, 64))
    faces = np.stack([synthetic_faces.synthetic_face(0, i, 64) for i in range(30)]).astype(float)
    top, left, side = holes.center_box(64)
    centres = faces[:, top:top + side, left:left + side]
    # the hidden centre differs from face to face: no single template fills it
    assert centres.std(axis=0).mean() > 20


def test_the_renderer_needs_no_tensorflow():
    code = "import sys, synthetic_faces; print('tensorflow' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"
