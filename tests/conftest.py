import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; .ci/run installs it
sys.path.insert(0, str(ROOT))

import devices
import run  # first of the project: it sets TensorFlow's environment (tf_environment.py)
import synthetic_faces

# For tests of what a machine without a GPU does (the error of --gpus, the float32 policy of
# a CPU without bfloat16): where TensorFlow sees a GPU they say so and skip.
no_gpu = pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                            reason="checks a machine without a GPU; TensorFlow sees one here")


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


@pytest.fixture(scope="session")
def builtin_run(tmp_path_factory):
    """A tiny run on the built-in drawn faces, as `python run.py` trains a first run."""
    out = str(tmp_path_factory.mktemp("builtin"))
    assert run.main(["--out_dir", out, "--mode", "train", "--img_size", "32", "--epoch", "1",
                     "--batch", "4", "--n_synthetic", "24"]) == 0
    return out


@pytest.fixture(scope="session")
def straight_run(face_folder, tmp_path_factory):
    """A two-epoch training run that nothing interrupted: what stopped and resumed runs of
    the same command must end identical to."""
    out = str(tmp_path_factory.mktemp("straight"))
    assert run.main(["--data_dir", face_folder, "--out_dir", out, "--mode", "train", "--epoch",
                     "2", "--img_size", "32", "--batch", "4", "--test_ratio", "0.25", "--lr",
                     "1e-3"]) == 0
    return out


def start_server(out_dir, *flags):
    """`python run.py --mode serve` on a free port, as a user starts it; returns the process
    and its URL once it says where it serves."""
    process = subprocess.Popen([sys.executable, "run.py", "--mode", "serve", "--out_dir", out_dir,
                                "--port", "0", *flags], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("serving "):
            return process, line.split(" at ")[1].split()[0], lines
    process.wait()
    raise AssertionError(f"the server did not start: {''.join(lines)}")


def stop_server(process):
    """Ctrl-C, as a user ends it: a clean exit."""
    process.send_signal(signal.SIGINT)
    try:
        rest = process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()  # a hung server must not outlive the test
        raise
    assert process.returncode == 0, rest
    assert rest.strip().endswith("stopped"), rest
    return rest


@pytest.fixture(scope="session")
def server(trained_run):
    """The trained run served as a user starts it: its URL and process."""
    process, url, _ = start_server(trained_run)
    yield url, process
    stop_server(process)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield playwright, browser
        browser.close()


def with_bfloat16_kernels(check):
    """Runs check() where bfloat16 ops have kernels: in this process, unless oneDNN is on
    without bfloat16 (an AVX2-only CPU, or ONEDNN_MAX_CPU_ISA=AVX2), which has no bfloat16
    convolutions; then in a child process with TensorFlow's own kernels, which emulate
    bfloat16 on any CPU. Mixed precision's code path is what is tested, not its speed."""
    if devices.bfloat16_is_fast() or not devices.onednn_enabled():
        check()
        return
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; "
            f"import {check.__module__} as tests; tests.{check.__name__}()")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
