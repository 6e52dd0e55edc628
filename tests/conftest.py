import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run
import synthetic_faces


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory):
    """36 synthetic faces saved as JPEGs and PNGs of mixed sizes, in two subfolders."""
    root = tmp_path_factory.mktemp("faces")
    for i in range(36):
        side = (64, 96, 150)[i % 3]
        face = Image.fromarray(synthetic_faces.synthetic_face(7, i, 64)).resize((side, side))
        folder = root / ("a" if i < 18 else "b")
        folder.mkdir(exist_ok=True)
        face.save(folder / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    return str(root)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, face_folder):
    """One short real training run on the face folder, shared by the tests that read it."""
    out = str(tmp_path_factory.mktemp("run"))
    code = run.main(["--data_dir", face_folder, "--out_dir", out, "--img_size", "32",
                     "--epoch", "2", "--batch", "4", "--lr", "1e-3", "--test_ratio", "0.25",
                     "--train_mask", "center"])
    assert code == 0
    return out
